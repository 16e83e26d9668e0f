"""Responses whose head an upstream connection read before are replayed, not parsed again.

The replay is only right if the client sees exactly what httptools' reading would have given:
same status line and headers, the body counted out by Content-Length whether it arrives with
the head or later, the connection reused or not as the head says, and anything unusual handed
back to httptools. Each test sends several responses over one upstream connection, so that all
but the first take the replay path.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.conftest import RawUpstream, StartGateway, keyless_api, start_raw_upstream

HEAD = b"HTTP/1.1 200 OK\r\nServer: scripted\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n"


class KeepAliveUpstream(RawUpstream):
    """Answers each request on a connection with the next scripted reply, sent in pieces.

    A reply is a list of byte strings written with a pause between them, so that the gateway
    reads them separately.
    """

    def __init__(self, replies: list[list[bytes]], *, close_when_done: bool = False) -> None:
        super().__init__()
        self.replies = replies
        self.close_when_done = close_when_done
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.replies:
                self.requests.append(await reader.readuntil(b"\r\n\r\n"))
                for index, piece in enumerate(self.replies.pop(0)):
                    if index:
                        await asyncio.sleep(0.05)
                    writer.write(piece)
                    await writer.drain()
            if not self.close_when_done:
                await reader.read()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _start(
    started: list[RawUpstream], replies: list[list[bytes]], *, close_when_done: bool = False
) -> KeepAliveUpstream:
    return await start_raw_upstream(started, KeepAliveUpstream(replies, close_when_done=close_when_done))


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: bytes = b"GET"
) -> tuple[bytes, bytes]:
    """One request on an open client connection: the response head and its body."""
    writer.write(b"%b /echo/x HTTP/1.1\r\nHost: x\r\n\r\n" % method)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = b"" if method == b"HEAD" else await asyncio.wait_for(reader.readexactly(length), 5)
    return head, body


async def _client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


@pytest.mark.parametrize("pieces", [
    pytest.param(lambda body: [HEAD + body], id="whole"),
    pytest.param(lambda body: [HEAD + body[:3], body[3:]], id="body-split"),
    pytest.param(lambda body: [HEAD, body[:1], body[1:]], id="head-first"),
])
async def test_a_repeated_head_is_answered_as_the_first(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream], pieces: object
) -> None:
    assert callable(pieces)
    bodies = [b"%010d" % n for n in range(4)]
    upstream = await _start(raw_upstreams, [pieces(body) for body in bodies])
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    reader, writer = await _client(gw.port)
    answers = [await _exchange(reader, writer) for _ in bodies]
    writer.close()
    assert [body for _, body in answers] == bodies
    assert len({head for head, _ in answers}) == 1
    assert answers[0][0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"server: scripted" in answers[0][0].lower()
    assert upstream.connections == 1
    # The connection went back to the pool remembering the head: the later answers were replays.
    assert gw.server is not None
    (idle,) = gw.server.pool._idle.values()
    assert idle[0]._head is not None


async def test_a_large_replayed_body_streams_to_a_slow_client(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream]
) -> None:
    # Megabytes in many reads, the client reading slowly: the replayed body is counted out
    # across reads while flow control pauses and resumes the upstream.
    size = 3_000_000
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size
    bodies = [bytes([65 + n]) * size for n in range(2)]
    upstream = await _start(raw_upstreams, [[head + body] for body in bodies])
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    reader, writer = await _client(gw.port)
    for body in bodies:
        writer.write(b"GET /echo/x HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        received = bytearray()
        while len(received) < size:
            received += await asyncio.wait_for(reader.read(65536), 5)
            await asyncio.sleep(0.001)
        assert received == body
    writer.close()
    assert upstream.connections == 1


async def test_a_changed_head_is_read_again(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream]
) -> None:
    other = HEAD.replace(b"Content-Length: 10", b"Content-Length: 4").replace(b"text/plain", b"x/y")
    upstream = await _start(raw_upstreams, [[HEAD + b"0123456789"], [other + b"abcd"],
                                        [other + b"efgh"], [HEAD + b"9876543210"]])
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    reader, writer = await _client(gw.port)
    answers = [await _exchange(reader, writer) for _ in range(4)]
    writer.close()
    assert [body for _, body in answers] == [b"0123456789", b"abcd", b"efgh", b"9876543210"]
    assert [b"content-type: x/y" in head.lower() for head, _ in answers] == [False, True, True, False]
    assert upstream.connections == 1


async def test_a_head_saying_close_is_not_replayed(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream]
) -> None:
    closing = HEAD.replace(b"Server: scripted\r\n", b"Connection: close\r\n")
    # Two replies a connection could carry, but the head says close: one connection each.
    upstream = await _start(raw_upstreams, [[closing + b"0123456789"], [closing + b"0123456789"]])
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    reader, writer = await _client(gw.port)
    for _ in range(2):
        head, body = await _exchange(reader, writer)
        assert body == b"0123456789"
        assert b"connection: close" not in head.lower()  # the client's connection stays open
    writer.close()
    assert upstream.connections == 2


async def test_bytes_after_a_replayed_body_go_to_the_parser(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream]
) -> None:
    # An upstream sending more than was asked for: httptools reads the excess (and the
    # connection is dropped for it), as it would have without the replay.
    upstream = await _start(raw_upstreams, [[HEAD + b"0123456789"], [HEAD + b"01234567899garbage\r\n"],
                                        [HEAD + b"abcdefghij"]])
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    reader, writer = await _client(gw.port)
    answers = [await _exchange(reader, writer) for _ in range(3)]
    writer.close()
    assert [body for _, body in answers] == [b"0123456789", b"0123456789", b"abcdefghij"]
    assert upstream.connections == 2


async def test_only_the_first_head_of_a_read_is_remembered(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream]
) -> None:
    # An unasked-for second response in the same read as the first: its head must not be
    # remembered as if it were the read's first one (the bytes of one, the reading of the other).
    other = HEAD.replace(b"Content-Length: 10", b"Content-Length: 4")
    upstream = await _start(raw_upstreams, [[HEAD + b"0123456789" + other + b"abcd"],
                                        [HEAD + b"9876543210"]])
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    reader, writer = await _client(gw.port)
    answers = [await _exchange(reader, writer) for _ in range(2)]
    writer.close()
    assert [body for _, body in answers] == [b"0123456789", b"9876543210"]


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
async def test_heads_of_bodiless_statuses_are_not_replayed(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream], status: bytes
) -> None:
    # 204 and 304 have no body whatever their Content-Length says; replaying that length would
    # take the next response's bytes for a body.
    bodiless = b"HTTP/1.1 %b\r\nContent-Length: 10\r\n\r\n" % status
    upstream = await _start(raw_upstreams, [[bodiless], [bodiless], [HEAD + b"0123456789"]])
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    reader, writer = await _client(gw.port)
    heads = []
    for _ in range(2):
        writer.write(b"GET /echo/x HTTP/1.1\r\nHost: x\r\n\r\n")
        heads.append(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5))
    last = await _exchange(reader, writer)
    writer.close()
    assert all(head.startswith(b"HTTP/1.1 " + status) for head in heads)
    assert last[1] == b"0123456789"


async def test_a_head_request_is_not_replayed(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream]
) -> None:
    # A response to HEAD has no body whatever its Content-Length says.
    upstream = await _start(raw_upstreams, [[HEAD + b"0123456789"], [HEAD], [HEAD + b"abcdefghij"]])
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    reader, writer = await _client(gw.port)
    first = await _exchange(reader, writer)
    head_only = await _exchange(reader, writer, b"HEAD")
    third = await _exchange(reader, writer)
    writer.close()
    assert (first[1], head_only[1], third[1]) == (b"0123456789", b"", b"abcdefghij")
    assert head_only[0].startswith(b"HTTP/1.1 200 OK\r\n")


async def test_a_replayed_response_cut_short_breaks_the_client_connection(
    start_gateway: StartGateway, raw_upstreams: list[RawUpstream]
) -> None:
    # The upstream closes with five bytes of the second body unsent: the head is out, so the
    # client's connection is closed after what did arrive.
    upstream = await _start(raw_upstreams, [[HEAD + b"0123456789"], [HEAD + b"01234"]],
                            close_when_done=True)
    gw = await start_gateway({"apis": [keyless_api(upstream.port)]})
    reader, writer = await _client(gw.port)
    assert (await _exchange(reader, writer))[1] == b"0123456789"
    writer.write(b"GET /echo/x HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    rest = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 200")
    assert rest == b"01234"
