"""The floor of the gateway's design: the smallest asyncio Protocol proxy over httptools and uvloop.

This is not Propylon. It is the "Protocol-based prototype" the performance target was set
against, rebuilt so that its cost can be measured on the same machine in the same run as
Propylon, nginx and HAProxy: what an asyncio ``Protocol`` over httptools on uvloop costs per
proxied request before any feature is added.

What it does per request, and nothing more: parse the request with httptools, take the bearer
token from ``Authorization``, look it up in a dict of verified tokens (verify RS256 with PyJWT on
a miss: signature, ``iss``, ``aud``, ``exp``; 401 otherwise), send ``GET <path>`` on this client
connection's own keep-alive upstream connection and copy the response (status, headers, body)
back. What it does not do: path normalisation, header filtering and forwarding, X-Forwarded-*,
policies, rate limits, quotas, analytics, timeouts, pipelining, request bodies, streaming with
flow control, error pages, connection pooling across clients, bounded caches. Every one of those
is something Propylon does per request.

    python benchmarks/floor_proxy.py --port P --upstream-port U --public-key key.pem \
        --issuer ISSUER --audience AUD
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import httptools
import jwt
import uvloop

_UNAUTHORISED = (
    b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 26\r\n"
    b'www-authenticate: Bearer error="invalid_token"\r\n\r\n{"error": "invalid_token"}'
)


class Verifier:
    """RS256 with one public key; verified tokens are remembered (unbounded: a benchmark)."""

    def __init__(self, public_key: bytes, issuer: str, audience: str) -> None:
        self.key = public_key
        self.issuer = issuer
        self.audience = audience
        self.cache: dict[bytes, dict[str, Any]] = {}

    def claims(self, authorization: bytes) -> dict[str, Any] | None:
        hit = self.cache.get(authorization)
        if hit is not None:
            return hit
        if not authorization.startswith(b"Bearer "):
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                authorization[7:], self.key, algorithms=["RS256"], issuer=self.issuer,
                audience=self.audience, options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError:
            return None
        self.cache[authorization] = claims
        return claims


class Upstream(asyncio.Protocol):
    """The client connection's own upstream connection; hands the whole response back."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.parts: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.upstream = None
        if self.client.transport is not None:
            self.client.transport.close()

    def on_status(self, status: bytes) -> None:
        self.parts = [b"HTTP/1.1 %d %b\r\n" % (self.parser.get_status_code(), status)]

    def on_header(self, name: bytes, value: bytes) -> None:
        self.parts.append(b"%b: %b\r\n" % (name, value))

    def on_headers_complete(self) -> None:
        self.parts.append(b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)

    def on_message_complete(self) -> None:
        if self.client.transport is not None:
            self.client.transport.write(b"".join(self.parts))


class Client(asyncio.Protocol):
    """One client connection: parse, check the token, forward, copy the answer back."""

    def __init__(self, verifier: Verifier, upstream_port: int) -> None:
        self.verifier = verifier
        self.upstream_port = upstream_port
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.upstream: Upstream | None = None
        self.url = b""
        self.authorization = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self.authorization = value

    def on_message_complete(self) -> None:
        authorization, self.authorization = self.authorization, b""
        if self.verifier.claims(authorization) is None:
            assert self.transport is not None
            self.transport.write(_UNAUTHORISED)
            return
        head = b"GET %b HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n" % self.url
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.write(head)
        else:
            asyncio.get_running_loop().create_task(self._connect(head))

    async def _connect(self, head: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, upstream = await loop.create_connection(
            lambda: Upstream(self), "127.0.0.1", self.upstream_port
        )
        self.upstream = upstream
        assert upstream.transport is not None
        upstream.transport.write(head)


async def serve(args: argparse.Namespace) -> None:
    verifier = Verifier(args.public_key_pem, args.issuer, args.audience)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Client(verifier, args.upstream_port), "127.0.0.1", args.port, backlog=1024
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--public-key", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    args = parser.parse_args()
    with open(args.public_key, "rb") as handle:
        args.public_key_pem = handle.read()
    uvloop.run(serve(args))


if __name__ == "__main__":
    main()
