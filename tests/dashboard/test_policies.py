"""``/api/v1/policies``: CRUD, validation, references from APIs, catalogue entries and clients."""

from __future__ import annotations

import httpx

from propylon.storage.sql.database import Database
from tests.dashboard.documents import (
    api_doc,
    audit,
    created,
    entry_doc,
    insert_client,
    locations,
    policy_doc,
    seed,
    version,
)

BASE = "/api/v1/policies"


async def test_create_read_list_replace_delete(admin: httpx.AsyncClient, database: Database) -> None:
    await seed(admin)
    start = await version(database)
    body = await created(admin, BASE, policy_doc(
        "silver", description="For partners", key_expires_in_seconds=86400,
        access_rights={"orders": {"methods": ["get"], "paths": ["/items/*"]}},
    ))
    assert body["key_expires_in_seconds"] == 86400
    assert body["description"] == "For partners"
    assert body["access_rights"]["orders"] == {"methods": ["GET"], "paths": ["/items/*"]}
    assert [p["id"] for p in (await admin.get(BASE)).json()] == ["gold", "silver"]
    assert (await admin.get(f"{BASE}/silver")).json() == body

    replaced = await admin.put(f"{BASE}/silver", json={"access_rights": {"*": {}}})
    assert replaced.status_code == 200, replaced.text
    # PUT replaces the whole document: what was left out is back to its default.
    assert replaced.json()["rate"] is None
    assert replaced.json()["key_expires_in_seconds"] is None
    assert replaced.json()["description"] == ""

    assert (await admin.delete(f"{BASE}/silver")).status_code == 204
    assert (await admin.get(f"{BASE}/silver")).status_code == 404
    assert await version(database) == start + 3
    assert [e.action for e in await audit(database) if e.resource_id == "silver"] == [
        "create", "update", "delete"
    ]


async def test_field_problems_are_reported_together(admin: httpx.AsyncClient) -> None:
    response = await admin.post(BASE, json={
        "id": "", "rate": {"requests": 0, "per_seconds": 1}, "quota": {"max": -1, "renewal_seconds": 0},
        "access_rights": {"orders": {"methods": ["FETCH"], "paths": ["no-slash"]}},
        "key_expires_in_seconds": -5,
    })
    assert response.status_code == 422
    assert {"id", "rate.requests", "quota.max", "quota.renewal_seconds", "key_expires_in_seconds",
            "access_rights.orders.methods", "access_rights.orders.paths"} <= locations(response)


async def test_access_rights_must_name_known_apis(admin: httpx.AsyncClient) -> None:
    await seed(admin)
    response = await admin.post(BASE, json=policy_doc("bad", apis=("orders", "ghost", "phantom")))
    assert response.status_code == 422
    assert locations(response) == {"access_rights.ghost", "access_rights.phantom"}


async def test_duplicate_and_missing(admin: httpx.AsyncClient) -> None:
    await seed(admin)
    assert (await admin.post(BASE, json=policy_doc("gold"))).status_code == 409
    assert (await admin.get(f"{BASE}/none")).status_code == 404
    assert (await admin.put(f"{BASE}/none", json=policy_doc("none"))).status_code == 404
    assert (await admin.delete(f"{BASE}/none")).status_code == 404


async def test_deleting_a_policy_still_in_use_names_every_referrer(
    admin: httpx.AsyncClient, database: Database
) -> None:
    await seed(admin)
    await created(admin, BASE, policy_doc("open", apis=("*",)))
    document = api_doc("public", policies=("gold",))
    document["auth"]["scope_policies"] = {"read": "gold"}
    await created(admin, "/api/v1/apis", document)
    await created(admin, "/api/v1/catalogue", entry_doc(policy="gold"))
    await insert_client(database, policies=("gold", "open"))
    start = await version(database)

    response = await admin.delete(f"{BASE}/gold")
    assert response.status_code == 409
    message = response.json()["message"]
    for referrer in ("apis/public", "catalogue/orders-entry", "oauth-clients/client-1"):
        assert referrer in message
    assert {"apis/public.auth.default_policies", "apis/public.auth.scope_policies.read",
            "catalogue/orders-entry.policy_id", "oauth-clients/client-1.policies"} <= locations(response)
    assert (await admin.get(f"{BASE}/gold")).status_code == 200
    assert await version(database) == start

    # A pending client (no client_id yet) is not published, so it does not pin the policy.
    assert (await admin.delete(f"{BASE}/open")).status_code == 409
    await insert_client(database, client_id=None, policies=("unused",), status="pending", record_id="r2")
    await created(admin, BASE, policy_doc("unused"))
    assert (await admin.delete(f"{BASE}/unused")).status_code == 204


async def test_narrowing_access_that_a_catalogue_entry_needs_is_a_conflict(admin: httpx.AsyncClient) -> None:
    await seed(admin)
    await created(admin, "/api/v1/catalogue", entry_doc())
    response = await admin.put(f"{BASE}/gold", json=policy_doc("gold", apis=()))
    assert response.status_code == 409
    assert locations(response) == {"catalogue/orders-entry.policy_id"}


async def test_admin_credentials_are_required(anonymous: httpx.AsyncClient) -> None:
    for method, path in (("GET", BASE), ("POST", BASE), ("GET", f"{BASE}/gold"),
                         ("PUT", f"{BASE}/gold"), ("DELETE", f"{BASE}/gold")):
        for headers in ({}, {"Authorization": "Basic YWRtaW46d3Jvbmc="}):
            json_body = policy_doc() if method in ("POST", "PUT") else None
            response = await anonymous.request(method, path, json=json_body, headers=headers)
            assert response.status_code == 401
