"""An analytics writer that appends one JSON object per line to a file.

The simplest durable backend: no database, greppable, and what ``jq``, Vector, Fluent Bit or a
later import job read directly. The file is opened once, in append mode, and kept open between
batches; each batch is flushed to the operating system but not fsync'ed (a power cut may lose the
last second of analytics, which is not worth an fsync per batch).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Final, cast

import orjson

from propylon.analytics.buffer import AnalyticsWriteError
from propylon.domain.analytics import AnalyticsRecord, RecordFields
from propylon.domain.timestamps import latency_micros, split_micros, utc_second

logger = logging.getLogger(__name__)


class JsonLinesWriter:
    """Append records as JSON lines to ``path``, creating parent directories as needed."""

    on_loop = True
    """A batch is one append of some tens of kilobytes to the page cache: the buffer calls
    :meth:`write_batch` on the event loop rather than paying a thread hand-off per batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        self._closed = False
        # The buffer never calls us concurrently, but a lock makes that a guarantee rather than
        # an assumption for any other caller.
        self._lock = threading.Lock()

    def prepare(self, records: Sequence[RecordFields]) -> bytes:
        """Serialise ``records`` as JSON lines (runs on the event loop; CPU only)."""
        return encode_json_lines(records)

    def write_records(self, records: Sequence[RecordFields]) -> None:
        """Prepare and write in one call (for callers outside the buffer)."""
        self.write_batch(self.prepare(records))

    def write_batch(self, prepared: bytes) -> None:
        """Append prepared JSON lines; raise :class:`AnalyticsWriteError`."""
        data = prepared
        with self._lock:
            if self._closed:
                raise AnalyticsWriteError(f"{self.path}: writer is closed")
            try:
                handle = self._file if self._file is not None else self._open()
                handle.write(data)
                handle.flush()
            except OSError as exc:
                # Drop the handle: the next batch reopens the file (which may have been rotated
                # or had its disk freed) and repairs a half-written last line.
                self._discard()
                raise _write_error(self.path, exc) from exc

    def close(self) -> None:
        """Flush and close the file. Idempotent; later batches are refused."""
        with self._lock:
            self._closed = True
            handle, self._file = self._file, None
            if handle is None:
                return
            try:
                handle.close()
            except OSError as exc:
                raise _write_error(self.path, exc) from exc

    def _open(self) -> BinaryIO:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("ab")
        try:
            # A crash or a full disk may have left a partial last line; start on a fresh one so
            # that the damage stays confined to that line and every later record parses.
            if handle.tell() > 0 and not _ends_with_newline(self.path):
                handle.write(b"\n")
        except OSError:
            handle.close()
            raise
        self._file = handle
        return handle

    def _discard(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            # The write error being reported is the one that matters, not this one.
            with contextlib.suppress(OSError):
                handle.close()


def _write_error(path: Path, exc: OSError) -> AnalyticsWriteError:
    error = AnalyticsWriteError(f"{path}: {exc.strerror or exc}")
    # Set here as well as by `raise ... from`: compiled by mypyc, this module drops the `from`.
    error.__cause__ = exc
    return error


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1) == b"\n"


# Final: compiled, a static rather than an attribute lookup on the module for every record.
_dumps: Final = orjson.dumps

# A line is the record's JSON form (``record.to_json_dict()``) in field order, its strings and
# integers as orjson writes them; tests/analytics/test_jsonl.py checks both. A line is a handful of
# pieces, mostly remembered per value, joined with the batch's other lines: one copy per piece.
# Filling a 15-key dict for orjson cost about 3,000 instructions of dict assignments before
# orjson started, and bytes %-formatting about 5,000.
_INTEGERS: Final = tuple(str(n).encode() for n in range(1024))

# Times and latencies are written from integers (microseconds, see domain/timestamps.py) with
# table lookups for their last digits: orjson's float formatting cost about 640 instructions a
# value, three per record, and the ISO timestamp is the same second's text for most records.
_DIGITS: Final = tuple(f"{n:03d}".encode() for n in range(1000))
_POINT_DIGITS: Final = tuple(f".{n:03d}".encode() for n in range(1000))


class _Second:
    """The second last written and its two texts, ``{"timestamp":"2026-12-04T17:55:22`` and
    ``Z","time":1796406922.``, as one tuple replaced whole: a caller on another thread never
    sees the texts of one second with the number of another. A field of one object: compiled,
    reading it is a field access."""

    __slots__ = ("entry",)

    def __init__(self) -> None:
        self.entry: tuple[int, bytes, bytes] = (-(2**62), b"", b"")


_second: Final = _Second()


def _second_texts(whole: int) -> tuple[int, bytes, bytes]:
    entry = _second.entry
    if entry[0] != whole:
        timestamp = utc_second(whole).encode("ascii")
        entry = (whole, b'{"timestamp":"' + timestamp,
                 b'Z","time":' + str(whole).encode("ascii") + b".")
        _second.entry = entry
    return entry


def _milliseconds(value: float) -> bytes:
    # Rounded as the record's JSON form rounds it; a value latency_micros leaves alone is
    # written as orjson writes it (NaN and infinities as null).
    micros = latency_micros(value)
    if micros >= 0:
        return _integer(micros // 1000) + _POINT_DIGITS[micros % 1000]
    return _dumps(value)

# Encoded strings by value. The same few API ids, methods, identities, clients, policies, reasons
# and (mostly) paths recur in every batch, and they are the same objects with their hashes kept,
# so a lookup costs less than escaping. Bounded in entries and in the length of what is kept.
_TEXT: Final[dict[str, bytes]] = {}
_MAX_TEXTS: Final = 4096
_MAX_TEXT_LENGTH: Final = 256


def _text(value: str | None) -> bytes:
    if value is None:
        return b"null"
    encoded = _TEXT.get(value)
    if encoded is None:
        # orjson raises (a TypeError) on a lone surrogate; the caller falls back to the stdlib.
        encoded = _dumps(value)
        if len(value) <= _MAX_TEXT_LENGTH:
            if len(_TEXT) >= _MAX_TEXTS:
                _TEXT.clear()
            _TEXT[value] = encoded
    return encoded


# Who called, encoded once per identity: identity, client, developer and policy are the same
# objects on every request of one identity (the auth step's cache), so one lookup and three
# identity checks replace three encodings and six pieces of the line. Bounded like _TEXT.
_PARTIES: Final[dict[str, tuple[str | None, str | None, str | None, bytes]]] = {}


def _parties(
    identity: str | None, client_id: str | None, developer_id: str | None, policy: str | None
) -> bytes:
    if identity is not None:
        known = _PARTIES.get(identity)
        if (known is not None and known[0] is client_id and known[1] is developer_id
                and known[2] is policy):
            return known[3]
    encoded = b"".join([
        b',"identity":', _text(identity), b',"client_id":', _text(client_id),
        b',"developer_id":', _text(developer_id), b',"policy":', _text(policy),
    ])
    if identity is not None and len(identity) <= _MAX_TEXT_LENGTH:
        if len(_PARTIES) >= _MAX_TEXTS:
            _PARTIES.clear()
        _PARTIES[identity] = (client_id, developer_id, policy, encoded)
    return encoded


def _integer(value: int) -> bytes:
    if 0 <= value < 1024:
        return _INTEGERS[value]
    return str(value).encode()


# Pieces that take a value together with the keys around it: each piece less in a line is one
# item less for the join (about 95 instructions).
_STATUS_PIECES: Final = tuple(
    b',"status":%d,"upstream_latency_ms":' % status for status in range(1000)
)
_BYTES_IN_PIECES: Final = tuple(b',"bytes_in":%d,"bytes_out":' % size for size in range(1024))
_NO_ERROR: Final = b',"error":null}\n'

# ',"api_id":…,"method":…,"path":' by API id, then method; bounded like _TEXT.
_ROUTES: Final[dict[str | None, dict[str, bytes]]] = {}


def _route_piece(api_id: str | None, method: str) -> bytes:
    methods = _ROUTES.get(api_id)
    if methods is None:
        if len(_ROUTES) >= _MAX_TEXTS:
            _ROUTES.clear()
        methods = _ROUTES[api_id] = {}
    piece = methods.get(method)
    if piece is None:
        piece = b"".join([b',"api_id":', _text(api_id), b',"method":', _text(method), b',"path":'])
        if len(methods) < 64 and len(method) <= _MAX_TEXT_LENGTH:
            methods[method] = piece
    return piece


def _status_piece(status: int) -> bytes:
    if 0 <= status < 1000:
        return _STATUS_PIECES[status]
    return b',"status":%b,"upstream_latency_ms":' % _integer(status)


def _bytes_in_piece(size: int) -> bytes:
    if 0 <= size < 1024:
        return _BYTES_IN_PIECES[size]
    return b',"bytes_in":%b,"bytes_out":' % _integer(size)


def _add_line(record: object, parts: list[bytes]) -> None:
    # Unpacked positionally: one tuple unpack, compiled or not. A value of the wrong type raises
    # TypeError (compiled, in the cast; else in _text, _integer or orjson) and the caller takes
    # the general path. Typed object until then: compiled, a RecordFields parameter or loop
    # variable is checked where it is assigned, outside the caller's try. Every piece is made
    # before the first is added, so a record that raises leaves nothing in ``parts``.
    (when, api_id, method, path, status, upstream_latency_ms, total_latency_ms, identity,
     client_id, developer_id, policy, bytes_in, bytes_out, error) = cast(RecordFields, record)
    whole, micros = split_micros(when)
    if whole < 0:
        # "-2.250000" would read as -2.25, not -2 + 0.25: the general path writes such times.
        raise ValueError("a time before 1970")
    _, timestamp, seconds = _second_texts(whole)
    millis = micros // 1000
    route = _route_piece(api_id, method)
    path_text = _text(path)
    upstream = b"null" if upstream_latency_ms is None else _milliseconds(upstream_latency_ms)
    total = _milliseconds(total_latency_ms)
    parties = _parties(identity, client_id, developer_id, policy)
    tail = _NO_ERROR if error is None else b"".join([b',"error":', _text(error), b"}\n"])
    parts.extend((
        timestamp, _POINT_DIGITS[millis], seconds, _DIGITS[millis], _DIGITS[micros % 1000],
        route, path_text, _status_piece(status), upstream, b',"total_latency_ms":', total,
        parties, _bytes_in_piece(bytes_in), _integer(bytes_out), tail,
    ))


# Pieces joined at a time: a backlog of many thousand records is joined in parts, so the list of
# pieces stays small beside the text.
_PIECES_PER_JOIN: Final = 16_384


def encode_json_lines(records: Sequence[RecordFields]) -> bytes:
    """Serialise ``records`` as JSON lines, each ending in a newline; unserialisable ones skipped."""
    # The pieces of many lines are joined at once: one join per line cost about a thousand
    # instructions more per record (building the line's list, the join's own set-up, and
    # appending the line to a buffer).
    parts: list[bytes] = []
    joined: list[bytes] = []
    items: Sequence[object] = records  # see _add_line
    for record in items:
        try:
            # orjson's encodings (NaN becomes null) at a tenth of the stdlib's cost: this runs on
            # the event loop for every request's record.
            _add_line(record, parts)
        except (TypeError, ValueError, OverflowError, orjson.JSONEncodeError):
            _add_general(record, parts)
        if len(parts) >= _PIECES_PER_JOIN:
            joined.append(b"".join(parts))
            parts.clear()
    if not joined:
        return b"".join(parts)
    joined.append(b"".join(parts))
    return b"".join(joined)


def _add_general(record: object, parts: list[bytes]) -> None:
    try:
        data = AnalyticsRecord._make(cast(RecordFields, record)).to_json_dict()
        # orjson refuses lone surrogates (from a badly encoded claim); the stdlib escapes them.
        parts.append(json.dumps(data, separators=(",", ":"), allow_nan=False).encode("ascii"))
        parts.append(b"\n")
    except (TypeError, ValueError, OverflowError):
        # One malformed record must not poison the batch (it would be retried, then the
        # whole batch dropped); skip it alone.
        logger.exception("skipping an analytics record that cannot be serialised: %r", record)
