"""Upstream connections: a keep-alive pool and the protocol that reads upstream responses.

An :class:`UpstreamConnection` is an asyncio ``Protocol`` with an httptools response parser. It
serves one exchange at a time and hands every event (head, body piece, end, loss, flow-control) to
its current listener, the front end's client connection (the :class:`UpstreamListener`
interface), so response bodies stream to the client as they arrive, never buffered whole.

An upstream sends the same response head again and again (only its Date header changes, once a
second). A connection remembers the last head httptools read for it, with what httptools made of
it; a response that starts with exactly those bytes is served from that reading, its body counted
out by the Content-Length (:meth:`UpstreamConnection._replay`), instead of through a parser
callback per header line: about a fifth of the gateway's instructions per request.

Connections whose response completed cleanly go back to the :class:`UpstreamPool` for reuse; idle
ones are closed after a timeout and the pool keeps at most a bounded number per upstream address.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol, cast

import httptools

from propylon.gateway.chain import UpstreamTarget
from propylon.gateway.errors import BadGateway, GatewayTimeout

if TYPE_CHECKING:
    from propylon.gateway.server import ClientConnection

log = logging.getLogger(__name__)

# The clock of every connection time (reads, deadlines, idle pool entries); the sweeper's too.
perf_counter: Final = time.perf_counter

HOP_BY_HOP: Final = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
    b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})
"""Headers that concern one connection only (RFC 9110 §7.6.1): never forwarded, either way."""


_COMMON_HEADERS: Final = (
    b"accept", b"accept-encoding", b"accept-language", b"accept-ranges", b"age",
    b"authorization", b"cache-control", b"connection", b"content-encoding", b"content-length",
    b"content-type", b"cookie", b"date", b"etag", b"expect", b"expires", b"host", b"keep-alive",
    b"last-modified", b"location", b"origin", b"referer", b"server", b"set-cookie", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"user-agent", b"vary", b"x-forwarded-for",
    b"x-forwarded-host", b"x-forwarded-proto", b"x-real-ip", b"x-request-id",
)
LOWER_HEADER_NAMES: Final[dict[bytes, bytes]] = {
    spelling: name
    for name in _COMMON_HEADERS
    for spelling in (name, name.title(), name.upper())
} | {b"ETag": b"etag", b"X-Request-ID": b"x-request-id"}
"""Common header names as clients and servers spell them, mapped to lower case: one dictionary
lookup per header instead of a ``lower()`` call (look up first, lower only on a miss)."""


def spellings_by_length(names: frozenset[bytes]) -> tuple[tuple[tuple[bytes, bytes], ...], ...]:
    """For each name length below 32, the ``names`` of that length (lower case) as peers usually
    spell them (Title-Case, lower case), each paired with its lower-case form.

    Compiled, finding a name this way is a length check, a table index and a comparison or two
    (a memcmp each); a dictionary lookup must first hash the parser's new name object (about 450
    instructions a header). A name of another length is not one of ``names`` at all.
    """
    return tuple(
        tuple((spelling, name) for name in sorted(names) if len(name) == length
              for spelling in (name.title(), name))
        for length in range(32)
    )


def lower_name(name: bytes, spellings: tuple[tuple[bytes, bytes], ...]) -> bytes:
    """``name`` in lower case: one of ``spellings`` (an entry of :func:`spellings_by_length`, for
    the name's length) by comparison, else looked up, else lowered."""
    for spelling, lower in spellings:
        if name == spelling:
            return lower
    return LOWER_HEADER_NAMES.get(name) or name.lower()


# The response header names UpstreamConnection.on_header acts on, and by length whether a name
# may be one (a nonzero byte): compiled, indexing bytes is native, where `in` on a set boxes.
_SPELLINGS: Final = spellings_by_length(HOP_BY_HOP | {b"content-length"})
_CONSUMED_LENGTHS: Final = bytes(bool(names) for names in _SPELLINGS)


def connection_options(value: bytes) -> set[bytes]:
    """Header names a ``Connection`` value declares hop-by-hop (beyond keep-alive and close)."""
    return {t.strip().lower() for t in value.split(b",")} - {b"keep-alive", b"close", b""}


class _ReplayableHead:
    """A response head httptools read, with what it made of it (see UpstreamConnection._replay).

    Only heads of responses framed by Content-Length with a body (status 200–999 but 204 and 304)
    that leave the connection reusable are kept, never one of a response to HEAD.
    """

    __slots__ = ("connection", "head", "length", "lines", "status")

    def __init__(self, head: bytes, status: int, lines: list[bytes], connection: bytes,
                 length: int) -> None:
        self.head = head
        self.status = status
        # Shared by every replay: listeners only read it.
        self.lines = lines
        self.connection = connection
        self.length = length


class UpstreamListener(Protocol):
    """What an upstream connection reports to the exchange it serves."""

    def upstream_head(self, status: int, lines: list[bytes], connection: bytes, chunked: bool,
                      length_known: bool) -> None: ...
    def upstream_body(self, data: bytes) -> None: ...
    def upstream_complete(self, reusable: bool) -> None: ...
    def upstream_lost(self, exc: Exception | None) -> None: ...
    def upstream_pause_writing(self) -> None: ...
    def upstream_resume_writing(self) -> None: ...
    def begin_batch(self) -> None: ...
    def end_batch(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One connection to an upstream, parsing the responses it sends."""

    __slots__ = (
        "_body_left", "_chunk", "_chunked", "_connection", "_feed", "_head", "_ignore",
        "_keep_alive", "_length", "_lines", "_parser", "_parsing",
        "_send", "_status", "closed", "idle_since", "key", "last_read", "listener", "skip_body",
        "transport",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        # Typed as the one class that listens, not as UpstreamListener: compiled, its methods are
        # then called directly instead of looked up by name (about 370 instructions a call, five
        # calls or more per response). server.py checks that it implements UpstreamListener.
        self.listener: ClientConnection | None = None
        self._parser = httptools.HttpResponseParser(self)
        # Bound methods kept per connection (see ClientConnection): no lookup by name per call.
        self._feed: Callable[[bytes], None] = self._parser.feed_data
        self._status: Callable[[], int] = self._parser.get_status_code
        self._keep_alive: Callable[[], bool] = self._parser.should_keep_alive
        self._send: Callable[[bytes], None] | None = None
        self._lines: list[bytes] = []
        self._connection = b""
        self._chunked = False
        # The response's Content-Length; -1 when it has none.
        self._length = -1
        self._ignore = False
        # True from the first byte of a response httptools reads to its end.
        self._parsing = False
        # The last head httptools read on this connection, when the response can be replayed:
        # see _replay. _chunk is the read that began the response httptools is reading.
        self._head: _ReplayableHead | None = None
        self._chunk: bytes | None = None
        # Bytes still due of a replayed response's body.
        self._body_left = 0
        self.skip_body = False
        self.closed = False
        self.idle_since = 0.0
        self.last_read = 0.0

    # asyncio callbacks -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self._send = self.transport.write

    def data_received(self, data: bytes) -> None:
        self.last_read = perf_counter()
        if self._ignore:
            return
        listener = self.listener
        if listener is not None:
            listener.begin_batch()
        try:
            if self._body_left:
                data = self._rest_of_body(data)
            if data and not self._parsing:
                head = self._head
                if head is not None and not self.skip_body and data.startswith(head.head):
                    data = self._replay(head, data)
                self._chunk = data
            if data and not self._ignore:
                self._feed(data)
        except httptools.HttpParserError as exc:
            self._fail(BadGateway(f"upstream sent invalid HTTP: {exc}"))
        finally:
            self._chunk = None
            if listener is not None:
                listener.end_batch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.upstream_lost(exc)

    def pause_writing(self) -> None:
        if self.listener is not None:
            self.listener.upstream_pause_writing()

    def resume_writing(self) -> None:
        if self.listener is not None:
            self.listener.upstream_resume_writing()

    # a response whose head was read before ---------------------------------------------------

    def _replay(self, head: _ReplayableHead, data: bytes) -> bytes:
        """Serve a response whose head is byte for byte one httptools read before on this
        connection (from the start of a response, as now): httptools would read it the same way,
        so its reading is replayed instead, and the body is counted out here. Upstreams send the
        same head again and again, but for the Date header once a second. Returns what follows
        the response (nothing, unless the upstream sent more than was asked for)."""
        listener = self.listener
        if listener is None:
            return data  # nobody is waiting: httptools reads it, as it would have
        listener.upstream_head(head.status, head.lines, head.connection, False, True)
        start = len(head.head)
        length = head.length
        available = len(data) - start
        if available < length:
            self._body_left = length - available
            if available:
                self._body(data[start:])
            return b""
        if length:
            self._body(data[start:start + length])
        self._complete()
        return data[start + length:] if available > length else b""

    def _rest_of_body(self, data: bytes) -> bytes:
        left = self._body_left
        if len(data) < left:
            self._body_left = left - len(data)
            self._body(data)
            return b""
        self._body_left = 0
        self._body(data if len(data) == left else data[:left])
        self._complete()
        return data[left:] if len(data) > left else b""

    def _body(self, data: bytes) -> None:
        listener = self.listener
        if listener is not None:
            listener.upstream_body(data)

    def _complete(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.upstream_complete(True)  # replayed heads are all of reusable responses

    # httptools callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._parsing = True

    def on_header(self, name: bytes, value: bytes) -> None:
        # Lines are kept ready to forward; hop-by-hop headers are consumed here (RFC 9110 §7.6.1).
        size = len(name)
        if size >= 32 or not _CONSUMED_LENGTHS[size]:
            # Not a name this method acts on (Date, Server, Content-Type…): forwarded as it is,
            # without hashing the new name object for the lookup below.
            self._lines.append(b"%b: %b\r\n" % (name, value))
            return
        lname = lower_name(name, _SPELLINGS[size])
        if lname in HOP_BY_HOP:
            if lname == b"transfer-encoding":
                self._chunked = value.strip().lower().endswith(b"chunked")
            elif lname == b"connection":
                self._connection = value
            return
        if lname == b"content-length":
            # llhttp has checked it: digits, perhaps followed by spaces or tabs (int() skips them).
            self._length = int(value)
        self._lines.append(b"%b: %b\r\n" % (name, value))

    def on_headers_complete(self) -> None:
        status = self._status()
        listener = self.listener
        lines, connection = self._lines, self._connection
        chunked, length = self._chunked, self._length
        chunk, self._chunk = self._chunk, None  # only the read's first head can be its start
        # Reset for the next head; an interim head's lines must not leak into the final one.
        self._lines = []
        self._connection = b""
        self._chunked = False
        self._length = -1
        if (chunk is not None and length >= 0 and not chunked and status >= 200
                and status != 204 and status != 304 and not self.skip_body
                and chunk.startswith(b"HTTP/") and self._keep_alive()):
            # This head began the read and is complete in it: remember it for _replay. (A head
            # starts with "HTTP/" and holds no empty line, so the first one ends it.)
            end = chunk.find(b"\r\n\r\n")
            if end >= 0:
                self._head = _ReplayableHead(chunk[:end + 4], status, lines, connection, length)
        if status < 200 and status != 101:
            # Interim responses (100 Continue, 103 Early Hints) are consumed here: the gateway
            # answers Expect: 100-continue itself.
            return
        if listener is None:
            return
        listener.upstream_head(status, lines, connection, chunked, length >= 0)
        if self.skip_body and self.listener is listener:
            # A response to HEAD has no body whatever its Content-Length says, and httptools
            # cannot be told so; finish here and do not reuse the connection.
            self._ignore = True
            self.listener = None
            listener.upstream_complete(False)

    def on_body(self, body: bytes) -> None:
        listener = self.listener
        if listener is not None:
            listener.upstream_body(body)

    def on_message_complete(self) -> None:
        self._parsing = False
        status = self._status()
        if status < 200 and status != 101:
            return
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.upstream_complete(self._keep_alive())

    # used by the exchange ------------------------------------------------------------------------

    def _fail(self, error: Exception) -> None:
        self._ignore = True
        listener, self.listener = self.listener, None
        self.abort()
        if listener is not None:
            listener.upstream_lost(error)

    def write(self, data: bytes) -> None:
        """Send bytes upstream (request head or body)."""
        if self._send is not None and not self.closed:
            self._send(data)

    def pause_reading(self) -> None:
        """Stop reading the response (the client is slower than the upstream)."""
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read the response again."""
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection at once (client gone, timeout, protocol error)."""
        self.closed = True
        self.listener = None
        if self.transport is not None:
            self.transport.abort()


class UpstreamPool:
    """Idle keep-alive connections per upstream address, and new connections when none is idle."""

    def __init__(self, *, max_idle: int = 64, idle_timeout: float = 30.0) -> None:
        self._idle: dict[str, list[UpstreamConnection]] = {}
        self._max_idle = max_idle
        self._idle_timeout = idle_timeout
        self._tls = ssl.create_default_context()

    def acquire(self, target: UpstreamTarget) -> UpstreamConnection | None:
        """An idle connection to ``target``, if one is ready (most recently used first)."""
        idle = self._idle.get(target.key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def connect(self, target: UpstreamTarget, connect_timeout: float) -> UpstreamConnection:
        """Open a new connection, mapping failures to 502 (refused) and 504 (too slow)."""
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: UpstreamConnection(target.key),
                    target.host,
                    target.port,
                    ssl=self._tls if target.scheme == "https" else None,
                    server_hostname=target.host if target.scheme == "https" else None,
                ),
                connect_timeout,
            )
        except TimeoutError as exc:
            raise GatewayTimeout(f"connect to {target.host}:{target.port} timed out") from exc
        except OSError as exc:
            raise BadGateway(f"connect to {target.host}:{target.port} failed: {exc}") from exc
        return protocol

    def release(self, conn: UpstreamConnection, now: float) -> None:
        """Return a connection whose exchange completed cleanly."""
        if conn.closed:
            return
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = []
        if len(idle) >= self._max_idle:
            conn.abort()
            return
        conn.idle_since = now
        idle.append(conn)

    def sweep(self, now: float) -> None:
        """Close connections idle for longer than the idle timeout."""
        limit = now - self._idle_timeout
        for key, idle in list(self._idle.items()):
            keep = [c for c in idle if not c.closed and c.idle_since > limit]
            for conn in idle:
                if conn not in keep:
                    conn.abort()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def close(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
        self._idle.clear()
