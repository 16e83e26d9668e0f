"""Strict HTTP/1.1 framing and request limits: refusals are precise 4xx JSON answers."""

from __future__ import annotations

import asyncio
import json
import time

import httptools
import pytest

from tests.gateway.conftest import StartGateway, keyless_api, raw_exchange


def _status_and_body(raw: bytes) -> tuple[int, bytes, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.lower(), json.loads(body) if body else {}


SMUGGLING_CASES = [
    pytest.param(
        b"POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n", id="content-length-and-transfer-encoding"),
    pytest.param(
        b"POST /echo/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        id="bad-chunk-size"),
    pytest.param(b"GET /echo/a HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", id="obs-fold"),
    pytest.param(
        b"POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        id="duplicate-content-length"),
    pytest.param(
        b"POST /echo/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        id="transfer-coding-other-than-chunked"),
    pytest.param(b"GET /echo/a HTTP/1.1\r\nHost : x\r\n\r\n", id="space-before-colon"),
    pytest.param(b"GET /echo/../../etc HTTP/1.1\r\nHost: x\r\n\r\n", id="path-above-root"),
    pytest.param(b"GET /echo/a%zz HTTP/1.1\r\nHost: x\r\n\r\n", id="bad-percent-escape"),
    pytest.param(b"GET /echo/a%00b HTTP/1.1\r\nHost: x\r\n\r\n", id="encoded-nul"),
    pytest.param(b"GET /echo/a\\b HTTP/1.1\r\nHost: x\r\n\r\n", id="backslash"),
    pytest.param(b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n", id="connect"),
]


@pytest.mark.parametrize("request_bytes", SMUGGLING_CASES)
async def test_ambiguous_or_malformed_requests_get_400_and_close(
    request_bytes: bytes, echo_port: int, start_gateway: StartGateway
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]})
    # A second request follows on the same connection: it must never be answered.
    raw = await raw_exchange(gw.port, request_bytes + b"GET /echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    status, head, body = _status_and_body(raw)
    assert status == 400
    assert b"connection: close" in head
    assert body["error"] == "bad_request"
    assert raw.count(b"HTTP/1.1 ") == 1
    assert b"smuggled" not in raw


async def test_oversized_headers_get_431(echo_port: int, start_gateway: StartGateway) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]}, max_header_bytes=2048)
    big = b"X-Big: " + b"a" * 4000 + b"\r\n"
    raw = await raw_exchange(gw.port, b"GET /echo/a HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    status, head, body = _status_and_body(raw)
    assert status == 431
    assert body["error"] == "headers_too_large"
    assert b"connection: close" in head


async def test_declared_oversized_body_gets_413_before_reading_it(
    echo_port: int, start_gateway: StartGateway
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]}, max_body_bytes=1000)
    raw = await raw_exchange(gw.port, b"POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
    status, _, body = _status_and_body(raw)
    assert status == 413
    assert body["error"] == "payload_too_large"


async def test_streamed_oversized_chunked_body_gets_413(
    echo_port: int, start_gateway: StartGateway
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]}, max_body_bytes=1000)
    chunk = b"%x\r\n%s\r\n" % (600, b"z" * 600)
    raw = await raw_exchange(
        gw.port,
        b"POST /echo/delay/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + chunk,
    )
    status, _, _ = _status_and_body(raw)
    assert status == 413


NORMALISED_PATHS = [
    (b"/echo/a/./b/../c", "/a/c"),
    (b"/echo//a///b", "/a/b"),
    (b"/echo/a/%2e%2e/b", "/b"),
    (b"/echo/%7Euser", "/~user"),
    (b"/echo/a%2fb", "/a%2Fb"),
    (b"/echo/caf%c3%a9", "/caf%C3%A9"),
]


@pytest.mark.parametrize(("sent", "forwarded"), NORMALISED_PATHS)
async def test_path_is_normalised_once_and_forwarded_as_authorised(
    sent: bytes, forwarded: str, echo_port: int, start_gateway: StartGateway
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]})
    raw = await raw_exchange(gw.port, b"GET " + sent + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, _, body = _status_and_body(raw)
    assert status == 200
    assert body["path"] == forwarded


async def test_dot_segments_cannot_escape_into_another_api(
    echo_port: int, start_gateway: StartGateway
) -> None:
    # /public/../admin must be routed (and authorised) as /admin, the path actually forwarded.
    apis = [
        keyless_api(echo_port, id="public", listen_path="/public/"),
        keyless_api(
            echo_port, id="admin", listen_path="/admin/", auth={"type": "keyless", "policies": ["nobody"]}
        ),
    ]
    policies = [{"id": "nobody", "access_rights": {"public": {}}}]
    gw = await start_gateway({"apis": apis, "policies": policies})
    request = b"GET /public/%2e%2e/admin/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = await raw_exchange(gw.port, request)
    status, _, _ = _status_and_body(raw)
    assert status == 403


async def test_header_timeout_closes_slow_clients(echo_port: int, start_gateway: StartGateway) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]}, client_header_timeout=0.3)
    raw = await raw_exchange(gw.port, b"GET /echo/a HTTP/1.1\r\nHost: x\r\n", read_timeout=3)
    status, head, body = _status_and_body(raw)
    assert status == 408
    assert b"connection: close" in head
    assert body["error"] == "request_timeout"


async def test_a_broken_body_behind_a_pipelined_request_is_answered_in_turn(
    echo_port: int, start_gateway: StartGateway
) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]})
    raw = await raw_exchange(
        gw.port,
        b"GET /echo/delay/0.3 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo/broken HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    )
    answers = raw.split(b"HTTP/1.1 ")[1:]
    assert len(answers) == 2
    assert answers[0].startswith(b"200")
    assert b'"/delay/0.3"' in answers[0]
    assert answers[1].startswith(b"400")
    assert b"/broken" not in raw


async def test_idle_keep_alive_connections_are_closed(echo_port: int, start_gateway: StartGateway) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]}, client_idle_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /echo/a HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), 5)  # returns when the gateway closes
    writer.close()
    assert data.startswith(b"HTTP/1.1 200")
    assert 0.4 < time.monotonic() - started < 3


async def test_a_stalled_request_body_is_aborted(echo_port: int, start_gateway: StartGateway) -> None:
    gw = await start_gateway({"apis": [keyless_api(echo_port)]}, client_body_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"POST /echo/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
    await writer.drain()
    started = time.monotonic()
    await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert time.monotonic() - started < 3


class _HeadProbe:
    """Records what the gateway reads from httptools when a request head is complete."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.seen: tuple[bool, str] | None = None

    def on_headers_complete(self) -> None:
        self.seen = (self.parser.should_keep_alive(), self.parser.get_http_version())


@pytest.mark.parametrize("version", ["0.9", "1.0", "1.1", "2.0"])
@pytest.mark.parametrize("connection", ["", "Connection: keep-alive\r\n", "Connection: close\r\n",
                                        "Proxy-Connection: keep-alive\r\n", "connection: Keep-Alive\r\n"])
def test_a_kept_alive_request_without_a_connection_header_is_http11(
    version: str, connection: str
) -> None:
    # The gateway skips get_http_version() for such requests (server.py, _exchange): llhttp keeps
    # only HTTP/1.1 alive by default, every other version it accepts needs a Connection header.
    probe = _HeadProbe()
    probe.parser.feed_data(f"GET / HTTP/{version}\r\nHost: x\r\n{connection}\r\n".encode())
    assert probe.seen is not None
    keep_alive, parsed = probe.seen
    assert parsed == version
    if not connection:
        assert keep_alive == (version == "1.1")


@pytest.mark.parametrize("version", ["1.2", "2.1", "3.0"])
def test_other_http_versions_are_refused_by_the_parser(version: str) -> None:
    with pytest.raises(httptools.HttpParserError):
        _HeadProbe().parser.feed_data(f"GET / HTTP/{version}\r\nHost: x\r\n\r\n".encode())
