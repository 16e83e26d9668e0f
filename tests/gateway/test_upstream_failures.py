"""Upstream failures map to 502/504 JSON answers; disconnects propagate both ways."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import (
    RawUpstream,
    StartGateway,
    analytics_lines,
    keyless_api,
    raw_exchange,
    start_raw_upstream,
)
from tests.support.processes import free_port


class ScriptedUpstream(RawUpstream):
    """A raw TCP upstream whose behaviour each test scripts; it records what it saw."""

    def __init__(self, reply: bytes | None, *, close_after: bool = True, hold: float = 0.0) -> None:
        super().__init__()
        self.reply = reply
        self.close_after = close_after
        self.hold = hold
        self.received = bytearray()
        self.disconnected = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.received += await reader.readuntil(b"\r\n\r\n")
            if self.hold:
                # Wait for the client side to go away (or the hold to elapse).
                try:
                    data = await asyncio.wait_for(reader.read(1), self.hold)
                    if not data:
                        self.disconnected.set()
                except TimeoutError:
                    pass
            if self.reply is not None:
                writer.write(self.reply)
                await writer.drain()
            if not self.close_after:
                await reader.read()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.disconnected.set()
        finally:
            # Also when the test ends first and the handler is cancelled: an unclosed transport
            # would warn later, inside whichever test the garbage collector happens to run in.
            writer.close()


async def test_connection_refused_is_502(start_gateway: StartGateway, client: httpx.AsyncClient) -> None:
    gw = await start_gateway({"apis": [keyless_api(free_port())]})
    response = await client.get(f"http://127.0.0.1:{gw.port}/echo/x")
    assert response.status_code == 502
    assert response.json()["error"] == "bad_gateway"


async def test_slow_upstream_is_504(
    echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port, upstream_timeout=0.5)]})
    response = await client.get(f"http://127.0.0.1:{gw.port}/echo/delay/5")
    assert response.status_code == 504
    assert response.json()["error"] == "gateway_timeout"


async def test_a_slow_upstreams_time_is_its_latency(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream], tmp_path: Path
) -> None:
    # Upstream latency runs from sending the request to the read that brought the head; total
    # latency from the read that completed the request's head to the end of the answer.
    upstream = await start_raw_upstream(raw_upstreams, ScriptedUpstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", hold=0.3))
    analytics = tmp_path / "analytics.jsonl"
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]}, analytics_file=analytics)
    before = time.time()
    raw = await raw_exchange(gw.port, b"GET /echo/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    after = time.time()
    assert raw.startswith(b"HTTP/1.1 200")
    assert raw.endswith(b"ok")
    (record,) = await analytics_lines(analytics, 1)
    assert before - 0.01 <= record["time"] <= before + 0.1
    assert 290 <= record["upstream_latency_ms"] <= record["total_latency_ms"]
    assert record["total_latency_ms"] <= (after - before) * 1000


@pytest.mark.parametrize(("upstream_line", "client_line"), [
    (b"HTTP/1.1 200 Fine", b"HTTP/1.1 200 OK"),
    (b"HTTP/1.1 404 Nope", b"HTTP/1.1 404 Not Found"),
    (b"HTTP/1.1 201 ", b"HTTP/1.1 201 Created"),
    (b"HTTP/1.1 599 Custom", b"HTTP/1.1 599 "),
])
async def test_status_lines_carry_the_standard_reason_phrase(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream], upstream_line: bytes,
    client_line: bytes,
) -> None:
    # As nginx and Envoy do: the upstream's own phrase is not forwarded (clients ignore it).
    reply = upstream_line + b"\r\nContent-Length: 2\r\n\r\nok"
    upstream = await start_raw_upstream(raw_upstreams, ScriptedUpstream(reply))
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    raw = await raw_exchange(gw.port, b"GET /echo/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert raw.split(b"\r\n", 1)[0] == client_line
    assert raw.endswith(b"\r\n\r\nok")


async def test_garbage_from_upstream_is_502(
    start_gateway: StartGateway, client: httpx.AsyncClient, raw_upstreams: list[RawUpstream]
) -> None:
    upstream = await start_raw_upstream(raw_upstreams, ScriptedUpstream(b"NOT HTTP AT ALL\r\n\r\n"))
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    response = await client.get(f"http://127.0.0.1:{gw.port}/echo/x")
    assert response.status_code == 502


async def test_upstream_closing_before_answering_is_502(
    start_gateway: StartGateway, client: httpx.AsyncClient, raw_upstreams: list[RawUpstream]
) -> None:
    upstream = await start_raw_upstream(raw_upstreams, ScriptedUpstream(None))
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    response = await client.get(f"http://127.0.0.1:{gw.port}/echo/x")
    assert response.status_code == 502


async def test_truncated_upstream_body_breaks_the_client_connection(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream]
) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part"
    upstream = await start_raw_upstream(raw_upstreams, ScriptedUpstream(reply))
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    raw = await raw_exchange(gw.port, b"GET /echo/x HTTP/1.1\r\nHost: x\r\n\r\n")
    # The head went out; the only honest signal left is closing without the rest of the body.
    assert raw.startswith(b"HTTP/1.1 200")
    assert raw.endswith(b"only-part")


async def test_close_delimited_upstream_body_is_rechunked(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream]
) -> None:
    reply = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until close"
    upstream = await start_raw_upstream(raw_upstreams, ScriptedUpstream(reply))
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    raw = await raw_exchange(gw.port, b"GET /echo/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"10\r\nbody until close\r\n0\r\n\r\n"


async def test_client_disconnect_cancels_the_upstream_request(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream]
) -> None:
    upstream = await start_raw_upstream(raw_upstreams, ScriptedUpstream(b"HTTP/1.1 200 OK\r\n\r\n", hold=5.0))
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    _reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /echo/slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await asyncio.wait_for(upstream.disconnected.wait(), 3)


async def test_upstream_connection_not_reused_after_connection_close(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream], client: httpx.AsyncClient
) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    upstream = await start_raw_upstream(raw_upstreams, ScriptedUpstream(reply))
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    for _ in range(3):
        response = await client.get(f"http://127.0.0.1:{gw.port}/echo/x")
        assert response.status_code == 200
        assert response.text == "ok"
        assert "connection" not in response.headers or response.headers["connection"] != "close"
    assert upstream.received.count(b"GET /x HTTP/1.1") == 3


@pytest.mark.parametrize("spell", [str.title, str.lower, str.upper])
async def test_hop_by_hop_response_headers_are_dropped(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream], spell: object
) -> None:
    # Common spellings are matched by comparison, others through lower-casing: both must work.
    assert callable(spell)
    names = [spell(n).encode() for n in ("Content-Length", "Connection", "Keep-Alive",
                                         "Proxy-Authenticate", "Upgrade")]
    reply = (
        b"HTTP/1.1 200 OK\r\n%b: 2\r\n%b: keep-alive, X-Hop\r\nX-Hop: secret\r\n"
        b"%b: timeout=5\r\n%b: Basic\r\n%b: h2c\r\nX-Kept: yes\r\n\r\nok" % tuple(names)
    )
    upstream = await start_raw_upstream(raw_upstreams, ScriptedUpstream(reply))
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    raw = await raw_exchange(gw.port, b"GET /echo/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head = raw.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 200")
    assert b"x-kept: yes" in head
    for dropped in (b"x-hop", b"keep-alive", b"proxy-authenticate", b"upgrade"):
        assert dropped not in head, dropped


async def test_slow_upstream_reader_pauses_the_client_upload(start_gateway: StartGateway) -> None:
    got_head = asyncio.Event()

    release = asyncio.Event()

    async def never_reads_the_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            got_head.set()
            await release.wait()
        finally:
            writer.close()

    server = await asyncio.start_server(never_reads_the_body, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        gw = await start_gateway({"apis": [keyless_api(port)]}, max_body_bytes=256 * 1024 * 1024)
        _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        size = 128 * 1024 * 1024
        writer.write(b"POST /echo/up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"u" * (1024 * 1024)
        for _ in range(size // len(block)):
            writer.write(block)  # not drained: the kernel and our buffer take what they take
        await asyncio.wait_for(got_head.wait(), 5)
        await asyncio.sleep(1.0)
        assert gw.server is not None
        (conn,) = gw.server.connections
        assert conn.transport is not None
        assert not conn.transport.is_reading()  # the gateway stopped reading the upload
        assert conn.upstream is not None
        up_transport = conn.upstream.transport
        assert up_transport is not None
        assert up_transport.get_write_buffer_size() < 8 * 1024 * 1024
        writer.transport.abort()
    finally:
        release.set()
        server.close()
        await asyncio.sleep(0.05)  # let the handler close its side
