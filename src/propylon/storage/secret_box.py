"""Encryption of secrets at rest (IdP initial access tokens, registration access tokens).

Secrets are encrypted with Fernet (AES-128-CBC + HMAC-SHA256, authenticated) under a key that is
never stored in the database: it comes from ``PROPYLON_SECRET_KEY`` or from a key file in the data
directory (created with mode 0600 on first start). Several comma-separated keys may be given: the
first encrypts, all decrypt, which is how a key is rotated: secrets written from then on use the
new key, older ones stay readable while the old key is listed.
A dump of the database alone therefore reveals no secret.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)


class SecretKeyError(Exception):
    """The encryption key is missing, malformed, or does not open a stored secret."""


class SecretBox:
    """Encrypts and decrypts short secrets with the deployment's key(s)."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretKeyError("at least one encryption key is required")
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except (ValueError, TypeError) as exc:
            raise SecretKeyError(
                "an encryption key is not a valid Fernet key (32 url-safe base64-encoded bytes)"
            ) from exc

    @classmethod
    def from_setting(cls, value: str) -> SecretBox:
        """Keys from a comma-separated setting (``PROPYLON_SECRET_KEY``), newest first."""
        keys = [part.strip().encode() for part in value.split(",") if part.strip()]
        return cls(keys)

    @classmethod
    def from_key_file(cls, path: Path) -> SecretBox:
        """Keys from ``path`` (one per line, newest first), creating it with a new key if absent."""
        try:
            content = read_or_create_secret_file(path, Fernet.generate_key)
        except OSError as exc:
            raise SecretKeyError(f"cannot read the encryption key file {path}: {exc}") from exc
        return cls([line for line in content.split() if line])

    def encrypt(self, plaintext: str) -> str:
        """Ciphertext (ASCII) of ``plaintext``."""
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext of ``ciphertext``; :class:`SecretKeyError` if no key opens it."""
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as exc:
            raise SecretKeyError("a stored secret cannot be decrypted with the configured key(s)") from exc


def read_or_create_secret_file(path: Path, generate: Callable[[], bytes]) -> bytes:
    """The content of the secret file ``path``; created (mode 0600) with ``generate()`` if absent.

    ``O_EXCL`` makes two processes starting together agree on one secret instead of each writing
    its own. Raises ``OSError`` when the file cannot be read or created.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(generate() + b"\n")
            log.warning("created the secret file %s: back it up; it is never stored in the database",
                        path)
    return path.read_bytes().strip()
