"""Proxying through real sockets: routing, forwarded path and headers, streaming, keep-alive."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.gateway.conftest import StartGateway, keyless_api, raw_exchange


async def test_forwards_to_upstream_with_stripped_listen_path_and_query(
    echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]})
    response = await client.get(f"http://127.0.0.1:{gw.port}/echo/items/7?x=1&y=%20")
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["path"] == "/items/7"
    assert echoed["query"] == "x=1&y=%20"


async def test_listen_path_kept_when_not_stripped_and_upstream_base_path_prefixed(
    echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    api = keyless_api(echo_port, strip_listen_path=False, upstream=f"http://127.0.0.1:{echo_port}/base/")
    gw = await start_gateway({"apis": [api]})
    response = await client.get(f"http://127.0.0.1:{gw.port}/echo/a")
    assert response.json()["path"] == "/base/echo/a"


async def test_longest_listen_path_wins_and_segment_boundaries_are_respected(
    echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    apis = [
        keyless_api(echo_port, id="root", listen_path="/", upstream=f"http://127.0.0.1:{echo_port}/root/"),
        keyless_api(echo_port, id="a", listen_path="/a/", upstream=f"http://127.0.0.1:{echo_port}/a-api/"),
        keyless_api(echo_port, id="ab", listen_path="/a/b/", upstream=f"http://127.0.0.1:{echo_port}/ab-api/"),
    ]
    gw = await start_gateway({"apis": apis})
    base = f"http://127.0.0.1:{gw.port}"
    assert (await client.get(f"{base}/a/b/c")).json()["path"] == "/ab-api/c"
    assert (await client.get(f"{base}/a/bc")).json()["path"] == "/a-api/bc"
    assert (await client.get(f"{base}/a/b")).json()["path"] == "/ab-api/"
    assert (await client.get(f"{base}/ax")).json()["path"] == "/root/ax"


async def test_unknown_path_is_a_json_404(
    echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]})
    response = await client.get(f"http://127.0.0.1:{gw.port}/other")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "No API is published at this path"}


async def test_client_forwarded_headers_are_replaced_and_hop_by_hop_dropped(
    echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]})
    response = await client.get(
        f"http://127.0.0.1:{gw.port}/echo/h",
        headers={
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.example",
            "X-Real-IP": "6.6.6.6",
            "Forwarded": "for=6.6.6.6",
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "must not pass",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "TE": "trailers",
            "X-Custom": "kept",
        },
    )
    headers = response.json()["headers"]
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-host"] == f"127.0.0.1:{gw.port}"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["host"] == f"127.0.0.1:{echo_port}"
    for dropped in ("x-real-ip", "forwarded", "x-secret-hop", "keep-alive", "proxy-authorization", "te"):
        assert dropped not in headers, dropped
    assert headers["x-custom"] == "kept"


@pytest.mark.parametrize("spell", [str.lower, str.title, str.upper, str.swapcase])
async def test_headers_the_gateway_sets_or_drops_are_found_however_they_are_spelled(
    echo_port: int, start_gateway: StartGateway, spell: object
) -> None:
    assert callable(spell)
    gw = await start_gateway({"apis": [keyless_api(echo_port)]})
    sent = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil", "X-Forwarded-Proto": "ftp",
            "X-Forwarded-Port": "1", "X-Real-IP": "6.6.6.6", "Forwarded": "for=6.6.6.6",
            "Keep-Alive": "timeout=5", "TE": "trailers", "Proxy-Authorization": "Basic eA==",
            "Upgrade-Insecure-Requests": "1", "Authorization": "Basic eTp6"}
    lines = b"".join(b"%b: %b\r\n" % (spell(k).encode(), v.encode()) for k, v in sent.items())
    raw = await raw_exchange(gw.port, b"GET /echo/h HTTP/1.1\r\n%b: x\r\n%b%b: close\r\n\r\n" % (
        spell("Host").encode(), lines, spell("Connection").encode()))
    headers = json.loads(raw.partition(b"\r\n\r\n")[2])["headers"]
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-host"] == "x"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["host"] == f"127.0.0.1:{echo_port}"
    for dropped in ("x-forwarded-port", "x-real-ip", "forwarded", "keep-alive", "te",
                    "proxy-authorization"):
        assert dropped not in headers, dropped
    # Names the gateway does not act on pass as they are, the client's Authorization among them.
    assert headers["upgrade-insecure-requests"] == "1"
    assert headers["authorization"] == "Basic eTp6"


async def test_request_bodies_stream_with_content_length_and_chunked(
    echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]})
    url = f"http://127.0.0.1:{gw.port}/echo/upload"
    body = b"x" * 3_000_000
    response = await client.post(url, content=body)
    assert response.json()["body_bytes"] == len(body)
    assert response.json()["headers"]["content-length"] == str(len(body))

    async def pieces():  # type: ignore[no-untyped-def]
        for _ in range(50):
            yield b"y" * 10_000
            await asyncio.sleep(0)

    response = await client.post(url, content=pieces())
    echoed = response.json()
    assert echoed["body_bytes"] == 500_000
    assert echoed["headers"]["transfer-encoding"] == "chunked"


async def test_response_bodies_stream_chunked_and_with_length(
    echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]})
    base = f"http://127.0.0.1:{gw.port}/echo"
    streamed = await client.get(f"{base}/stream/500")
    assert streamed.headers["transfer-encoding"] == "chunked"
    assert len(streamed.text.splitlines()) == 500
    big = await client.get(f"{base}/bytes/5000000")
    assert big.headers["content-length"] == "5000000"
    assert len(big.content) == 5_000_000


async def test_head_and_no_content_responses_keep_the_connection_usable(
    echo_port: int, start_gateway: StartGateway
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]})
    request = (
        b"HEAD /echo/a HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /echo/status/204 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /echo/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    raw = await raw_exchange(gw.port, request)
    assert raw.count(b"HTTP/1.1 ") == 3
    first, second, third = raw.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200")
    assert first.endswith(b"\r\n\r\n")
    assert second.startswith(b"204")
    assert third.startswith(b"200")
    assert b'"path": "/last"' in third


async def test_pipelined_requests_are_answered_in_order(
    echo_port: int, start_gateway: StartGateway
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]})
    # The first is slow upstream; the answers must still come back in request order.
    request = b"".join(
        f"GET /echo/{p} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        for p in ("delay/0.3", "one", "two")
    ) + b"GET /echo/three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = await raw_exchange(gw.port, request)
    order = [p for p in (b'"/delay/0.3"', b'"/one"', b'"/two"', b'"/three"') if p in raw]
    assert len(order) == 4
    positions = [raw.index(p) for p in order]
    assert positions == sorted(positions)


async def test_upstream_connections_are_reused(
    echo_port: int, start_gateway: StartGateway, client: httpx.AsyncClient
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]})
    for _ in range(20):
        assert (await client.get(f"http://127.0.0.1:{gw.port}/echo/x")).status_code == 200
    assert gw.server is not None
    idle = gw.server.pool._idle  # the pool's own bookkeeping is the observable here
    assert sum(len(v) for v in idle.values()) == 1


@pytest.mark.parametrize("connection", [b"", b"Connection: keep-alive\r\n",
                                        b"Proxy-Connection: keep-alive\r\n"])
async def test_http10_client_gets_a_close_delimited_body(
    echo_port: int, start_gateway: StartGateway, connection: bytes
) -> None:
    # An HTTP/1.0 client cannot read chunked framing, whether or not it asked for keep-alive.
    gw = await start_gateway({"apis": [keyless_api(echo_port)]})
    await raw_exchange(gw.port, b"GET /echo/stream/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = await raw_exchange(gw.port, b"GET /echo/stream/3 HTTP/1.0\r\n" + connection + b"\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower()
    assert body.count(b'{"line"') == 3


async def test_expect_continue_is_answered_by_the_gateway(
    echo_port: int, start_gateway: StartGateway
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]})
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"POST /echo/e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    rest = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert rest.startswith(b"HTTP/1.1 200")
    assert b'"body_bytes": 5' in rest
    assert b"expect" not in rest.split(b"\r\n\r\n", 1)[1].lower()


async def test_slow_client_pauses_the_upstream_instead_of_buffering(
    echo_port: int, start_gateway: StartGateway
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]})
    size = 64 * 1024 * 1024
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /echo/bytes/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % size)
    await writer.drain()
    await asyncio.sleep(1.0)  # read nothing: the gateway must stop reading from the upstream
    assert gw.server is not None
    (conn,) = gw.server.connections
    assert conn.transport is not None
    assert conn.transport.get_write_buffer_size() < 4 * 1024 * 1024
    assert conn.upstream is not None
    upstream_transport = conn.upstream.transport
    assert upstream_transport is not None
    assert not upstream_transport.is_reading()
    received = 0
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    while chunk := await reader.read(1024 * 1024):
        received += len(chunk)
    writer.close()
    assert received == size
