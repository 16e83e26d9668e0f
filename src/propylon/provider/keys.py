"""The provider's signing keys: one private JWK file per key under ``{data_dir}/idp-keys/``.

Files are created with mode 0600 in a 0700 directory and never rewritten. The *active* key is the
newest one of the configured algorithm; every key on disk is published in the JWKS, so that tokens
signed before a rotation stay verifiable until the old key is retired
(``propylon idp rotate-keys`` / ``retire-keys``). A running provider notices keys added or
removed by those commands on its next request (the directory's modification time is checked).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey, import_key

log = logging.getLogger(__name__)

_FILE_SUFFIX = ".jwk.json"


class KeyFileError(Exception):
    """A key file is unreadable, malformed or too widely readable."""


@dataclass(frozen=True)
class SigningKey:
    """One signing key and when it was made."""

    kid: str
    alg: str
    created_at: int
    key: RSAKey | ECKey

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK (with ``kid``, ``alg``, ``use``)."""
        return dict(self.key.as_dict(private=False))


def generate_key(alg: str) -> RSAKey | ECKey:
    """A new private key for ``alg`` (RSA-2048 for RS256, P-256 for ES256), its kid the RFC 7638
    thumbprint."""
    parameters: dict[str, Any] = {"alg": alg, "use": "sig"}
    if alg == "RS256":
        return RSAKey.generate_key(2048, parameters=parameters, private=True, auto_kid=True)  # type: ignore[arg-type]
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=parameters, private=True, auto_kid=True)  # type: ignore[arg-type]
    raise ValueError(f"unsupported signing algorithm {alg!r}")


class KeyRing:
    """The keys in one directory, reloaded when the directory changes."""

    def __init__(self, directory: Path, alg: str, *, strict_permissions: bool = False) -> None:
        self.directory = directory
        self.alg = alg
        self.strict_permissions = strict_permissions
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._keys: list[SigningKey] = []

    def keys(self) -> list[SigningKey]:
        """Every key on disk, oldest first (reloaded if the directory changed)."""
        with self._lock:
            try:
                stamp = self.directory.stat().st_mtime_ns
            except FileNotFoundError:
                stamp = None
            if stamp != self._stamp or stamp is None:
                self._keys = self._load()
                self._stamp = stamp
            return list(self._keys)

    def active(self) -> SigningKey | None:
        """The key new tokens are signed with: the newest of the configured algorithm."""
        candidates = [key for key in self.keys() if key.alg == self.alg]
        return candidates[-1] if candidates else None

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set: every key on disk."""
        return {"keys": [key.public_jwk() for key in self.keys()]}

    def signing_set(self) -> KeySet:
        """A key set holding only the active key (Authlib's JWT generator signs with it and puts
        its kid in the header)."""
        active = self.active()
        if active is None:
            raise KeyFileError("no signing key: run `propylon idp rotate-keys` to create one")
        return KeySet([active.key])

    def verification_set(self) -> KeySet:
        """A key set of every published key (public halves), for checking the provider's own tokens."""
        return KeySet([import_key(key.public_jwk()) for key in self.keys()])

    def add(self, alg: str | None = None) -> SigningKey:
        """Generate and store a new key (it becomes the active one for its algorithm)."""
        alg = alg or self.alg
        key = generate_key(alg)
        created = time.time_ns() // 1_000_000_000
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        kid = str(key.kid)
        # Nanoseconds in the name keep the order of two keys made within the same second.
        path = self.directory / f"{time.time_ns():020d}-{kid}{_FILE_SUFFIX}"
        document = {"created_at": created, "key": key.as_dict(private=True)}
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(document, handle)
        with self._lock:
            self._stamp = None
        return SigningKey(kid, alg, created, key)

    def retire(self, older_than: float, *, now: float | None = None) -> list[str]:
        """Delete every key created more than ``older_than`` seconds ago, except the active one;
        the kids removed."""
        limit = (time.time() if now is None else now) - older_than
        active = self.active()
        removed: list[str] = []
        for path in sorted(self.directory.glob(f"*{_FILE_SUFFIX}")):
            key = self._read(path)
            if active is not None and key.kid == active.kid:
                continue
            if key.created_at < limit:
                path.unlink()
                removed.append(key.kid)
        with self._lock:
            self._stamp = None
        return removed

    def _load(self) -> list[SigningKey]:
        if not self.directory.is_dir():
            return []
        return [self._read(path) for path in sorted(self.directory.glob(f"*{_FILE_SUFFIX}"))]

    def _read(self, path: Path) -> SigningKey:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            message = f"key file {path} is readable by others (mode {stat.S_IMODE(mode):o}; want 600)"
            if self.strict_permissions:
                raise KeyFileError(message)
            log.warning("%s", message)
        try:
            document = json.loads(path.read_text())
            key = import_key(document["key"])
            created = int(document["created_at"])
        except (OSError, ValueError, KeyError, TypeError, JoseError) as exc:
            raise KeyFileError(f"key file {path} is unreadable: {type(exc).__name__}") from exc
        if not isinstance(key, (RSAKey, ECKey)) or not key.is_private:
            raise KeyFileError(f"key file {path} does not hold a private RSA or EC key")
        alg = document["key"].get("alg")
        if alg not in ("RS256", "ES256"):
            raise KeyFileError(f"key file {path} has no supported 'alg'")
        return SigningKey(str(key.kid), alg, created, key)
