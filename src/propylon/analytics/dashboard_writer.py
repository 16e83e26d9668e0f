"""An analytics writer that ships batches to the dashboard, spooling them while it is away.

In dashboard mode a gateway has no database: each batch goes to ``POST {dashboard}/system/analytics``
as a JSON list of records in the JSON-lines writer's form. When the dashboard cannot take a batch
(unreachable, 5xx, 401, 429) the batch is appended to a spool file (JSON lines, the same format as
``analytics.jsonl``) and sent again, oldest first, before the next batch and by
:meth:`DashboardAnalyticsWriter.drain_spool`, which the gateway calls periodically so that a quiet
gateway also catches up. Nothing is lost unless the spool reaches its size cap. A batch the
dashboard refuses as malformed (400, 404, 413, 422) would be refused again: it is reported with
:class:`AnalyticsWriteError` instead of spooled.

Runs in the analytics buffer's worker thread, so it uses a synchronous HTTP client; a lock keeps the
periodic drain and the buffer's writes from interleaving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import httpx
import orjson

from propylon.analytics.buffer import AnalyticsWriteError
from propylon.analytics.jsonl import encode_json_lines  # one record format, one encoder
from propylon.domain.analytics import RecordFields

logger = logging.getLogger(__name__)

NODE_HEADER = "X-Propylon-Node-Id"
"""Header naming the sending gateway (the dashboard's contract)."""

MAX_SPOOL_BYTES = 256 * 1024 * 1024
"""Past this the spool takes no more batches: a long outage must not fill the gateway's disk."""

_CHUNK_RECORDS = 1000
_CHUNK_BYTES = 4 * 1024 * 1024
_PERMANENT = frozenset({400, 404, 413, 422})
_BACKOFF_MIN = 1.0
_BACKOFF_MAX = 30.0


class _Transient(Exception):
    """The dashboard did not take the batch this time; keep it."""


class DashboardAnalyticsWriter:
    """POST batches to the dashboard; spool to ``spool_path`` whenever that fails."""

    on_loop = False
    """Each batch waits on the network: the buffer runs :meth:`write_batch` in a worker thread."""

    def __init__(
        self,
        url: str,
        node_secret: str,
        node_id: str,
        spool_path: Path,
        *,
        client: httpx.Client | None = None,
    ) -> None:
        self.spool_path = spool_path
        self._endpoint = url.rstrip("/") + "/system/analytics"
        self._headers = {
            "Authorization": f"Bearer {node_secret}",
            NODE_HEADER: node_id,
            "Content-Type": "application/json",
        }
        self._client = client or httpx.Client(
            trust_env=False, follow_redirects=False, timeout=httpx.Timeout(10.0, connect=3.0)
        )
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._backoff = _BACKOFF_MIN
        self._failing = False
        self._closed = False

    def prepare(self, records: Sequence[RecordFields]) -> bytes:
        """Serialise ``records`` as JSON lines (runs on the event loop; CPU only)."""
        return encode_json_lines(records)

    def write_batch(self, prepared: bytes) -> None:
        """Send the spool, then this batch; spool it if the dashboard cannot take it now."""
        if not prepared:
            return
        with self._lock:
            if self._closed:
                raise AnalyticsWriteError("the dashboard analytics writer is closed")
            if self._may_try() and self._drain_locked():
                try:
                    self._post(prepared)
                    return
                except _Transient as exc:
                    self._failed(str(exc))
            self._spool(prepared)

    def drain_spool(self) -> None:
        """Send spooled batches if the dashboard is due another try (blocking; call in a thread)."""
        with self._lock:
            if not self._closed and self._may_try():
                self._drain_locked()

    @property
    def spooled_bytes(self) -> int:
        """Size of the spool file (0 when there is none)."""
        try:
            return self.spool_path.stat().st_size
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        """Try the spool once more, then release the HTTP client. Idempotent."""
        with self._lock:
            if self._closed:
                return
            if self._may_try():
                self._drain_locked()
            self._closed = True
            self._client.close()

    def _may_try(self) -> bool:
        return time.monotonic() >= self._retry_at

    def _failed(self, reason: str) -> None:
        if not self._failing:
            logger.warning(
                "analytics: dashboard unavailable (%s); spooling to %s", reason, self.spool_path
            )
        self._failing = True
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX)

    def _succeeded(self) -> None:
        if self._failing:
            logger.info("analytics: dashboard reachable again")
        self._failing = False
        self._backoff = _BACKOFF_MIN
        self._retry_at = 0.0

    def _post(self, lines: bytes) -> None:
        body = b"[" + b",".join(line for line in lines.split(b"\n") if line) + b"]"
        try:
            response = self._client.post(self._endpoint, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code < 300:
            self._succeeded()
            return
        if response.status_code in _PERMANENT:
            raise AnalyticsWriteError(
                f"the dashboard refused an analytics batch: HTTP {response.status_code} "
                f"{response.text[:200]}"
            )
        raise _Transient(f"HTTP {response.status_code}")

    def _spool(self, lines: bytes) -> None:
        size = self.spooled_bytes
        if size + len(lines) > MAX_SPOOL_BYTES:
            raise AnalyticsWriteError(
                f"{self.spool_path}: the analytics spool is full ({size} bytes); batch dropped"
            )
        try:
            self.spool_path.parent.mkdir(parents=True, exist_ok=True)
            with self.spool_path.open("ab") as handle:
                if size and not _ends_with_newline(handle, size):
                    # A crash left half a line: keep the damage to that line.
                    handle.write(b"\n")
                handle.write(lines)
        except OSError as exc:
            raise AnalyticsWriteError(f"{self.spool_path}: {exc.strerror or exc}") from exc

    def _drain_locked(self) -> bool:
        """Send the spool oldest first; True when it is empty afterwards."""
        try:
            handle = self.spool_path.open("rb")
        except FileNotFoundError:
            return True
        except OSError as exc:
            logger.error("analytics: cannot read the spool %s: %s", self.spool_path, exc)
            return False
        with handle:
            sent_up_to = 0
            while True:
                chunk = _read_chunk(handle)
                if not chunk:
                    break
                try:
                    self._post(b"\n".join(_valid_lines(chunk)))
                except _Transient as exc:
                    self._failed(str(exc))
                    self._keep_from(handle, sent_up_to)
                    return False
                except AnalyticsWriteError as exc:
                    # Refused as malformed now, refused forever: drop it or the spool never drains.
                    logger.error("analytics: dropping a spooled batch: %s", exc)
                sent_up_to = handle.tell()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.spool_path)
        return True

    def _keep_from(self, handle: BinaryIO, offset: int) -> None:
        if offset == 0:
            return
        # Rewrite the unsent tail atomically: a crash now must neither lose it nor resend the head.
        handle.seek(offset)
        fd, temp = tempfile.mkstemp(dir=self.spool_path.parent, prefix=".spool.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                while block := handle.read(1024 * 1024):
                    out.write(block)
            os.replace(temp, self.spool_path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            # The whole spool stays, so the part already sent goes again: a duplicate, not a loss.
            logger.error("analytics: cannot rewrite the spool %s: %s", self.spool_path, exc)


def _ends_with_newline(handle: BinaryIO, size: int) -> bool:
    with open(handle.name, "rb") as reader:
        reader.seek(size - 1)
        return reader.read(1) == b"\n"


def _read_chunk(handle: BinaryIO) -> list[bytes]:
    lines: list[bytes] = []
    size = 0
    while len(lines) < _CHUNK_RECORDS and size < _CHUNK_BYTES:
        line = handle.readline()
        if not line:
            break
        lines.append(line)
        size += len(line)
    return lines


def _valid_lines(lines: list[bytes]) -> list[bytes]:
    valid = []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        try:
            if isinstance(orjson.loads(stripped), dict):
                valid.append(stripped)
                continue
        except orjson.JSONDecodeError:
            pass
        logger.warning("analytics: skipping a damaged line in the spool")
    return valid
