"""Gateway heartbeats in the database (``SqlNodeRegistry``) and ``GET /api/v1/gateways``."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from propylon.dashboard import changes
from propylon.dashboard.nodes import NodeReport
from propylon.dashboard.sql_nodes import SqlNodeRegistry
from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import GatewayNodeRow
from tests.dashboard.conftest import Dashboard


def report(node_id: str, *, version: int | None, seen_ago: float = 0.0, status: str = "ok",
           pid: int = 100) -> NodeReport:
    """A heartbeat of ``node_id`` received ``seen_ago`` seconds ago."""
    return NodeReport(
        node_id=node_id, hostname=f"{node_id}.example", pid=pid, address="127.0.0.1:8080",
        config_version=version, started_at=time.time() - 3600, last_seen=time.time() - seen_ago,
        status=status, details={"config_from": "dashboard"},
    )


async def test_sql_registry_upserts_by_node_id(database: Database) -> None:
    registry = SqlNodeRegistry(database)
    await registry.report(report("gw-b", version=1))
    await registry.report(report("gw-a", version=None, pid=1))
    await registry.report(report("gw-a", version=2, pid=2, status="degraded"))
    nodes = await registry.list()
    assert [n.node_id for n in nodes] == ["gw-a", "gw-b"]
    assert (nodes[0].pid, nodes[0].config_version, nodes[0].status) == (2, 2, "degraded")
    assert nodes[0].details == {"config_from": "dashboard"}
    assert abs(nodes[0].last_seen - time.time()) < 5
    async with database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(GatewayNodeRow)) == 2
    # Another registry on the same database (another dashboard) sees the same nodes.
    assert [n.node_id for n in await SqlNodeRegistry(database).list()] == ["gw-a", "gw-b"]


async def test_concurrent_reports_of_one_node_do_not_conflict(database: Database) -> None:
    registry = SqlNodeRegistry(database)
    await asyncio.gather(*(registry.report(report("gw", version=v, pid=v)) for v in range(1, 9)))
    nodes = await registry.list()
    assert len(nodes) == 1
    assert nodes[0].pid == nodes[0].config_version


async def test_long_silent_nodes_are_forgotten(database: Database) -> None:
    registry = SqlNodeRegistry(database, forget_after=timedelta(hours=1))
    await registry.report(report("old", version=1, seen_ago=7200))
    await SqlNodeRegistry(database, forget_after=timedelta(hours=1)).report(report("new", version=1))
    assert [n.node_id for n in await registry.list()] == ["new"]


async def test_gateway_list_shows_sync_state_and_staleness(
    dashboard: Dashboard, database: Database, admin: httpx.AsyncClient
) -> None:
    dashboard.context.nodes = SqlNodeRegistry(database)
    for _ in range(3):
        async with database.transaction() as session:
            await changes.record_change(session, changes.SYSTEM, "update", "api", "x")
    await dashboard.context.nodes.report(report("in-sync", version=3))
    await dashboard.context.nodes.report(report("behind", version=2, status="degraded"))
    await dashboard.context.nodes.report(report("silent", version=3, seen_ago=31))
    await dashboard.context.nodes.report(report("new", version=None, seen_ago=1))

    response = await admin.get("/api/v1/gateways")
    assert response.status_code == 200
    body = response.json()
    assert body["current_config_version"] == 3
    nodes = {g["id"]: g for g in body["gateways"]}
    assert list(nodes) == ["behind", "in-sync", "new", "silent"]
    assert (nodes["in-sync"]["in_sync"], nodes["in-sync"]["status"]) == (True, "ok")
    assert (nodes["behind"]["in_sync"], nodes["behind"]["status"]) == (False, "degraded")
    assert (nodes["silent"]["in_sync"], nodes["silent"]["status"]) == (True, "stale")
    assert nodes["silent"]["reported_status"] == "ok"
    assert (nodes["new"]["in_sync"], nodes["new"]["config_version"]) == (False, None)
    gw = nodes["in-sync"]
    assert gw["hostname"] == "in-sync.example"
    assert gw["address"] == "127.0.0.1:8080"
    assert gw["current_config_version"] == 3
    assert gw["details"] == {"config_from": "dashboard"}
    assert gw["last_seen"].endswith("Z") or gw["last_seen"].endswith("+00:00")


async def test_gateway_list_is_empty_before_any_report(admin: httpx.AsyncClient) -> None:
    response = await admin.get("/api/v1/gateways")
    assert response.json() == {"current_config_version": 0, "gateways": []}


async def test_gateway_list_needs_an_admin(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/api/v1/gateways")).status_code == 401
