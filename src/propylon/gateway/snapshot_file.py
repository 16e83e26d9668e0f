"""A dashboard snapshot, checked: signature, shape, version, configuration; and its saved copy.

:func:`decode_snapshot` turns the bytes and signature the dashboard sent into a
:class:`VerifiedSnapshot`, or raises :class:`SnapshotRejected` with every problem.
:func:`save_snapshot` writes body and signature next to each other (temporary file, fsync,
``os.replace``) so a crash never leaves half a file; :func:`load_snapshot` reads it back through
the same checks, so a file edited by hand is refused like a tampered response.

Files are small and written once per configuration version, so they are read and written on the
event loop, as the gateway file is (see ``config_source.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from propylon.domain.config import ConfigError, GatewayConfig, parse_config
from propylon.domain.config_signing import verify_snapshot

SNAPSHOT_FILE = "config-snapshot.json"
"""Name of the last-good snapshot under the state directory."""


class SnapshotRejected(Exception):
    """A snapshot was refused; ``problems`` says why, ``version`` is set when it is trustworthy
    (the signature matched), so the same version is not fetched again."""

    def __init__(self, problems: list[str], version: int | None = None) -> None:
        self.problems = problems
        self.version = version
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class VerifiedSnapshot:
    """A snapshot whose signature matched and whose configuration is valid."""

    version: int
    config: GatewayConfig
    body: bytes
    signature: str


def decode_snapshot(body: bytes, signature: str, secret: str) -> VerifiedSnapshot:
    """Verify and validate a snapshot; raise :class:`SnapshotRejected` listing every problem."""
    if not signature or not verify_snapshot(body, signature, secret):
        raise SnapshotRejected(
            ["the signature does not match (a different node secret, or the snapshot was altered)"]
        )
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise SnapshotRejected([f"the snapshot is not valid JSON: {exc}"]) from exc
    if not isinstance(document, dict):
        raise SnapshotRejected(["the snapshot is not a JSON object"])
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise SnapshotRejected([f"version must be a non-negative integer, got {version!r}"])
    data = document.get("config")
    if not isinstance(data, dict):
        raise SnapshotRejected(["config must be a JSON object"], version)
    if data.get("version") != str(version):
        raise SnapshotRejected(
            [f"config.version {data.get('version')!r} does not match the snapshot version {version}"],
            version,
        )
    try:
        config = parse_config(data)
    except ConfigError as exc:
        raise SnapshotRejected([str(p) for p in exc.problems], version) from exc
    return VerifiedSnapshot(version, config, body, signature)


def save_snapshot(path: Path, snapshot: VerifiedSnapshot) -> None:
    """Write ``snapshot``'s body and signature to ``path`` atomically; raises ``OSError``."""
    data = json.dumps(
        {"signature": snapshot.signature, "body": snapshot.body.decode("utf-8")}
    ).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique temp name: with --workers several processes save the same snapshot at once.
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def load_snapshot(path: Path, secret: str) -> VerifiedSnapshot | None:
    """The snapshot saved at ``path``, re-verified; ``None`` when there is no file.

    Raises :class:`SnapshotRejected` for a file that cannot be read, parsed or verified.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SnapshotRejected([f"cannot read the file: {exc.strerror or exc}"]) from exc
    try:
        saved = json.loads(raw)
        body = saved["body"].encode("utf-8")
        signature = saved["signature"]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise SnapshotRejected([f"the file is not a saved snapshot: {exc!r}"]) from exc
    if not isinstance(signature, str):
        raise SnapshotRejected(["the file is not a saved snapshot: signature is not a string"])
    return decode_snapshot(body, signature, secret)
