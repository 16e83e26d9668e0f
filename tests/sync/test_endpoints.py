"""The dashboard's /system endpoints over real HTTP: auth, long poll, heartbeat, analytics."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from propylon.dashboard.config_sync import ConfigSnapshot, sync_router
from propylon.dashboard.nodes import MemoryNodeRegistry
from propylon.dashboard.notify import InProcessNotifier
from propylon.domain.config_signing import SIGNATURE_HEADER, verify_snapshot
from tests.sync.harness import NODE_SECRET, MemorySnapshotSource, TestDashboard

AUTH = {"Authorization": f"Bearer {NODE_SECRET}"}


def heartbeat(**overrides: object) -> dict[str, object]:
    """A valid heartbeat body."""
    body: dict[str, object] = {
        "node_id": "gw-1", "hostname": "host-a", "pid": 123, "address": "127.0.0.1:8080",
        "config_version": 1, "started_at": time.time() - 5, "status": "ok",
        "details": {"connections": 3},
    }
    body.update(overrides)
    return body


async def test_a_missing_or_wrong_node_secret_gets_401(
    dashboard: TestDashboard, client: httpx.AsyncClient
) -> None:
    refused = [
        {}, {"Authorization": "Bearer wrong-secret"}, {"Authorization": NODE_SECRET},
        {"Authorization": f"Bearer {NODE_SECRET}x"}, {"Authorization": f"Basic {NODE_SECRET}"},
    ]
    for method, path in [
        ("GET", "/system/config"), ("POST", "/system/heartbeat"), ("POST", "/system/analytics")
    ]:
        for headers in refused:
            response = await client.request(method, dashboard.url + path, headers=headers, json=[])
            assert response.status_code == 401, (path, headers)
            assert response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert SIGNATURE_HEADER not in response.headers
    assert await dashboard.nodes.list() == []
    assert dashboard.sink.records == []


async def test_the_snapshot_is_signed_over_its_exact_bytes(
    dashboard: TestDashboard, client: httpx.AsyncClient
) -> None:
    response = await client.get(f"{dashboard.url}/system/config", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    assert verify_snapshot(response.content, response.headers[SIGNATURE_HEADER], NODE_SECRET)
    assert not verify_snapshot(response.content + b" ", response.headers[SIGNATURE_HEADER], NODE_SECRET)
    document = json.loads(response.content)
    assert document["version"] == 1
    assert document["config"]["version"] == "1"
    assert document["config"]["apis"][0]["listen_path"] == "/echo/"


async def test_long_poll_answers_304_after_the_wait_when_nothing_changed(
    dashboard: TestDashboard, client: httpx.AsyncClient
) -> None:
    started = time.monotonic()
    response = await client.get(
        f"{dashboard.url}/system/config", params={"after": 1, "wait": 0.3}, headers=AUTH
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 304
    assert response.headers["etag"] == '"1"'
    assert 0.3 <= elapsed < 2.0


async def test_long_poll_answers_at_once_when_a_newer_version_exists(
    dashboard: TestDashboard, client: httpx.AsyncClient
) -> None:
    started = time.monotonic()
    response = await client.get(
        f"{dashboard.url}/system/config", params={"after": 0, "wait": 10}, headers=AUTH
    )
    assert response.status_code == 200
    assert time.monotonic() - started < 1.0


async def test_long_poll_answers_as_soon_as_a_change_is_published(
    dashboard: TestDashboard, client: httpx.AsyncClient
) -> None:
    async def publish_soon() -> None:
        await asyncio.sleep(0.1)
        await dashboard.publish({"apis": []})

    started = time.monotonic()
    task = asyncio.create_task(publish_soon())
    response = await client.get(
        f"{dashboard.url}/system/config", params={"after": 1, "wait": 10}, headers=AUTH
    )
    await task
    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert time.monotonic() - started < 1.0


async def test_bad_long_poll_parameters_get_400(
    dashboard: TestDashboard, client: httpx.AsyncClient
) -> None:
    for params in [
        {"after": "x"}, {"after": "-1"}, {"after": 1, "wait": 31}, {"after": 1, "wait": "nan"},
        {"after": 1, "wait": "soon"},
    ]:
        response = await client.get(f"{dashboard.url}/system/config", params=params, headers=AUTH)
        assert response.status_code == 400, params
        assert response.json()["error"] == "invalid_parameter"


async def test_a_failing_snapshot_source_gets_503_not_500(client: httpx.AsyncClient) -> None:
    class Broken(MemorySnapshotSource):
        async def snapshot(self) -> ConfigSnapshot:
            raise ConnectionError("database down")

    board = TestDashboard(source=Broken({}), collect_analytics=False)
    await board.start()
    try:
        response = await client.get(f"{board.url}/system/config", headers=AUTH)
        assert response.status_code == 503
        assert response.json()["error"] == "unavailable"
        # Without an analytics sink the endpoint does not exist.
        response = await client.post(f"{board.url}/system/analytics", headers=AUTH, json=[])
        assert response.status_code == 404
    finally:
        await board.stop()


async def test_a_heartbeat_is_recorded_in_the_registry(
    dashboard: TestDashboard, client: httpx.AsyncClient
) -> None:
    before = time.time()
    response = await client.post(f"{dashboard.url}/system/heartbeat", headers=AUTH, json=heartbeat())
    assert response.status_code == 204
    [node] = await dashboard.nodes.list()
    assert (node.node_id, node.hostname, node.pid, node.config_version) == ("gw-1", "host-a", 123, 1)
    assert node.status == "ok"
    assert node.details == {"connections": 3}
    assert node.last_seen >= before
    await client.post(
        f"{dashboard.url}/system/heartbeat", headers=AUTH, json=heartbeat(config_version=2)
    )
    [node] = await dashboard.nodes.list()
    assert node.config_version == 2


async def test_an_invalid_heartbeat_gets_422(
    dashboard: TestDashboard, client: httpx.AsyncClient
) -> None:
    for body in [
        heartbeat(node_id="bad id"), heartbeat(pid=-1), heartbeat(status="great"),
        {"node_id": "gw-1"}, [1, 2],
    ]:
        response = await client.post(f"{dashboard.url}/system/heartbeat", headers=AUTH, json=body)
        assert response.status_code == 422, body
        assert response.json()["error"] == "invalid_heartbeat"
    assert await dashboard.nodes.list() == []


async def test_malformed_json_gets_400(dashboard: TestDashboard, client: httpx.AsyncClient) -> None:
    for path in ("/system/heartbeat", "/system/analytics"):
        response = await client.post(
            dashboard.url + path, content=b"{not json",
            headers={**AUTH, "X-Propylon-Node-Id": "gw-1"},
        )
        assert response.status_code == 400, path
        assert response.json()["error"] == "invalid_json"


async def test_analytics_records_reach_the_sink(
    dashboard: TestDashboard, client: httpx.AsyncClient
) -> None:
    records = [{"timestamp": "2026-01-01T00:00:00Z", "status": 200, "path": f"/p{i}"} for i in range(3)]
    response = await client.post(
        f"{dashboard.url}/system/analytics", json=records,
        headers={**AUTH, "X-Propylon-Node-Id": "gw-1"},
    )
    assert response.status_code == 202
    assert dashboard.sink.records == [("gw-1", r) for r in records]


async def test_analytics_need_a_node_id_and_a_list_of_objects(
    dashboard: TestDashboard, client: httpx.AsyncClient
) -> None:
    url = f"{dashboard.url}/system/analytics"
    response = await client.post(url, json=[{}], headers=AUTH)
    assert response.status_code == 400
    response = await client.post(url, json={"a": 1}, headers={**AUTH, "X-Propylon-Node-Id": "gw-1"})
    assert response.status_code == 422
    response = await client.post(url, json=[1], headers={**AUTH, "X-Propylon-Node-Id": "gw-1"})
    assert response.status_code == 422
    assert dashboard.sink.records == []


async def test_an_oversized_analytics_batch_gets_413(
    dashboard: TestDashboard, client: httpx.AsyncClient
) -> None:
    url = f"{dashboard.url}/system/analytics"
    headers = {**AUTH, "X-Propylon-Node-Id": "gw-1"}
    big = b"[" + b",".join([b'{"p":"' + b"x" * 1000 + b'"}'] * 9000) + b"]"
    response = await client.post(url, content=big, headers=headers)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"

    async def chunks() -> object:  # no Content-Length: the cap applies while streaming
        for _ in range(9):
            yield b"x" * (1024 * 1024)

    response = await client.post(url, content=chunks(), headers=headers)  # type: ignore[arg-type]
    assert response.status_code == 413
    assert dashboard.sink.records == []


def test_a_short_node_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        sync_router(source=MemorySnapshotSource({}), notifier=InProcessNotifier(),
                    nodes=MemoryNodeRegistry(), analytics=None, node_secret="short")
