"""A real gateway in dashboard mode against a real dashboard: refusals, outages, saved copy."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from propylon.domain.config_signing import sign_snapshot
from propylon.gateway.dashboard_source import DashboardUnavailable
from propylon.gateway.service import GatewayService
from propylon.gateway.snapshot_file import SNAPSHOT_FILE
from tests.sync.conftest import StartSyncedGateway, echo_config
from tests.sync.harness import NODE_SECRET, TestDashboard
from tests.sync.test_propagation import wait_for_status


async def eventually(check: Callable[[], bool], *, within: float = 5.0, what: str = "") -> None:
    """Poll ``check`` until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        await asyncio.sleep(0.01)


def logged(caplog: pytest.LogCaptureFixture, text: str) -> Callable[[], bool]:
    """A check: has a log message containing ``text`` been emitted?"""
    return lambda: any(text in record.getMessage() for record in caplog.records)


def version(gateway: GatewayService) -> int | None:
    assert gateway.source is not None
    return gateway.source.version


def resign(document: dict[str, object]) -> tuple[bytes, str]:
    body = json.dumps(document).encode()
    return body, sign_snapshot(body, NODE_SECRET)


async def test_a_tampered_snapshot_is_refused_and_the_old_config_kept(
    dashboard: TestDashboard, start_synced_gateway: StartSyncedGateway,
    client: httpx.AsyncClient, echo_port: int, caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = await start_synced_gateway(dashboard.url)
    base = f"http://127.0.0.1:{gateway.port}"
    # A proxy on the way rewrites the listen path but cannot re-sign.
    dashboard.rewrite = lambda body, sig: (body.replace(b"/new/", b"/bad/"), sig)
    await dashboard.publish(echo_config(echo_port, "/new/"))
    await eventually(logged(caplog, "signature does not match"), what="the refusal")
    assert version(gateway) == 1
    assert (await client.get(f"{base}/echo/x")).status_code == 200
    assert (await client.get(f"{base}/bad/x")).status_code == 404

    dashboard.rewrite = None
    await dashboard.publish(echo_config(echo_port, "/newer/"))
    await wait_for_status(client, f"{base}/newer/x", 200)
    assert version(gateway) == 3


async def test_an_invalid_configuration_is_refused_and_reported(
    dashboard: TestDashboard, start_synced_gateway: StartSyncedGateway,
    client: httpx.AsyncClient, echo_port: int, caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = await start_synced_gateway(dashboard.url)
    base = f"http://127.0.0.1:{gateway.port}"
    broken = echo_config(echo_port, "/new/")
    broken["apis"][0]["auth"] = {"type": "keyless", "policies": ["nope"]}
    broken["apis"].append({"id": "x", "listen_path": "no-slash", "upstream": "ftp://x"})
    await dashboard.publish(broken)
    await eventually(logged(caplog, "refused version 2"), what="the refusal")
    problems = [r.getMessage() for r in caplog.records if "dashboard snapshot version 2" in r.getMessage()]
    assert any("listen_path" in p for p in problems)
    assert any("upstream" in p for p in problems)
    assert version(gateway) == 1
    assert (await client.get(f"{base}/echo/x")).status_code == 200
    assert (await client.get(f"{base}/new/x")).status_code == 404

    def degraded() -> bool:
        nodes = dashboard.nodes._nodes  # read without awaiting, from the poll loop
        node = nodes.get("gw-test")
        return node is not None and node.details.get("rejected_version") == 2

    await eventually(degraded, what="a heartbeat reporting the refusal")
    assert dashboard.nodes._nodes["gw-test"].status == "degraded"
    assert dashboard.nodes._nodes["gw-test"].config_version == 1

    await dashboard.publish(echo_config(echo_port, "/fixed/"))
    await wait_for_status(client, f"{base}/fixed/x", 200)
    assert version(gateway) == 3
    await eventually(lambda: dashboard.nodes._nodes["gw-test"].status == "ok", what="ok again")


@pytest.mark.parametrize(
    ("outer", "inner", "problem"),
    [(2, "7", "does not match the snapshot version"), (0, "0", "is not newer than 1")],
    ids=["inner-differs", "older"],
)
async def test_a_snapshot_with_a_bad_version_is_refused(
    dashboard: TestDashboard, start_synced_gateway: StartSyncedGateway,
    client: httpx.AsyncClient, echo_port: int, caplog: pytest.LogCaptureFixture,
    outer: int, inner: str, problem: str,
) -> None:
    gateway = await start_synced_gateway(dashboard.url)
    base = f"http://127.0.0.1:{gateway.port}"
    config = {**echo_config(echo_port, "/new/"), "version": inner}
    # Correctly signed (a confused dashboard, or a replayed old snapshot), but the version is wrong.
    dashboard.rewrite = lambda body, sig: resign({"version": outer, "config": config})
    await dashboard.publish(echo_config(echo_port, "/other/"))
    await eventually(logged(caplog, problem), what="the refusal")
    assert version(gateway) == 1
    assert (await client.get(f"{base}/echo/x")).status_code == 200
    assert (await client.get(f"{base}/new/x")).status_code == 404


async def test_dashboard_down_at_start_serves_the_saved_snapshot(
    dashboard: TestDashboard, start_synced_gateway: StartSyncedGateway,
    client: httpx.AsyncClient, echo_port: int, tmp_path: Path,
) -> None:
    first = await start_synced_gateway(dashboard.url, data_dir=tmp_path / "a")
    assert (tmp_path / "a" / SNAPSHOT_FILE).is_file()
    await first.stop(grace=0.1)
    await dashboard.stop()

    gateway = await start_synced_gateway(dashboard.url, data_dir=tmp_path / "a")
    base = f"http://127.0.0.1:{gateway.port}"
    assert version(gateway) == 1
    assert (await client.get(f"{base}/echo/x")).status_code == 200

    # It keeps trying in the background. Back with the same version: in step again, and it says so.
    await dashboard.start()
    nodes = dashboard.nodes._nodes

    def reported_ok() -> bool:
        node = nodes.get("gw-test")
        return node is not None and node.status == "ok" and node.config_version == 1

    await eventually(reported_ok, what="an ok heartbeat")
    assert nodes["gw-test"].details["config_source"] == "dashboard"

    await dashboard.publish(echo_config(echo_port, "/back/"))
    await wait_for_status(client, f"{base}/back/x", 200, within=2.0)
    assert version(gateway) == 2


async def test_no_dashboard_and_no_saved_snapshot_fails_clearly(
    start_synced_gateway: StartSyncedGateway, tmp_path: Path
) -> None:
    with pytest.raises(DashboardUnavailable, match=SNAPSHOT_FILE):
        await start_synced_gateway("http://127.0.0.1:9", data_dir=tmp_path / "empty")


async def test_an_altered_saved_snapshot_is_not_served(
    dashboard: TestDashboard, start_synced_gateway: StartSyncedGateway, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = await start_synced_gateway(dashboard.url, data_dir=tmp_path / "a")
    await first.stop(grace=0.1)
    await dashboard.stop()
    saved = tmp_path / "a" / SNAPSHOT_FILE
    saved.write_text(saved.read_text().replace("/echo/", "/evil/"))
    with pytest.raises(DashboardUnavailable):
        await start_synced_gateway(dashboard.url, data_dir=tmp_path / "a")
    assert logged(caplog, "signature does not match")()


async def test_a_wrong_node_secret_cannot_fetch_the_configuration(
    dashboard: TestDashboard, start_synced_gateway: StartSyncedGateway, tmp_path: Path
) -> None:
    with pytest.raises(DashboardUnavailable, match="401"):
        await start_synced_gateway(dashboard.url, node_secret="another-secret-0123456789abcdef-xyz")


async def test_gateway_keeps_serving_while_the_dashboard_is_down_and_catches_up(
    dashboard: TestDashboard, start_synced_gateway: StartSyncedGateway,
    client: httpx.AsyncClient, echo_port: int, caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = await start_synced_gateway(dashboard.url)
    base = f"http://127.0.0.1:{gateway.port}"
    await asyncio.sleep(0.05)  # the long poll is waiting on the dashboard
    await dashboard.stop()
    await eventually(logged(caplog, "unavailable"), what="the gateway noticing the outage")
    for _ in range(5):
        assert (await client.get(f"{base}/echo/x")).status_code == 200

    # A change made while the gateway could not hear about it.
    dashboard.source.config = echo_config(echo_port, "/later/")
    dashboard.source.version = 2
    await dashboard.start()
    await wait_for_status(client, f"{base}/later/x", 200)
    assert version(gateway) == 2


async def test_heartbeats_report_the_config_version(
    dashboard: TestDashboard, start_synced_gateway: StartSyncedGateway, echo_port: int
) -> None:
    gateway = await start_synced_gateway(dashboard.url)
    nodes = dashboard.nodes._nodes
    await eventually(lambda: "gw-test" in nodes, what="the first heartbeat")
    node = nodes["gw-test"]
    assert node.config_version == 1
    assert node.address == f"127.0.0.1:{gateway.port}"
    assert node.status == "ok"
    assert node.details["config_source"] == "dashboard"

    await dashboard.publish(echo_config(echo_port, "/two/"))
    # Sent right after the apply, not at the next 10 s tick.
    await eventually(lambda: nodes["gw-test"].config_version == 2, within=2.0, what="heartbeat v2")

    await gateway.stop(grace=0.1)
    assert nodes["gw-test"].status == "stopping"


@pytest.fixture
def _quick_analytics_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from propylon.analytics import dashboard_writer
    from propylon.gateway import service

    monkeypatch.setattr(dashboard_writer, "_BACKOFF_MIN", 0.05)
    monkeypatch.setattr(dashboard_writer, "_BACKOFF_MAX", 0.2)
    monkeypatch.setattr(service, "_SPOOL_DRAIN_INTERVAL", 0.1)


@pytest.mark.usefixtures("_quick_analytics_retries")
async def test_analytics_reach_the_dashboard_and_survive_an_outage(
    dashboard: TestDashboard, start_synced_gateway: StartSyncedGateway,
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    gateway = await start_synced_gateway(dashboard.url)
    base = f"http://127.0.0.1:{gateway.port}"
    records = dashboard.sink.records

    def paths() -> set[str]:
        return {record["path"] for _, record in records}

    for index in range(3):
        await client.get(f"{base}/echo/up{index}")
    await eventually(lambda: {"/echo/up0", "/echo/up1", "/echo/up2"} <= paths(), what="records")
    assert {node for node, _ in records} == {"gw-test"}
    assert all(r["status"] == 200 and "timestamp" in r for _, r in records)

    await dashboard.stop()
    for index in range(3):
        assert (await client.get(f"{base}/echo/down{index}")).status_code == 200
    writer = gateway.analytics_writer
    assert writer is not None
    await eventually(lambda: writer.spooled_bytes > 0, what="the spool")
    await eventually(lambda: b"/echo/down2" in writer.spool_path.read_bytes(), what="all spooled")

    await dashboard.start()
    # No new traffic: the periodic drain alone must deliver the spool.
    await eventually(lambda: {f"/echo/down{i}" for i in range(3)} <= paths(), what="spool sent")
    await eventually(lambda: not writer.spool_path.exists(), what="spool removed")
    sent = [r["path"] for _, r in records]
    assert len(sent) == len(set(sent)), "a record was delivered twice"
