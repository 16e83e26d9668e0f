"""``/api/v1/apis``: CRUD, field and cross-reference validation, conflicts, audit and versions."""

from __future__ import annotations

import httpx
import pytest

from propylon.storage.sql.database import Database
from tests.dashboard.documents import api_doc, audit, created, idp_doc, locations, policy_doc, seed, version

BASE = "/api/v1/apis"


async def test_create_read_list_replace_delete(admin: httpx.AsyncClient, database: Database) -> None:
    await created(admin, "/api/v1/identity-providers", idp_doc())
    start = await version(database)
    body = await created(admin, BASE, api_doc("orders"))
    assert body["listen_path"] == "/orders/"
    assert body["auth"]["identity_provider"] == "main"
    assert body["created_at"] == body["updated_at"]
    await created(admin, BASE, api_doc("billing"))
    assert await version(database) == start + 2

    listed = (await admin.get(BASE)).json()
    assert [api["id"] for api in listed] == ["billing", "orders"]
    assert (await admin.get(f"{BASE}/orders")).json() == body

    changed = api_doc("orders", listen_path="/v2/orders/", upstream="https://orders.internal/api")
    del changed["id"]  # the id comes from the path
    response = await admin.put(f"{BASE}/orders", json=changed)
    assert response.status_code == 200, response.text
    assert response.json()["listen_path"] == "/v2/orders/"
    assert response.json()["created_at"] == body["created_at"]
    assert (await admin.get(f"{BASE}/orders")).json()["upstream"] == "https://orders.internal/api"
    # The old listen path is free again.
    await created(admin, BASE, api_doc("orders-v1", listen_path="/orders/"))

    assert (await admin.delete(f"{BASE}/billing")).status_code == 204
    assert (await admin.get(f"{BASE}/billing")).status_code == 404
    assert await version(database) == start + 5
    actions = [(e.action, e.resource_type, e.resource_id, e.actor) for e in await audit(database)][-5:]
    assert actions == [
        ("create", "apis", "orders", "token:tests"), ("create", "apis", "billing", "token:tests"),
        ("update", "apis", "orders", "token:tests"), ("create", "apis", "orders-v1", "token:tests"),
        ("delete", "apis", "billing", "token:tests"),
    ]


async def test_field_problems_are_reported_together(admin: httpx.AsyncClient) -> None:
    document = api_doc("bad id!", listen_path="orders", upstream="ftp://x", upstream_timeout=-1)
    document["surprise"] = 1
    response = await admin.post(BASE, json=document)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid"
    assert {"id", "listen_path", "upstream", "upstream_timeout", "surprise"} <= locations(response)


async def test_unknown_references_are_reported_together(admin: httpx.AsyncClient, database: Database) -> None:
    start = await version(database)
    document = api_doc("orders", idp="nowhere", policies=("ghost",))
    document["auth"]["scope_policies"] = {"read": "phantom"}
    response = await admin.post(BASE, json=document)
    assert response.status_code == 422, response.text
    assert locations(response) == {
        "auth.identity_provider", "auth.default_policies", "auth.scope_policies.read"
    }
    assert "unknown identity provider 'nowhere'" in response.text
    # Nothing was written, not even an audit entry.
    assert (await admin.get(f"{BASE}/orders")).status_code == 404
    assert await version(database) == start
    assert all(entry.resource_type != "apis" for entry in await audit(database))


@pytest.mark.parametrize("listen_path", ["/orders/", "/orders"])
async def test_listen_path_taken_by_another_api(admin: httpx.AsyncClient, listen_path: str) -> None:
    await seed(admin)
    response = await admin.post(BASE, json=api_doc("copy", listen_path=listen_path))
    assert response.status_code == 422
    assert locations(response) == {"listen_path"}
    assert "'orders'" in response.text


async def test_duplicate_id_is_a_conflict(admin: httpx.AsyncClient) -> None:
    await seed(admin)
    response = await admin.post(BASE, json=api_doc("orders", listen_path="/other/"))
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"


async def test_put_with_another_id_in_the_body_is_refused(admin: httpx.AsyncClient) -> None:
    await seed(admin)
    response = await admin.put(f"{BASE}/orders", json=api_doc("billing"))
    assert response.status_code == 422
    assert locations(response) == {"id"}
    same = await admin.put(f"{BASE}/orders", json=api_doc("orders", name="Same id is fine"))
    assert same.status_code == 200
    assert same.json()["name"] == "Same id is fine"


async def test_missing_api_is_404(admin: httpx.AsyncClient) -> None:
    await created(admin, "/api/v1/identity-providers", idp_doc())
    for response in (
        await admin.get(f"{BASE}/nope"),
        await admin.put(f"{BASE}/nope", json=api_doc("nope")),
        await admin.delete(f"{BASE}/nope"),
    ):
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"


async def test_deleting_an_api_a_policy_grants_is_a_conflict(admin: httpx.AsyncClient) -> None:
    await seed(admin)
    response = await admin.delete(f"{BASE}/orders")
    assert response.status_code == 409
    assert "policies/gold" in response.json()["message"]
    assert locations(response) == {"policies/gold.access_rights.orders"}
    assert (await admin.get(f"{BASE}/orders")).status_code == 200


async def test_switching_to_an_unknown_idp_is_refused(admin: httpx.AsyncClient) -> None:
    await seed(admin)
    response = await admin.put(f"{BASE}/orders", json=api_doc("orders", idp="other"))
    assert response.status_code == 422
    assert locations(response) == {"auth.identity_provider"}
    await created(admin, "/api/v1/identity-providers", idp_doc("other", "https://other.example"))
    response = await admin.put(f"{BASE}/orders", json=api_doc("orders", idp="other", policies=("gold",)))
    assert response.status_code == 200, response.text


async def test_keyless_api(admin: httpx.AsyncClient) -> None:
    await created(admin, "/api/v1/policies", policy_doc("open", apis=("*",)))
    document = {"id": "public", "listen_path": "/public/", "upstream": "http://127.0.0.1:9",
                "auth": {"type": "keyless", "policies": ["open"]}}
    body = await created(admin, BASE, document)
    assert body["auth"] == {"type": "keyless", "policies": ["open"]}


async def test_admin_credentials_are_required(anonymous: httpx.AsyncClient) -> None:
    bad = {"Authorization": "Bearer ppl_not-a-real-token"}
    for headers in ({}, bad):
        for method, path in (("GET", BASE), ("POST", BASE), ("GET", f"{BASE}/x"), ("PUT", f"{BASE}/x"),
                             ("DELETE", f"{BASE}/x")):
            json_body = api_doc("x") if method in ("POST", "PUT") else None
            response = await anonymous.request(method, path, json=json_body, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"] == "unauthorized"
