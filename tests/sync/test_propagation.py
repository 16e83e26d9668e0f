"""A change published by the dashboard is in force on a connected gateway within 2 seconds."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.sync.conftest import StartSyncedGateway, echo_config
from tests.sync.harness import TestDashboard


async def wait_for_status(
    client: httpx.AsyncClient, url: str, status: int, *, within: float = 5.0
) -> float:
    """Poll ``url`` until it answers ``status``; return when it did (monotonic clock)."""
    deadline = time.monotonic() + within
    while True:
        response = await client.get(url)
        if response.status_code == status:
            return time.monotonic()
        assert time.monotonic() < deadline, f"{url} still answers {response.status_code}"
        await asyncio.sleep(0.01)


async def test_a_published_change_is_in_force_within_two_seconds(
    dashboard: TestDashboard, start_synced_gateway: StartSyncedGateway,
    client: httpx.AsyncClient, echo_port: int,
) -> None:
    gateway = await start_synced_gateway(dashboard.url)
    base = f"http://127.0.0.1:{gateway.port}"
    assert (await client.get(f"{base}/echo/x")).status_code == 200
    assert (await client.get(f"{base}/new/x")).status_code == 404
    await asyncio.sleep(0.05)  # let the gateway's long poll reach the dashboard and wait there

    published = time.monotonic()
    await dashboard.publish(echo_config(echo_port, "/new/"))
    in_force = await wait_for_status(client, f"{base}/new/x", 200, within=2.0)

    delay = in_force - published
    print(f"propagation delay: {delay * 1000:.1f} ms")
    assert delay < 2.0
    assert (await client.get(f"{base}/echo/x")).status_code == 404
    assert gateway.source is not None
    assert gateway.source.version == 2


async def test_successive_changes_are_all_applied_in_order(
    dashboard: TestDashboard, start_synced_gateway: StartSyncedGateway,
    client: httpx.AsyncClient, echo_port: int,
) -> None:
    gateway = await start_synced_gateway(dashboard.url)
    base = f"http://127.0.0.1:{gateway.port}"
    for index in range(3):
        await dashboard.publish(echo_config(echo_port, f"/v{index}/"))
        await wait_for_status(client, f"{base}/v{index}/x", 200, within=2.0)
    assert gateway.source is not None
    assert gateway.source.version == 4
