"""``GET /api/v1/audit``: newest first, filters, id-cursor pagination, limits and auth."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from propylon.dashboard import changes
from propylon.dashboard.changes import Actor, now
from tests.dashboard.conftest import Dashboard


async def _write(dashboard: Dashboard, actor: Actor, action: str, kind: str, ident: str,
                 *, versioned: bool = False) -> None:
    async with dashboard.context.database.transaction() as session:
        await changes.record_change(session, actor, action, kind, ident, {"n": ident},
                                    versioned=versioned)


@pytest.fixture
async def seeded(dashboard: Dashboard) -> Dashboard:
    """Seven audit entries by two actors about two resource types."""
    alice, ci = Actor("admin", "alice", "1"), Actor("token", "ci", "2")
    await _write(dashboard, alice, "create", "api", "orders", versioned=True)
    await _write(dashboard, alice, "update", "api", "orders", versioned=True)
    await _write(dashboard, ci, "create", "api", "billing", versioned=True)
    await _write(dashboard, ci, "create", "policy", "gold", versioned=True)
    await _write(dashboard, alice, "delete", "api", "orders", versioned=True)
    await _write(dashboard, ci, "create", "api_token", "t1")
    await _write(dashboard, alice, "update", "policy", "gold", versioned=True)
    return dashboard


async def test_newest_first_with_every_field(seeded: Dashboard, admin: httpx.AsyncClient) -> None:
    response = await admin.get("/api/v1/audit")
    assert response.status_code == 200
    page = response.json()
    entries = page["entries"]
    assert page["next_before_id"] is None
    assert [(e["action"], e["resource_id"]) for e in entries] == [
        ("update", "gold"), ("create", "t1"), ("delete", "orders"), ("create", "gold"),
        ("create", "billing"), ("update", "orders"), ("create", "orders"),
    ]
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True)
    newest = entries[0]
    assert newest["actor"] == "admin:alice"
    assert newest["resource_type"] == "policy"
    assert newest["config_version"] == 6
    assert newest["details"] == {"n": "gold"}
    assert entries[1]["config_version"] is None  # token creation does not touch gateways


async def test_filters_combine(seeded: Dashboard, admin: httpx.AsyncClient) -> None:
    async def ids_for(**params: str) -> list[str]:
        response = await admin.get("/api/v1/audit", params=params)
        assert response.status_code == 200, response.text
        return [f"{e['action']}:{e['resource_id']}" for e in response.json()["entries"]]

    assert await ids_for(resource_type="api", resource_id="orders") == [
        "delete:orders", "update:orders", "create:orders",
    ]
    assert await ids_for(actor="token:ci") == ["create:t1", "create:gold", "create:billing"]
    assert await ids_for(actor="token:ci", resource_type="api") == ["create:billing"]
    assert await ids_for(resource_type="nothing") == []
    future = (now() + timedelta(hours=1)).isoformat()
    past = (now() - timedelta(hours=1)).isoformat()
    assert await ids_for(since=future) == []
    assert len(await ids_for(since=past)) == 7
    # A time without a zone is taken as UTC.
    assert len(await ids_for(since=(now() - timedelta(hours=1)).replace(tzinfo=None).isoformat())) == 7


async def test_pagination_with_before_id_visits_every_entry_once(
    seeded: Dashboard, admin: httpx.AsyncClient
) -> None:
    seen: list[int] = []
    params: dict[str, int] = {"limit": 3}
    pages = 0
    while True:
        page = (await admin.get("/api/v1/audit", params=params)).json()
        pages += 1
        seen += [e["id"] for e in page["entries"]]
        if page["next_before_id"] is None:
            break
        params["before_id"] = page["next_before_id"]
    assert pages == 3
    assert len(seen) == 7
    assert seen == sorted(set(seen), reverse=True)

    # A filter and a cursor together.
    first = (await admin.get("/api/v1/audit", params={"resource_type": "api", "limit": 2})).json()
    assert len(first["entries"]) == 2
    rest = (await admin.get("/api/v1/audit", params={
        "resource_type": "api", "limit": 2, "before_id": first["next_before_id"],
    })).json()
    assert [e["resource_id"] for e in rest["entries"]] == ["orders", "orders"]
    assert rest["next_before_id"] is None


async def test_invalid_parameters_are_all_reported(admin: httpx.AsyncClient) -> None:
    response = await admin.get("/api/v1/audit", params={"limit": 501, "before_id": 0, "since": "yesterday"})
    assert response.status_code == 422
    assert {p["location"] for p in response.json()["problems"]} == {
        "query.limit", "query.before_id", "query.since",
    }
    assert (await admin.get("/api/v1/audit", params={"limit": 0})).status_code == 422
    assert (await admin.get("/api/v1/audit", params={"actor": "a\x00b"})).status_code == 422
    assert (await admin.get("/api/v1/audit", params={"limit": 500})).status_code == 200


async def test_audit_needs_an_admin(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/api/v1/audit")
    assert response.status_code == 401
    response = await anonymous.get("/api/v1/audit", headers={"Authorization": "Bearer ppl_forged"})
    assert response.status_code == 401


async def test_writes_through_the_api_show_up_with_their_actor(admin: httpx.AsyncClient) -> None:
    token = (await admin.post("/api/v1/tokens", json={"name": "audited"})).json()
    entries = (await admin.get("/api/v1/audit", params={"resource_type": "api_token"})).json()["entries"]
    assert len(entries) == 1
    assert entries[0]["resource_id"] == token["id"]
    assert entries[0]["actor"] == "token:tests"
    assert token["token"] not in str(entries[0])
