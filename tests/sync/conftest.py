"""Fixtures for sync tests: a real dashboard on loopback and gateways in dashboard mode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from propylon.gateway import dashboard_source
from propylon.gateway.service import GatewayService
from propylon.settings import GatewaySettings
from tests.gateway.conftest import client, echo_port, keyless_api
from tests.sync.harness import NODE_SECRET, TestDashboard

__all__ = ["client", "echo_port"]  # fixtures shared with the gateway tests

StartSyncedGateway = Callable[..., Awaitable[GatewayService]]


def echo_config(port: int, *paths: str) -> dict[str, Any]:
    """A configuration publishing the echo upstream under each of ``paths`` (default /echo/)."""
    apis = [
        keyless_api(port, id=path.strip("/") or "root", listen_path=path)
        for path in (paths or ("/echo/",))
    ]
    return {"apis": apis}


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # Production back-offs are seconds; the behaviour under test is the same at a tenth of that.
    monkeypatch.setattr(dashboard_source, "_START_RETRY_DELAYS", (0.05,))
    monkeypatch.setattr(dashboard_source, "_BACKOFF_MIN", 0.05)
    monkeypatch.setattr(dashboard_source, "_BACKOFF_MAX", 0.2)


@pytest.fixture
async def dashboard(echo_port: int) -> AsyncIterator[TestDashboard]:
    """A running dashboard serving ``/echo/`` → the echo upstream as version 1."""
    board = TestDashboard(echo_config(echo_port))
    await board.start()
    yield board
    await board.stop()


@pytest.fixture
async def start_synced_gateway(tmp_path: Path, echo_port: int) -> AsyncIterator[StartSyncedGateway]:
    """Start gateways in dashboard mode; all are stopped at the end of the test.

    Depends on ``echo_port`` so that the gateways stop (closing their upstream connections) before
    the echo server waits for its connections to close.
    """
    services: list[GatewayService] = []

    async def start(url: str, *, data_dir: Path | None = None, **settings: Any) -> GatewayService:
        options: dict[str, Any] = {
            "port": 0,
            "data_dir": data_dir or tmp_path / "gw",
            "dashboard_url": url,
            "node_secret": NODE_SECRET,
            "node_id": "gw-test",
            # The test IdPs (JWKS) listen on loopback, which the SSRF guard refuses unless allowed.
            "outbound_allowed_networks": ("127.0.0.0/8",),
        }
        options.update(settings)
        service = GatewayService(GatewaySettings(**options))
        await service.start()
        services.append(service)
        return service

    yield start
    for service in services:
        await service.stop(grace=1.0)
