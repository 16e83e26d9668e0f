"""Analytics: ingest from gateways (SqlAnalyticsSink), queries with hand-computed answers, retention.

The data set (``T0`` is a multiple of 60):

=========  ======  =====  ======  ========  ==========  ========
offset s   status  total  upstr.  api       client      developer
=========  ======  =====  ======  ========  ==========  ========
-1         200     1000   999     orders    c1          d1        (before the range)
5          200     10     9       orders    c1          d1
10         201     20     19      orders    c1          d1
30         404     30     —       orders    c1          d1
59         500     40     39      orders    c1          d1
125        302     5      4       users     c2          d2
170        503     100    —       orders    c1          d1
180        200     2000   1999    users     c2          d2        (at ``to``: excluded)
=========  ======  =====  ======  ========  ==========  ========

Percentiles interpolate linearly: for n sorted values, rank = p * (n - 1).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from propylon.dashboard import analytics_store
from propylon.dashboard.analytics_store import SqlAnalyticsSink, percentile
from propylon.dashboard.config_sync import NODE_HEADER, sync_router
from propylon.dashboard.nodes import MemoryNodeRegistry
from propylon.dashboard.notify import InProcessNotifier
from propylon.dashboard.snapshot import SqlSnapshotSource
from propylon.domain.analytics import AnalyticsRecord
from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import AnalyticsRow
from tests.dashboard.conftest import Dashboard

T0 = 1_800_000_000.0
BASE = "/api/v1/analytics"
ROWS = [
    (-1, 200, 1000.0, 999.0, "orders", "c1", "d1"),
    (5, 200, 10.0, 9.0, "orders", "c1", "d1"),
    (10, 201, 20.0, 19.0, "orders", "c1", "d1"),
    (30, 404, 30.0, None, "orders", "c1", "d1"),
    (59, 500, 40.0, 39.0, "orders", "c1", "d1"),
    (125, 302, 5.0, 4.0, "users", "c2", "d2"),
    (170, 503, 100.0, None, "orders", "c1", "d1"),
    (180, 200, 2000.0, 1999.0, "users", "c2", "d2"),
]


def _record(offset: float, status: int, total: float, upstream: float | None, api: str | None,
            client: str | None, developer: str | None) -> dict[str, Any]:
    return AnalyticsRecord(
        time=T0 + offset, api_id=api, method="GET", path=f"/{api}/x", status=status,
        upstream_latency_ms=upstream, total_latency_ms=total, identity=client, client_id=client,
        developer_id=developer, policy="gold", bytes_in=0, bytes_out=12, error=None,
    ).to_json_dict()


@pytest.fixture
async def loaded(dashboard: Dashboard) -> Dashboard:
    report = await SqlAnalyticsSink(dashboard.context.database).ingest_counted(
        "gw-1", [_record(*row) for row in ROWS])
    assert (report.accepted, report.refused) == (len(ROWS), 0)
    return dashboard


async def _count(database: Database) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(AnalyticsRow)) or 0)


async def test_malformed_records_are_refused_without_failing_the_batch(database: Database) -> None:
    good = _record(5, 200, 10.0, 9.0, "orders", "c1", "d1")
    bad: list[dict[str, Any]] = [
        {k: v for k, v in good.items() if k != "status"},
        {**good, "status": "abc"},
        {**good, "status": True},
        {**good, "time": math.nan},
        {**good, "total_latency_ms": -1},
        {**good, "status": 700},
        {**good, "api_id": "x" * 129},
        {**good, "path": "/a\x00b"},  # PostgreSQL refuses NUL: it must not fail the whole batch
        {"hello": "world"},
    ]
    sink = SqlAnalyticsSink(database)
    report = await sink.ingest_counted("gw-1", [good, *bad, {**good, "extra_field": 1}])
    assert (report.accepted, report.refused) == (2, len(bad))
    async with database.sessions() as session:
        rows = (await session.scalars(select(AnalyticsRow))).all()
    assert [(r.node_id, r.time, r.status, r.api_id, r.upstream_latency_ms, r.bytes_out) for r in rows] == [
        ("gw-1", T0 + 5, 200, "orders", 9.0, 12)] * 2
    await sink.ingest("gw-2", [])
    await sink.ingest("gw-2", bad)
    assert await _count(database) == 2


async def test_gateways_ship_records_through_the_sync_endpoint(database: Database) -> None:
    secret = "n" * 40
    app = FastAPI()
    app.include_router(sync_router(source=SqlSnapshotSource(database), notifier=InProcessNotifier(),
                                   nodes=MemoryNodeRegistry(), analytics=SqlAnalyticsSink(database),
                                   node_secret=secret))
    records = [_record(5, 200, 10.0, 9.0, "orders", "c1", "d1"), {"status": "nonsense"}]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as client:
        response = await client.post("/system/analytics", json=records,
                                     headers={"Authorization": f"Bearer {secret}", NODE_HEADER: "gw-7"})
    assert response.status_code == 202
    async with database.sessions() as session:
        assert list((await session.scalars(select(AnalyticsRow.node_id))).all()) == ["gw-7"]


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.5) == 25.0
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.95) == pytest.approx(38.5)
    assert percentile([1.0, 2.0, 3.0], 1.0) == 3.0
    assert percentile([1.0, 2.0, 3.0], 0.0) == 1.0


async def test_timeseries(loaded: Dashboard, admin: httpx.AsyncClient) -> None:
    response = await admin.get(f"{BASE}/timeseries", params={"from": T0, "to": T0 + 180, "interval": 60})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"], body["interval"]) == (T0, T0 + 180, 60)
    first, empty, last = body["buckets"]
    assert first == pytest.approx({
        "start": T0, "requests": 4, "errors": 2, "status_2xx": 2, "status_3xx": 0, "status_4xx": 1,
        "status_5xx": 1, "p50_ms": 25.0, "p95_ms": 38.5, "p99_ms": 39.7})
    assert empty == {"start": T0 + 60, "requests": 0, "errors": 0, "status_2xx": 0, "status_3xx": 0,
                     "status_4xx": 0, "status_5xx": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None}
    # [5, 100]: p50 = 52.5, p95 = 5 + 95 * 0.95, p99 = 5 + 95 * 0.99.
    assert last == pytest.approx({
        "start": T0 + 120, "requests": 2, "errors": 1, "status_2xx": 0, "status_3xx": 1,
        "status_4xx": 0, "status_5xx": 1, "p50_ms": 52.5, "p95_ms": 95.25, "p99_ms": 99.05})


async def test_timeseries_filters_and_a_short_last_bucket(
    loaded: Dashboard, admin: httpx.AsyncClient
) -> None:
    iso = datetime.fromtimestamp(T0, UTC).isoformat().replace("+00:00", "Z")
    response = await admin.get(f"{BASE}/timeseries", params={"from": iso, "to": T0 + 150, "interval": "60"})
    requests = [b["requests"] for b in response.json()["buckets"]]
    assert requests == [4, 0, 1]  # the last bucket is [T0+120, T0+150): only the 5 ms request
    for params, expected in [({"api_id": "users"}, [0, 0, 1]), ({"client_id": "c1"}, [4, 0, 1]),
                             ({"developer_id": "d2"}, [0, 0, 1]), ({"api_id": "nope"}, [0, 0, 0])]:
        filtered = await admin.get(f"{BASE}/timeseries",
                                   params={"from": T0, "to": T0 + 180, **params})
        assert [b["requests"] for b in filtered.json()["buckets"]] == expected, params
    wide = await admin.get(f"{BASE}/timeseries", params={"from": T0 - 60, "to": T0 + 240, "interval": 300})
    assert [b["requests"] for b in wide.json()["buckets"]] == [8]


async def test_top(loaded: Dashboard, admin: httpx.AsyncClient) -> None:
    window = {"from": T0, "to": T0 + 180}

    async def top(by: str, **params: str | int) -> list[dict[str, Any]]:
        response = await admin.get(f"{BASE}/top", params={"by": by, **window, **params})
        assert response.status_code == 200, response.text
        assert response.json()["by"] == by
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    # orders: 10, 20, 30, 40, 100 ms (mean 40), errors 404, 500, 503.
    assert await top("api") == [
        {"key": "orders", "requests": 5, "errors": 3, "mean_latency_ms": 40.0},
        {"key": "users", "requests": 1, "errors": 0, "mean_latency_ms": 5.0},
    ]
    assert [i["key"] for i in await top("client")] == ["c1", "c2"]
    assert [i["key"] for i in await top("developer", api_id="users")] == ["d2"]
    statuses = await top("status")
    assert [(i["key"], i["requests"], i["errors"]) for i in statuses] == [
        ("200", 1, 0), ("201", 1, 0), ("302", 1, 0), ("404", 1, 1), ("500", 1, 1), ("503", 1, 1)]
    assert [i["key"] for i in await top("status", limit=2)] == ["200", "201"]


async def test_latency_percentiles(loaded: Dashboard, admin: httpx.AsyncClient) -> None:
    response = await admin.get(f"{BASE}/latency", params={"from": T0, "to": T0 + 180})
    assert response.status_code == 200, response.text
    # total: [5, 10, 20, 30, 40, 100]; upstream (where known): [4, 9, 19, 39].
    assert response.json() == pytest.approx({
        "from": T0, "to": T0 + 180, "requests": 6,
        "p50_ms": 25.0, "p90_ms": 70.0, "p95_ms": 85.0, "p99_ms": 97.0, "max_ms": 100.0,
        "upstream_p50_ms": 14.0, "upstream_p95_ms": 36.0, "upstream_p99_ms": 38.4,
    })
    only_users = (await admin.get(f"{BASE}/latency", params={"from": T0, "to": T0 + 180,
                                                                  "developer_id": "d2"})).json()
    assert (only_users["requests"], only_users["p50_ms"], only_users["upstream_p99_ms"]) == (1, 5.0, 4.0)
    nothing = (await admin.get(f"{BASE}/latency", params={"from": 1, "to": 2})).json()
    assert (nothing["requests"], nothing["p50_ms"], nothing["max_ms"]) == (0, None, None)


async def test_default_range_is_the_last_hour(dashboard: Dashboard, admin: httpx.AsyncClient) -> None:
    import time

    now = time.time()
    await SqlAnalyticsSink(dashboard.context.database).ingest(
        "gw", [_record(now - T0 - 30, 200, 1.0, 1.0, "a", None, None),
               _record(now - T0 - 4000, 200, 1.0, 1.0, "a", None, None)])
    body = (await admin.get(f"{BASE}/latency")).json()
    assert body["requests"] == 1
    assert body["to"] - body["from"] == 3600


async def test_bad_parameters_are_all_reported(admin: httpx.AsyncClient) -> None:
    response = await admin.get(f"{BASE}/timeseries", params={"from": T0 + 10, "to": T0, "interval": 0.5})
    assert response.status_code == 422
    assert {p["location"] for p in response.json()["problems"]} == {"from", "interval"}
    response = await admin.get(f"{BASE}/top", params={"by": "colour", "from": "yesterday", "to": "nan",
                                                      "limit": "0"})
    assert {p["location"] for p in response.json()["problems"]} == {"by", "from", "to", "limit"}
    assert (await admin.get(f"{BASE}/top")).json()["problems"][0]["location"] == "by"
    too_fine = await admin.get(f"{BASE}/timeseries", params={"from": 0, "to": T0, "interval": 1})
    assert too_fine.status_code == 422
    assert "buckets" in too_fine.json()["problems"][0]["message"]
    for bad in ("inf", "-1", "1e400"):
        assert (await admin.get(f"{BASE}/latency", params={"from": bad})).status_code == 422


async def test_too_many_records_is_a_422(loaded: Dashboard, admin: httpx.AsyncClient,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analytics_store, "MAX_QUERY_ROWS", 5)
    for path in ("timeseries", "latency"):
        response = await admin.get(f"{BASE}/{path}", params={"from": T0, "to": T0 + 180})
        assert response.status_code == 422
        assert "narrow" in response.json()["problems"][0]["message"]
    narrower = await admin.get(f"{BASE}/latency", params={"from": T0, "to": T0 + 180, "api_id": "users"})
    assert narrower.status_code == 200


async def test_auth_is_required(anonymous: httpx.AsyncClient) -> None:
    for path in ("timeseries", "top?by=api", "latency"):
        for headers in ({}, {"Authorization": "Bearer ppl_nope"}):
            assert (await anonymous.get(f"{BASE}/{path}", headers=headers)).status_code == 401


async def test_prune_deletes_only_older_records(loaded: Dashboard) -> None:
    sink = SqlAnalyticsSink(loaded.context.database)
    assert await sink.prune(T0 + 30) == 3  # -1, 5 and 10
    assert await _count(loaded.context.database) == len(ROWS) - 3
    assert await sink.prune(T0 + 30) == 0
