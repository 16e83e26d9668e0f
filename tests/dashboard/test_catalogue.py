"""``/api/v1/catalogue``: entries publishing APIs with a policy and DCR options."""

from __future__ import annotations

import httpx

from propylon.storage.sql.database import Database
from tests.dashboard.documents import (
    api_doc,
    audit,
    created,
    entry_doc,
    idp_doc,
    locations,
    policy_doc,
    seed,
    version,
)

BASE = "/api/v1/catalogue"


async def test_create_read_list_replace_delete(admin: httpx.AsyncClient, database: Database) -> None:
    await seed(admin)
    start = await version(database)
    body = await created(admin, BASE, entry_doc(
        description="Orders for partners", documentation="# Orders\n\nCall `GET /orders/`.",
        grant_types=["client_credentials"], response_types=[], scope="orders:read orders:write",
        openapi_url="https://docs.example.com/orders.json",
    ))
    assert body["identity_provider_id"] is None
    assert body["effective_identity_provider_id"] == "main"
    assert body["published"] is True
    assert body["dcr_enabled"] is None  # the portal settings decide
    assert body["response_types"] == []
    assert (await admin.get(f"{BASE}/orders-entry")).json() == body
    assert [e["id"] for e in (await admin.get(BASE)).json()] == ["orders-entry"]

    replaced = await admin.put(f"{BASE}/orders-entry", json={
        "name": "Orders (beta)", "api_ids": ["orders"], "policy_id": "gold",
        "identity_provider_id": "main", "published": False, "dcr_enabled": True,
        "redirect_uris_required": True,
    })
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["published"] is False
    assert replaced.json()["documentation"] is None
    assert replaced.json()["effective_identity_provider_id"] == "main"

    assert (await admin.delete(f"{BASE}/orders-entry")).status_code == 204
    assert (await admin.get(f"{BASE}/orders-entry")).status_code == 404
    # Every configuration write is audited with the version it created.
    assert await version(database) == start + 3
    entries = [e for e in await audit(database) if e.resource_type == "catalogue"]
    assert [(e.action, e.config_version) for e in entries] == [
        ("create", start + 1), ("update", start + 2), ("delete", start + 3)
    ]


async def test_field_problems_are_reported_together(admin: httpx.AsyncClient) -> None:
    response = await admin.post(BASE, json={
        "id": "x", "name": "", "api_ids": [], "policy_id": "gold", "grant_types": ["password"],
        "token_endpoint_auth_method": "magic", "openapi_url": "file:///etc/passwd", "scope": "a  b",
    })
    assert response.status_code == 422
    assert {"name", "api_ids", "grant_types.0", "token_endpoint_auth_method", "openapi_url",
            "scope"} <= locations(response)


async def test_unknown_references_are_reported_together(admin: httpx.AsyncClient) -> None:
    await seed(admin)
    response = await admin.post(BASE, json=entry_doc(
        apis=("orders", "ghost", "orders"), policy="none", identity_provider_id="nowhere"
    ))
    assert response.status_code == 422
    assert locations(response) == {"api_ids.1", "api_ids.2", "policy_id", "identity_provider_id"}
    assert (await admin.get(f"{BASE}/orders-entry")).status_code == 404


async def test_identity_provider_must_agree_with_the_apis(admin: httpx.AsyncClient) -> None:
    await seed(admin)
    await created(admin, "/api/v1/identity-providers", idp_doc("other", "https://other.example"))
    await created(admin, "/api/v1/apis", api_doc("billing", idp="other"))
    await created(admin, "/api/v1/policies", policy_doc("both", apis=("orders", "billing")))

    mismatch = await admin.post(BASE, json=entry_doc(identity_provider_id="other"))
    assert mismatch.status_code == 422
    assert locations(mismatch) == {"identity_provider_id"}

    mixed = await admin.post(BASE, json=entry_doc(apis=("orders", "billing"), policy="both"))
    assert mixed.status_code == 422
    assert locations(mixed) == {"api_ids"}

    no_access = await admin.post(BASE, json=entry_doc(apis=("billing",), policy="gold"))
    assert no_access.status_code == 422
    assert "grants no access to API 'billing'" in no_access.text


async def test_pinned_identity_provider_blocks_moving_the_api(admin: httpx.AsyncClient) -> None:
    await seed(admin)
    await created(admin, "/api/v1/identity-providers", idp_doc("other", "https://other.example"))
    await created(admin, BASE, entry_doc(identity_provider_id="main"))
    moved = await admin.put("/api/v1/apis/orders", json=api_doc("orders", idp="other"))
    assert moved.status_code == 409
    assert locations(moved) == {"catalogue/orders-entry.identity_provider_id"}
    # Unpinned, the entry follows the API.
    assert (await admin.put(f"{BASE}/orders-entry", json=entry_doc())).status_code == 200
    assert (await admin.put("/api/v1/apis/orders", json=api_doc("orders", idp="other"))).status_code == 200
    assert (await admin.get(f"{BASE}/orders-entry")).json()["effective_identity_provider_id"] == "other"


async def test_deleting_what_an_entry_uses_is_a_conflict(admin: httpx.AsyncClient) -> None:
    await seed(admin)
    await created(admin, BASE, entry_doc(identity_provider_id="main"))
    for path in ("/api/v1/policies/gold", "/api/v1/identity-providers/main"):
        response = await admin.delete(path)
        assert response.status_code == 409
        assert "catalogue/orders-entry" in response.json()["message"]


async def test_duplicate_missing_and_auth(admin: httpx.AsyncClient, anonymous: httpx.AsyncClient) -> None:
    await seed(admin)
    await created(admin, BASE, entry_doc())
    assert (await admin.post(BASE, json=entry_doc())).status_code == 409
    assert (await admin.get(f"{BASE}/none")).status_code == 404
    assert (await admin.put(f"{BASE}/none", json=entry_doc("none"))).status_code == 404
    assert (await admin.delete(f"{BASE}/none")).status_code == 404
    for method, path in (("GET", BASE), ("POST", BASE), ("GET", f"{BASE}/orders-entry"),
                         ("PUT", f"{BASE}/orders-entry"), ("DELETE", f"{BASE}/orders-entry")):
        body = entry_doc() if method in ("POST", "PUT") else None
        response = await anonymous.request(method, path, json=body)
        assert response.status_code == 401
