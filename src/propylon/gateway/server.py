"""The HTTP/1.1 front end: an asyncio ``Protocol`` over httptools, proxying to upstreams.

One :class:`ClientConnection` per client socket. httptools (llhttp) parses strictly: a request with
both Content-Length and Transfer-Encoding, a malformed chunk, obs-fold, or a bad header token is a
parser error, answered with 400 and a closed connection. Requests are answered in order: a
pipelined request waits in a short queue (its body buffered, reading paused when the queue is full)
until the one before it is done.

For the request at the head of the queue the connection runs the API's compiled chain, takes an
upstream connection from the pool (or opens one), streams the request body up and the response
body down as pieces arrive, with flow control both ways (a slow reader pauses the other side's
reading), and writes one analytics record when the exchange ends. While a request is proxied the
connection itself is the upstream connection's listener; nothing else is allocated per request
but the :class:`~propylon.gateway.exchange.Exchange` and a small body queue.

Timeouts are not timers per request: :meth:`GatewayServer.sweep` runs twice a second and checks
each connection's deadlines (header, body, idle, upstream).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Final, cast

import httptools

from propylon.analytics.buffer import AnalyticsBuffer
from propylon.gateway.errors import (
    BadGateway,
    BadRequest,
    GatewayError,
    GatewayTimeout,
    HeadersTooLarge,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    render_error,
)
from propylon.gateway.exchange import Exchange
from propylon.gateway.paths import normalise_path, remembered_path
from propylon.gateway.upstream import (
    HOP_BY_HOP,
    UpstreamConnection,
    UpstreamListener,
    UpstreamPool,
    connection_options,
    lower_name,
    spellings_by_length,
)

if TYPE_CHECKING:
    from propylon.gateway.runtime import Runtime
    from propylon.settings import GatewaySettings

log = logging.getLogger(__name__)

# Module-level names are Final throughout this module: compiled by mypyc, a Final constant is a
# C constant or a static, while any other module global is a dictionary lookup at every use.
perf_counter: Final = time.perf_counter
wall_clock: Final = time.time

# Hop-by-hop headers and headers the gateway sets itself. Client-sent X-Forwarded-*, Forwarded
# and X-Real-IP are dropped: the gateway trusts no proxy in front of it.
_REQUEST_DROP: Final = HOP_BY_HOP | {
    b"host", b"content-length", b"expect", b"forwarded", b"x-forwarded-for", b"x-forwarded-host",
    b"x-forwarded-proto", b"x-forwarded-port", b"x-real-ip",
}
# The request header names _exchange acts on (dropped, or Authorization), found by length and
# spelling before any dictionary lookup; names of other lengths are forwarded as they are.
_REQUEST_SPELLINGS: Final = spellings_by_length(_REQUEST_DROP | {b"authorization"})
_REQUEST_LENGTHS: Final = bytes(bool(names) for names in _REQUEST_SPELLINGS)
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# The method as text, without a decode per request; anything else is decoded (and still valid).
_METHOD_NAMES: Final = {
    m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
}
_BUFFER_PAUSE_BYTES: Final = 256 * 1024
_PHRASES: Final = {status.value: status.phrase for status in HTTPStatus}
# Status lines by code, with the standard reason phrase (none for a code without one). The
# upstream's own phrase is not forwarded, as nginx and Envoy do not: clients ignore it (RFC 9112
# §4), and reading it cost a parser callback per response.
_STATUS_LINES: Final = tuple(
    b"HTTP/1.1 %d %b\r\n" % (code, _PHRASES.get(code, "").encode()) for code in range(1000)
)
# Connection values that name no other header, as upstreams usually spell them (set membership
# first: strip() and lower() are two calls by name).
_PLAIN_CONNECTION: Final = frozenset({b"keep-alive", b"close", b"Keep-Alive", b"Close"})

# Reasons for which reading from the client is paused; reading resumes when none holds.
_PAUSE_PIPELINE: Final = 1
_PAUSE_UPSTREAM: Final = 2
_PAUSE_BUFFER: Final = 4
_PAUSE_FINAL: Final = 8

# How the response body is framed towards the client.
_BODY_NONE: Final = 0
_BODY_RAW: Final = 1
_BODY_CHUNKED: Final = 2
_BODY_UNTIL_CLOSE: Final = 3


class _Request:
    """A parsed request head, its body framing and the body pieces not yet sent upstream."""

    __slots__ = (
        "body_done", "chunked", "chunks", "content_length", "error", "ex", "expect_continue",
        "head_done", "method",
    )

    def __init__(self) -> None:
        self.ex: Exchange | None = None
        self.head_done = False
        self.body_done = False
        self.chunked = False
        self.content_length = -1
        self.expect_continue = False
        self.chunks: list[bytes] = []
        self.error: GatewayError | None = None
        self.method = b""


class GatewayServer:
    """Shared state of every client connection of one gateway process."""

    def __init__(
        self,
        settings: GatewaySettings,
        runtime: Runtime,
        pool: UpstreamPool,
        analytics: AnalyticsBuffer | None,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.pool = pool
        # The buffer itself rather than its bound add(): compiled, a native call per request.
        self.analytics = analytics
        self.connections: set[ClientConnection] = set()
        self.draining = False
        # Unix time = perf_counter() + wall_offset. Records take their time from the request's
        # start instead of reading the wall clock once more per request; the sweeper refreshes
        # the offset twice a second, so a stepped system clock is followed within 0.5 s.
        self.wall_offset = wall_clock() - perf_counter()

    def protocol(self) -> ClientConnection:
        """Protocol factory for ``loop.create_server``."""
        return ClientConnection(self)

    def sweep(self, now: float) -> None:
        """Enforce client and upstream timeouts; close idle upstream connections.

        ``now`` is a ``time.perf_counter()`` reading, the clock of every connection time.
        """
        self.wall_offset = wall_clock() - perf_counter()
        for conn in list(self.connections):
            conn.check_timeouts(now)
        self.pool.sweep(now)

    def idle(self) -> bool:
        """True when no connection has a request in progress."""
        return all(c.active is None and c.current is None for c in self.connections)

    def close_idle(self) -> None:
        """Close connections with nothing in flight (graceful shutdown)."""
        for conn in list(self.connections):
            if conn.active is None and conn.current is None:
                conn.close()


class ClientConnection(asyncio.Protocol):
    """One client connection: parse, queue, authorise, proxy, answer in order."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        settings = server.settings
        self._max_header = settings.max_header_bytes
        self._max_body = settings.max_body_bytes
        self._max_pipelined = settings.max_pipelined
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        # Bound methods kept per connection: compiled, calling one is a plain call, while
        # ``self.parser.feed_data(...)`` looks the method up by name on every request.
        self._feed: Callable[[bytes], None] = self.parser.feed_data
        self._get_method: Callable[[], bytes] = self.parser.get_method
        self._keep_alive: Callable[[], bool] = self.parser.should_keep_alive
        self._send: Callable[[bytes], None] | None = None
        self._is_closing: Callable[[], bool] | None = None
        self.client_ip = ""
        self._client_ip_line = b"\r\n"
        self.queue: deque[_Request] = deque()
        self.current: _Request | None = None
        self.active: _Request | None = None
        self.upstream: UpstreamConnection | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self.paused = 0
        self.write_paused = False
        self.last_read = 0.0
        self.head_started = 0.0
        self.upstream_deadline = 0.0
        # Parsing state of the current request head.
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._host = b""
        self._authorization = b""
        self._parse_error: GatewayError | None = None
        # Response state of the active exchange.
        self._body_mode = _BODY_NONE
        self._head_sent = False
        self._close_after = False
        self._reused = False
        self._upstream_timeout = 30.0
        self._until_eof = False
        self._batch: list[bytes] | None = None

    # asyncio callbacks ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self._send = self.transport.write
        self._is_closing = self.transport.is_closing
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if isinstance(peer, tuple) else ""
        # The end of the x-forwarded-for line, encoded once per connection rather than per request.
        self._client_ip_line = self.client_ip.encode() + b"\r\n"
        self.last_read = perf_counter()
        if len(self.server.connections) >= self.server.settings.max_connections:
            # Overloaded: say so (503 + Retry-After) rather than let the client time out.
            self.transport.write(render_error(ServiceUnavailable("too_many_connections"), keep_alive=False))
            self.closed = True
            self.transport.close()
            return
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        # Every time of a connection is read from perf_counter (the monotonic clock): the
        # request's start is this read's time, and the sweeper compares deadlines with it.
        self.last_read = perf_counter()
        if self.paused & _PAUSE_FINAL or self.closed:
            return
        self.begin_batch()
        try:
            self._feed(data)
        except httptools.HttpParserUpgrade:
            self._fatal(BadRequest("Protocol upgrades are not supported", reason="upgrade"))
        except httptools.HttpParserError as exc:
            error = self._parse_error or BadRequest(reason=f"parse: {exc}")
            self._fatal(error)
        finally:
            self.end_batch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if self.task is not None:
            self.task.cancel()
            self.task = None
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            # The client is gone: cancel the upstream request by dropping its connection.
            upstream.abort()
        active, self.active = self.active, None
        if active is not None and active.ex is not None:
            # 499 (nginx's code) when nothing was answered yet; else the status that was sent.
            self._record(active.ex, active.ex.status if self._head_sent else 499, "client_closed")

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.upstream is not None:
            self.upstream.resume_reading()

    # httptools callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.current = _Request()
        self.head_started = self.last_read
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._host = b""
        self._authorization = b""

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > self._max_header:
            self._parse_error = HeadersTooLarge()
            raise self._parse_error

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self._max_header:
            self._parse_error = HeadersTooLarge()
            raise self._parse_error
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        req = self.current
        assert req is not None
        try:
            req.ex = self._exchange(req, self._keep_alive())
        except GatewayError as exc:
            self._parse_error = exc
            raise
        req.head_done = True
        self.queue.append(req)
        if len(self.queue) >= self._max_pipelined:
            self._pause(_PAUSE_PIPELINE)
        if self.active is None:
            self._start_next()

    def on_body(self, body: bytes) -> None:
        req = self.current
        if req is None or req.ex is None:
            return
        ex = req.ex
        ex.body_bytes += len(body)
        if ex.body_bytes > self._max_body:
            self._body_too_large(req)
            return
        if req is self.active and self.upstream is not None:
            self._send_body(req, body)
        else:
            req.chunks.append(body)
            if ex.body_bytes > _BUFFER_PAUSE_BYTES:
                self._pause(_PAUSE_BUFFER)

    def on_message_complete(self) -> None:
        req = self.current
        self.current = None
        if req is None:
            return
        req.body_done = True
        if req is self.active and self.upstream is not None and req.chunked:
            self.upstream.write(b"0\r\n\r\n")

    # request intake ------------------------------------------------------------------------------

    def _exchange(self, req: _Request, keep_alive: bool) -> Exchange:
        """Build the exchange from the parsed head, classifying headers once."""
        parser = self.parser
        raw_method = self._get_method()
        # GET by comparison (the parser's bytes are new each time, so a lookup hashes them).
        method = "GET" if raw_method == b"GET" else (
            _METHOD_NAMES.get(raw_method) or raw_method.decode("ascii")
        )
        req.method = raw_method
        if method == "CONNECT":
            raise BadRequest("CONNECT is not supported", reason="connect")
        raw = self._url
        remembered = remembered_path(raw)
        if remembered is not None:
            # a recent origin-form target without a query (each find() below costs ~1,000
            # instructions, most of it parsing its arguments)
            path, query = remembered, b""
        # find(), not `in`: bytes.__contains__ first tries the operand as an integer, and the
        # TypeError it formats and discards costs more than the search (twice per request).
        elif raw[:1] == b"/" and raw.find(b"?") < 0 and raw.find(b"#") < 0:
            # origin-form without a query: the common case needs no URL parser
            path, query = normalise_path(raw), b""
        else:
            try:
                url = httptools.parse_url(raw)
            except httptools.HttpParserInvalidURLError:
                raise BadRequest(reason="bad_request_target") from None
            path, query = normalise_path(url.path or b"/"), url.query or b""
        kept: list[tuple[bytes, bytes]] = []
        connection_tokens: set[bytes] | None = None  # made only for a Connection header
        connection_header = False
        content_length = -1
        for name, value in self._headers:
            size = len(name)
            if size >= 32 or not _REQUEST_LENGTHS[size]:
                kept.append((name, value))  # not a name acted on: no lookup
                continue
            lname = lower_name(name, _REQUEST_SPELLINGS[size])
            if lname not in _REQUEST_DROP:
                if lname == b"authorization":
                    self._authorization = value
                kept.append((name, value))
            elif lname == b"host":
                self._host = value
            elif lname == b"content-length":
                content_length = int(value)
            elif lname == b"transfer-encoding":
                if value.strip().lower() != b"chunked":
                    raise BadRequest("Unsupported transfer coding", reason="transfer_coding")
                req.chunked = True
            elif lname == b"expect":
                if value.strip().lower() != b"100-continue":
                    raise GatewayError("Unsupported expectation", status=417,
                                       code="expectation_failed", close=True)
                req.expect_continue = True
            elif lname == b"connection":
                connection_header = True
                tokens = connection_options(value)
                connection_tokens = tokens if connection_tokens is None else connection_tokens | tokens
            elif lname == b"proxy-connection":
                connection_header = True  # llhttp reads it like Connection
        if connection_tokens:
            kept = [(n, v) for n, v in kept if n.lower() not in connection_tokens]
        if content_length > self._max_body:
            raise PayloadTooLarge()
        req.content_length = content_length
        if content_length <= 0 and not req.chunked:
            req.body_done = True
        # llhttp keeps a connection alive by default only for HTTP/1.1: every other version it
        # accepts (0.9, 1.0, 2.0) needs a Connection header for that. So a kept-alive request
        # without one is HTTP/1.1, and the version string (formatted anew by each call, ~2,300
        # instructions) is not needed; tests/gateway/test_framing.py pins this down.
        version = "1.1" if keep_alive and not connection_header else parser.get_http_version()
        return Exchange(
            method, path, query, kept,
            version=version, keep_alive=keep_alive, client_ip=self.client_ip,
            host=self._host, authorization=self._authorization, started=self.last_read,
        )

    def _fatal(self, error: GatewayError) -> None:
        """The byte stream cannot be parsed further: answer in turn, then close."""
        self._pause(_PAUSE_FINAL)
        current, self.current = self.current, None
        if current is not None and current.head_done:
            # Its body is broken: that request gets the error instead of (or in place of) a reply.
            if current is self.active:
                if self._head_sent:
                    self.abort()
                else:
                    self._respond_error(current, error)
            else:
                current.error = error
            return
        req = _Request()
        req.error = error
        req.ex = Exchange(
            "-", "-", b"", [], version="1.1", keep_alive=False, client_ip=self.client_ip,
            host=b"", authorization=b"", started=self.last_read,
        )
        self.queue.append(req)
        if self.active is None:
            self._start_next()

    def _body_too_large(self, req: _Request) -> None:
        if req is self.active:
            if self._head_sent:
                self.abort()
            else:
                self._pause(_PAUSE_FINAL)
                self._respond_error(req, PayloadTooLarge())
        else:
            self._fatal(PayloadTooLarge())

    # dispatch ------------------------------------------------------------------------------------

    def _start_next(self) -> None:
        if self.active is not None or self.closed:
            return
        if not self.queue:
            return
        req = self.queue.popleft()
        self.active = req
        if self.paused & _PAUSE_PIPELINE and len(self.queue) < self._max_pipelined:
            self._resume(_PAUSE_PIPELINE)
        if req.error is not None:
            self._respond_error(req, req.error)
            return
        if self.server.draining:
            self._close_after = True
            self._respond_error(req, ServiceUnavailable("shutting_down"))
            return
        ex = req.ex
        assert ex is not None
        try:
            api = self.server.runtime.snapshot.route(ex.path)
            if api is None:
                raise NotFound()
            ex.api = api
            ex.rel_path = ex.path[len(api.listen_path) - 1 :] or "/"
            pending = api.run(ex)
        except GatewayError as exc:
            self._respond_error(req, exc)
            return
        if pending is None:
            self._proxy(req)
        else:
            self.task = self.loop.create_task(self._finish_chain(req, pending))

    async def _finish_chain(self, req: _Request, pending: object) -> None:
        try:
            await pending  # type: ignore[misc]
        except GatewayError as exc:
            if self.active is req and not self.closed:
                self._respond_error(req, exc)
            return
        except Exception:
            log.exception("request chain failed")
            if self.active is req and not self.closed:
                self._respond_error(req, GatewayError("Internal error", reason="chain_exception"))
            return
        if self.active is req and not self.closed:
            self.task = None
            self._proxy(req)

    def _proxy(self, req: _Request) -> None:
        ex = req.ex
        assert ex is not None
        assert ex.api is not None
        if req.expect_continue and not req.body_done and self.transport is not None:
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn = self.server.pool.acquire(ex.api.upstream)
        if conn is not None:
            self._attach(req, conn, reused=True)
        else:
            self.task = self.loop.create_task(self._connect(req))

    async def _connect(self, req: _Request) -> None:
        ex = req.ex
        assert ex is not None
        assert ex.api is not None
        try:
            conn = await self.server.pool.connect(ex.api.upstream, ex.api.api.upstream_connect_timeout)
        except GatewayError as exc:
            if self.active is req and not self.closed:
                self._respond_error(req, exc)
            return
        if self.active is not req or self.closed:
            conn.abort()
            return
        self.task = None
        self._attach(req, conn, reused=False)

    def _attach(self, req: _Request, conn: UpstreamConnection, *, reused: bool) -> None:
        ex = req.ex
        assert ex is not None
        assert ex.api is not None
        api = ex.api
        self.upstream = conn
        self._reused = reused
        conn.listener = self
        conn.skip_body = ex.method == "HEAD"
        if self.write_paused:
            conn.pause_reading()
        head = self._upstream_head(req, ex)
        chunks, req.chunks = req.chunks, []
        if req.chunked:
            parts = [head]
            for chunk in chunks:
                parts.append(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            if req.body_done:
                parts.append(b"0\r\n\r\n")
            conn.write(b"".join(parts))
        else:
            conn.write(head + b"".join(chunks) if chunks else head)
        # The clock is read here: the client's last read may be long past (a pipelined request, a
        # JWKS fetch), and a pooled connection's last read is from its previous exchange.
        started = ex.upstream_started = perf_counter()
        self._upstream_timeout = api.upstream_timeout
        self.upstream_deadline = started + self._upstream_timeout
        if self.paused & _PAUSE_BUFFER:
            self._resume(_PAUSE_BUFFER)

    def _upstream_head(self, req: _Request, ex: Exchange) -> bytes:
        api = ex.api
        assert api is not None
        target = api.upstream_path(ex).encode()
        if ex.query:
            target += b"?" + ex.query
        if req.chunked:
            framing = b"transfer-encoding: chunked\r\n"
        elif req.content_length >= 0:
            framing = b"content-length: %d\r\n" % req.content_length
        elif ex.method in ("POST", "PUT", "PATCH"):
            framing = b"content-length: 0\r\n"
        else:
            framing = b""
        # One formatting operation for the fixed part and one join for the client's headers.
        # Compiled, a bytes %-format with only %b and a tuple display is one build of the result
        # (CPyBytes_Build); any other (a %d, or a tuple in a variable) is the generic operator at
        # about three times the cost.
        forwarded_host = b"x-forwarded-host: %b\r\n" % (ex.host,) if ex.host else b""
        head = b"%b %b HTTP/1.1\r\n%b%b%b%b" % (
            req.method, target, api.upstream.head_prefix, self._client_ip_line, forwarded_host,
            framing,
        )
        headers = ex.headers
        if not headers:
            return head + b"\r\n"
        return head + b"".join([b"%b: %b\r\n" % (name, value) for name, value in headers]) + b"\r\n"

    def _send_body(self, req: _Request, body: bytes) -> None:
        upstream = self.upstream
        assert upstream is not None
        if req.chunked:
            upstream.write(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            upstream.write(body)

    # upstream listener ---------------------------------------------------------------------------

    def upstream_head(self, status: int, lines: list[bytes], connection: bytes, chunked: bool,
                      length_known: bool) -> None:
        req = self.active
        if req is None or req.ex is None or self.transport is None:
            return
        ex = req.ex
        ex.status = status
        # The head came in the upstream connection's latest read: its time is the head's.
        upstream = self.upstream
        ex.upstream_latency = (
            upstream.last_read if upstream is not None else perf_counter()
        ) - ex.upstream_started
        if (connection and connection != b"keep-alive" and connection not in _PLAIN_CONNECTION
                and connection.strip().lower() not in _PLAIN_CONNECTION):
            tokens = connection_options(connection)
            if tokens:
                # Headers the upstream named in Connection are hop-by-hop too.
                lines = [ln for ln in lines if ln.split(b":", 1)[0].lower() not in tokens]
        # The head's pieces go straight into the read event's batch (end_batch joins them with
        # the body into one write) rather than being joined here first.
        batch = self._batch
        parts = batch if batch is not None else []
        # Status codes are three digits (llhttp refuses others).
        parts.append(_STATUS_LINES[status] if 0 <= status < 1000 else b"HTTP/1.1 %d \r\n" % status)
        parts.extend(lines)
        for line in ex.response_headers:
            parts.append(line)
        self._until_eof = not length_known and not chunked
        if ex.method == "HEAD" or status in (204, 304) or status < 200:
            self._body_mode = _BODY_NONE
        elif length_known:
            self._body_mode = _BODY_RAW
        elif ex.version == "1.1":
            self._body_mode = _BODY_CHUNKED
            parts.append(b"transfer-encoding: chunked\r\n")
        else:
            self._body_mode = _BODY_UNTIL_CLOSE
            ex.keep_alive = False
        if not ex.keep_alive or self.server.draining:
            self._close_after = True
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if batch is None:
            self._write(b"".join(parts))
        self._head_sent = True

    def upstream_body(self, data: bytes) -> None:
        req = self.active
        if req is None or req.ex is None or self.transport is None:
            return
        req.ex.bytes_out += len(data)
        if self._body_mode == _BODY_CHUNKED:
            self._write(b"%x\r\n%b\r\n" % (len(data), data))
        elif self._body_mode != _BODY_NONE:
            self._write(data)

    def upstream_complete(self, reusable: bool) -> None:
        req = self.active
        conn, self.upstream = self.upstream, None
        if conn is not None:
            conn.listener = None
            if reusable and req is not None and req.body_done and not conn.closed:
                self.server.pool.release(conn, conn.last_read)
            else:
                conn.abort()
        if req is None or self.transport is None:
            return
        if self._body_mode == _BODY_CHUNKED:
            self._write(b"0\r\n\r\n")
        self._finish(req)

    def upstream_lost(self, exc: Exception | None) -> None:
        req = self.active
        self.upstream = None
        if req is None or req.ex is None or self.closed:
            return
        ex = req.ex
        if not self._head_sent:
            if self._reused and ex.method in _IDEMPOTENT and not ex.body_bytes and req.body_done:
                # A pooled connection the upstream had closed while idle: try once on a new one.
                self._reused = False
                self.task = self.loop.create_task(self._connect(req))
                return
            error = exc if isinstance(exc, GatewayError) else BadGateway(
                f"upstream closed the connection: {exc}" if exc else "upstream closed the connection"
            )
            self._respond_error(req, error)
        elif self._until_eof and exc is None:
            # The upstream framed its body by closing the connection: that close is the end.
            if self._body_mode == _BODY_CHUNKED and self.transport is not None:
                self._write(b"0\r\n\r\n")
            self._finish(req)
        else:
            # The response head is out, so the only honest signal left is a broken connection.
            self._record(ex, ex.status, "upstream_truncated")
            self.active = None
            self.abort()

    def upstream_pause_writing(self) -> None:
        self._pause(_PAUSE_UPSTREAM)

    def upstream_resume_writing(self) -> None:
        self._resume(_PAUSE_UPSTREAM)

    # answering -----------------------------------------------------------------------------------

    def _respond_error(self, req: _Request, error: GatewayError) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.abort()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        self.task = None
        ex = req.ex
        assert ex is not None
        ex.status = error.status
        ex.error = error.reason
        log.debug("%s %s -> %d (%s)", ex.method, ex.path, error.status, error.reason)
        keep = ex.keep_alive and not error.close and req.body_done and not self._close_after
        if self.transport is not None and not self.closed:
            self._write(render_error(error, keep_alive=keep))
        if not keep:
            self._close_after = True
        self._finish(req)

    def _finish(self, req: _Request) -> None:
        ex = req.ex
        if ex is not None:
            self._record(ex, ex.status, ex.error)
        self.active = None
        self.task = None
        self._head_sent = False
        self._body_mode = _BODY_NONE
        if self._close_after or not req.body_done or (ex is not None and not ex.keep_alive):
            # A request whose body was not read to the end leaves the stream unusable.
            self.close()
            return
        if self.queue:
            self._start_next()

    def _record(self, ex: Exchange, status: int, error: str | None) -> None:
        server = self.server
        analytics = server.analytics
        if analytics is None:
            return
        started = ex.started
        latency = ex.upstream_latency
        api = ex.api
        policy = ex.policy
        # The fields of an AnalyticsRecord as a plain tuple (see RecordFields).
        analytics.add((
            started + server.wall_offset,
            api.id if api is not None else None,
            ex.method,
            ex.path,
            status,
            latency * 1000 if latency is not None else None,
            (perf_counter() - started) * 1000,
            ex.identity,
            ex.client_id,
            ex.developer_id,
            policy.label if policy is not None else None,
            ex.body_bytes,
            ex.bytes_out,
            error,
        ))

    # connection control --------------------------------------------------------------------------

    def _pause(self, reason: int) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def _write(self, data: bytes) -> None:
        # Inside a batch (one read event) writes are collected and sent as one: a small response
        # then costs one send() instead of one for the head and one per body piece.
        batch = self._batch
        if batch is not None:
            batch.append(data)
        elif self._send is not None:
            self._send(data)

    def begin_batch(self) -> None:
        """Collect writes until :meth:`end_batch` (called around each read event)."""
        if self._batch is None:
            self._batch = []

    def end_batch(self) -> None:
        """Send what was collected since :meth:`begin_batch` in one write."""
        batch, self._batch = self._batch, None
        send, is_closing = self._send, self._is_closing
        if batch and send is not None and is_closing is not None and not is_closing():
            send(batch[0] if len(batch) == 1 else b"".join(batch))

    def close(self) -> None:
        """Close after the pending writes are flushed."""
        if self.transport is not None and not self.closed:
            self.end_batch()
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once."""
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.abort()
        self._batch = None
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    def check_timeouts(self, now: float) -> None:
        """Called by the sweeper: enforce header, body, idle and upstream deadlines."""
        settings = self.server.settings
        if self.closed:
            return
        current = self.current
        upstream = self.upstream
        # The upstream timeout bounds the wait for the head and between two reads of the body.
        if (upstream is not None and now > self.upstream_deadline
                and now > upstream.last_read + self._upstream_timeout):
            req = self.active
            if req is not None and not self._head_sent:
                self._respond_error(req, GatewayTimeout("upstream response timed out"))
            else:
                if req is not None and req.ex is not None:
                    self._record(req.ex, req.ex.status, "upstream_timeout")
                    self.active = None
                self.abort()
            return
        if current is not None:
            if not current.head_done:
                if now - self.head_started > settings.client_header_timeout:
                    self._fatal(GatewayError("Request head not received in time", status=408,
                                             code="request_timeout", reason="header_timeout",
                                             close=True))
            elif not current.body_done and now - self.last_read > settings.client_body_timeout:
                self.abort()
        elif (self.active is None and not self.queue
              and now - self.last_read > settings.client_idle_timeout):
            self.close()


if TYPE_CHECKING:
    # UpstreamConnection.listener is typed as ClientConnection (native calls when compiled); the
    # interface it relies on is UpstreamListener.
    _LISTENER: type[UpstreamListener] = ClientConnection
