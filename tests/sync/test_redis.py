"""Config notifications across processes through a real Redis (127.0.0.1:6379)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from propylon.dashboard.notify import RedisNotifier
from propylon.domain.config import GatewayConfig
from propylon.gateway.dashboard_source import DashboardConfigSource
from tests.sync.conftest import StartSyncedGateway, echo_config
from tests.sync.harness import NODE_SECRET, MemorySnapshotSource, TestDashboard
from tests.sync.test_gateway_sync import eventually
from tests.sync.test_propagation import wait_for_status

pytestmark = pytest.mark.services

REDIS_URL = "redis://127.0.0.1:6379/0"

MakeNotifier = Callable[[str], Awaitable[RedisNotifier]]


@pytest.fixture
async def channel() -> str:
    """A channel of this test's own, after checking that Redis is there."""
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=1.0)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    finally:
        await client.aclose()
    return f"propylon:test:{uuid.uuid4().hex}"


@pytest.fixture
async def notifiers() -> AsyncIterator[MakeNotifier]:
    """Start subscribed RedisNotifiers; all are closed at the end of the test."""
    made: list[RedisNotifier] = []

    async def make(channel: str) -> RedisNotifier:
        notifier = RedisNotifier(REDIS_URL, channel=channel)
        made.append(notifier)
        await notifier.start()
        assert await notifier.wait_subscribed(within=3.0)
        return notifier

    yield make
    for notifier in made:
        await notifier.aclose()


async def test_a_publication_on_one_notifier_wakes_a_waiter_on_another(
    channel: str, notifiers: MakeNotifier
) -> None:
    first, second = await notifiers(channel), await notifiers(channel)
    waiter = asyncio.create_task(second.wait_for_change(0, 5.0))
    local = asyncio.create_task(first.wait_for_change(0, 5.0))
    await asyncio.sleep(0.02)
    assert not waiter.done()
    started = time.monotonic()
    await first.publish(5)
    assert await waiter == 5
    assert await local == 5  # the publisher's own waiters wake too
    assert time.monotonic() - started < 1.0
    assert second.latest == 5


async def test_other_channels_do_not_wake_waiters(channel: str, notifiers: MakeNotifier) -> None:
    other = await notifiers(channel + ":other")
    mine = await notifiers(channel)
    await other.publish(3)
    assert await mine.wait_for_change(0, 0.3) is None


async def test_a_long_poll_on_one_dashboard_wakes_on_a_change_made_on_another(
    channel: str, notifiers: MakeNotifier, start_synced_gateway: StartSyncedGateway,
    client: httpx.AsyncClient, echo_port: int,
) -> None:
    # Two dashboards share the database (one source) and the channel; the gateway polls the
    # first, the change is made on the second.
    database = MemorySnapshotSource(echo_config(echo_port))
    polled = TestDashboard(source=database, notifier=await notifiers(channel))
    other = await notifiers(channel)
    await polled.start()
    try:
        gateway = await start_synced_gateway(polled.url)
        base = f"http://127.0.0.1:{gateway.port}"
        await asyncio.sleep(0.05)  # the long poll is waiting on the first dashboard
        started = time.monotonic()
        database.config = echo_config(echo_port, "/far/")
        database.version = 2
        await other.publish(2)
        in_force = await wait_for_status(client, f"{base}/far/x", 200, within=2.0)
        assert in_force - started < 2.0
    finally:
        await polled.stop()


async def test_the_gateway_channel_cuts_a_long_poll_short(
    channel: str, notifiers: MakeNotifier, dashboard: TestDashboard, echo_port: int, tmp_path: Path,
) -> None:
    # This dashboard is never told about the change (its notifier is not shared): only the
    # gateway's own subscription to the channel can make it fetch before the poll ends.
    applied: list[GatewayConfig] = []

    async def apply(config: GatewayConfig) -> None:
        applied.append(config)

    announcer = await notifiers(channel)
    async with httpx.AsyncClient(trust_env=False) as http:
        source = DashboardConfigSource(
            dashboard.url, NODE_SECRET, "gw-redis", tmp_path, http, apply, REDIS_URL,
            channel=channel, poll_wait=20.0, heartbeat_interval=30.0,
        )
        await source.start()
        task = asyncio.create_task(source.run())
        try:
            await eventually(lambda: source.subscribed, what="the gateway subscription")
            await asyncio.sleep(0.1)  # the long poll (20 s) is now waiting
            dashboard.source.config = echo_config(echo_port, "/hint/")
            dashboard.source.version = 2
            started = time.monotonic()
            await announcer.publish(2)
            await eventually(lambda: source.version == 2, within=2.0, what="version 2")
            assert time.monotonic() - started < 2.0
            assert applied[-1].apis[0].listen_path == "/hint/"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await source.aclose()
