"""A small "httpbin"-style upstream API that ``propylon up`` serves on :9000.

It answers every request with a JSON echo of what it received (method, path, query, headers, body
size), so a caller can see exactly what the gateway forwarded. A few paths behave differently, for
demos and tests: ``/status/<code>`` answers with that status, ``/delay/<seconds>`` waits first (at
most 30 s), ``/stream/<n>`` sends ``n`` JSON lines as a chunked body, and ``/bytes/<n>`` sends
``n`` bytes with a Content-Length. Built on the same httptools parser as the gateway so that it
needs nothing else.
"""

from __future__ import annotations

import asyncio
import json
from typing import cast

import httptools

_MAX_BODY = 10 * 1024 * 1024


class EchoProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive echo server connection."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._body_size = 0
        self._queue: asyncio.Queue[tuple[str, bytes, list[tuple[str, str]], int, bool] | None]
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._respond_in_order())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"
                                     b"connection: close\r\n\r\n")
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._worker.cancel()

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        keep = self.parser.should_keep_alive() and self._body_size <= _MAX_BODY
        self._queue.put_nowait((method, self._url, self._headers, self._body_size, keep))

    async def _respond_in_order(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None or self.transport is None or self.transport.is_closing():
                return
            method, url, headers, body_size, keep = item
            await self._respond(method, url, headers, body_size, keep)
            if not keep:
                self.transport.close()
                return

    async def _respond(
        self, method: str, url: bytes, headers: list[tuple[str, str]], body_size: int, keep: bool
    ) -> None:
        assert self.transport is not None
        parsed = httptools.parse_url(url)
        path = (parsed.path or b"/").decode("latin-1")
        parts = path.strip("/").split("/")
        status = 200
        conn = b"" if keep else b"connection: close\r\n"
        if len(parts) >= 2 and parts[-2] == "status" and parts[-1].isdigit():
            status = int(parts[-1])
        elif len(parts) >= 2 and parts[-2] == "delay":
            try:
                await asyncio.sleep(min(float(parts[-1]), 30.0))
            except ValueError:
                status = 400
        elif len(parts) >= 2 and parts[-2] == "stream" and parts[-1].isdigit():
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n"
                                 b"transfer-encoding: chunked\r\n" + conn + b"\r\n")
            for i in range(min(int(parts[-1]), 10_000)):
                line = json.dumps({"line": i}).encode() + b"\n"
                self.transport.write(b"%x\r\n%b\r\n" % (len(line), line))
                await asyncio.sleep(0)
            self.transport.write(b"0\r\n\r\n")
            return
        elif len(parts) >= 2 and parts[-2] == "bytes" and parts[-1].isdigit():
            size = min(int(parts[-1]), 100 * 1024 * 1024)
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                                 b"content-length: %d\r\n%b\r\n" % (size, conn))
            block = b"x" * 65536
            sent = 0
            while sent < size:
                piece = block[: min(65536, size - sent)]
                self.transport.write(piece)
                sent += len(piece)
                await asyncio.sleep(0)
            return
        body = b"" if status in (204, 304) else json.dumps({
            "method": method,
            "path": path,
            "query": (parsed.query or b"").decode("latin-1"),
            "headers": {k.lower(): v for k, v in headers},
            "body_bytes": body_size,
        }).encode()
        length = b"" if status in (204, 304) else b"content-length: %d\r\n" % len(body)
        self.transport.write(
            b"HTTP/1.1 %d Echo\r\ncontent-type: application/json\r\n%b%b\r\n%b"
            % (status, length, conn, b"" if method == "HEAD" else body)
        )


async def start_echo_upstream(host: str = "127.0.0.1", port: int = 9000) -> asyncio.Server:
    """Start the echo upstream; the caller closes the returned server."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(EchoProtocol, host, port)
