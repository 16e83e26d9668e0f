"""Fixtures that start real servers on loopback: the echo upstream and a gateway service."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from propylon.demo.upstream import start_echo_upstream
from propylon.domain.config import GatewayConfig, parse_config
from propylon.gateway.service import GatewayService
from propylon.settings import GatewaySettings

StartGateway = Callable[..., Awaitable[GatewayService]]

LOOPBACK = ("127.0.0.0/8",)
"""The allow-list of gateways whose IdP (JWKS) runs on this host."""


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    """A real echo upstream on an ephemeral loopback port."""
    server = await start_echo_upstream("127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def start_gateway(tmp_path: Path) -> AsyncIterator[StartGateway]:
    """Start gateway services in this event loop; all are stopped at the end of the test."""
    services: list[GatewayService] = []

    async def start(config: dict[str, Any] | GatewayConfig, **settings: Any) -> GatewayService:
        cfg = config if isinstance(config, GatewayConfig) else parse_config(config)
        # The test IdPs listen on loopback, which the gateway's SSRF guard refuses unless allowed;
        # a test of the guard itself passes outbound_allowed_networks=().
        options: dict[str, Any] = {"port": 0, "data_dir": tmp_path / f"gw{len(services)}",
                                   "outbound_allowed_networks": LOOPBACK}
        options.update(settings)
        service = GatewayService(GatewaySettings(**options), cfg)
        await service.start()
        services.append(service)
        return service

    yield start
    for service in services:
        await service.stop(grace=1.0)


def keyless_api(upstream_port: int, **overrides: Any) -> dict[str, Any]:
    """A keyless API definition in front of the echo upstream."""
    api: dict[str, Any] = {
        "id": "echo",
        "listen_path": "/echo/",
        "upstream": f"http://127.0.0.1:{upstream_port}/",
        "strip_listen_path": True,
        "auth": {"type": "keyless"},
    }
    api.update(overrides)
    return api


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that trusts no proxy settings from the environment."""
    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as http:
        yield http


async def raw_exchange(port: int, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes (or the timeout), return what came back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    chunks = []
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
            if not chunk:
                break
            chunks.append(chunk)
    except TimeoutError:
        pass
    writer.close()
    return b"".join(chunks)


async def analytics_lines(path: Path, count: int) -> list[dict[str, Any]]:
    """The first ``count`` records of ``path``, waiting for the buffer's flush (every 0.25 s)."""
    deadline = time.monotonic() + 5.0
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        await asyncio.sleep(0.05)


class RawUpstream:
    """Base of the raw TCP upstreams tests script: ``handle`` serves one connection."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def raw_upstreams() -> AsyncIterator[list[RawUpstream]]:
    """Raw upstreams a test starts with :func:`start_raw_upstream`; closed when it ends."""
    started: list[RawUpstream] = []
    yield started
    for upstream in started:
        if upstream.server is not None:
            upstream.server.close()


Upstream = TypeVar("Upstream", bound=RawUpstream)


async def start_raw_upstream(started: list[RawUpstream], upstream: Upstream) -> Upstream:
    """Serve ``upstream`` on an ephemeral loopback port."""
    upstream.server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    started.append(upstream)
    return upstream
