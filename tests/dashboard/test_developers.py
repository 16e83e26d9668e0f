"""Developers in the admin API: "Add developer", list, inspect, edit, suspend, delete."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from propylon.dashboard.snapshot import SqlSnapshotSource
from propylon.storage.sql.schema import AuditEntryRow, ClientTombstoneRow, DeveloperRow
from propylon.web.credentials import verify_password
from tests.dashboard.conftest import Dashboard
from tests.support.client_records import add_client, add_identity_provider
from tests.support.registration_server import RegistrationServer

BASE = "/api/v1/developers"
PASSWORD = "a long enough password"


@pytest.fixture
def idp() -> Iterator[RegistrationServer]:
    with RegistrationServer() as server:
        yield server


async def _create(admin: httpx.AsyncClient, email: str, **fields: object) -> dict[str, object]:
    response = await admin.post(BASE, json={"email": email, "name": fields.pop("name", "Dev"), **fields})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def _stored(dashboard: Dashboard, developer_id: str) -> DeveloperRow | None:
    async with dashboard.context.database.sessions() as session:
        return await session.get(DeveloperRow, developer_id)


async def _revoked(dashboard: Dashboard) -> list[str]:
    config = (await SqlSnapshotSource(dashboard.context.database).snapshot()).config
    revoked: list[str] = config["revoked_clients"]
    return revoked


async def test_add_developer_normalises_and_hides_the_password(
    dashboard: Dashboard, admin: httpx.AsyncClient
) -> None:
    body = await _create(admin, "  Alice.Smith@Example.COM ", name=" Alice ", password=PASSWORD)
    assert (body["email"], body["name"], body["status"], body["has_password"]) == (
        "alice.smith@example.com", "Alice", "active", True)
    assert "password" not in body
    assert "password_hash" not in body
    stored = await _stored(dashboard, str(body["id"]))
    assert stored is not None
    assert stored.password_hash is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert verify_password(stored.password_hash, PASSWORD)
    async with dashboard.context.database.sessions() as session:
        audit = (await session.scalars(
            select(AuditEntryRow).where(AuditEntryRow.resource_id == body["id"]))).all()
    assert [(a.action, a.resource_type) for a in audit] == [("create", "developer")]
    assert PASSWORD not in str(audit[0].details)
    assert stored.password_hash not in str(audit[0].details)

    shown = await admin.get(f"{BASE}/{body['id']}")
    assert stored.password_hash not in shown.text

    no_password = await _create(admin, "bob@example.com", status="pending")
    assert (no_password["has_password"], no_password["status"]) == (False, "pending")


async def test_every_problem_is_reported_at_once(admin: httpx.AsyncClient) -> None:
    response = await admin.post(BASE, json={"email": "not-an-email", "name": "  ", "password": "short",
                                            "status": "retired", "admin": True})
    assert response.status_code == 422
    problems = {p["location"]: p["message"] for p in response.json()["problems"]}
    assert set(problems) == {"email", "name", "password", "status", "admin"}
    assert "12" in problems["password"]
    assert "short" not in response.text  # the rejected password is not echoed
    assert (await admin.get(BASE)).json()["total"] == 0
    # Control characters (PostgreSQL cannot even compare a string holding NUL) are refused up front.
    nul = await admin.post(BASE, json={"email": "a@example.com", "name": "A\x00B"})
    assert [p["location"] for p in nul.json()["problems"]] == ["name"]
    assert (await admin.get(f"{BASE}/a%00b")).status_code == 422
    assert (await admin.get(BASE, params={"email": "\x00"})).status_code == 422
    for email in ["a@b", "a b@example.com", "@example.com", "a@-x.com", "x" * 65 + "@example.com"]:
        refused = await admin.post(BASE, json={"email": email, "name": "X"})
        assert refused.status_code == 422, email


async def test_duplicate_email_is_a_conflict(admin: httpx.AsyncClient) -> None:
    await _create(admin, "alice@example.com")
    response = await admin.post(BASE, json={"email": "ALICE@example.com", "name": "Other"})
    assert response.status_code == 409
    assert response.json()["problems"][0]["location"] == "email"
    assert (await admin.get(BASE)).json()["total"] == 1


async def test_list_filters_and_pages(admin: httpx.AsyncClient) -> None:
    for email, status in [("carol@shop.example", "active"), ("alice@shop.example", "pending"),
                          ("bob@bank.example", "active"), ("dan_x@bank.example", "disabled")]:
        await _create(admin, email, status=status)

    async def emails(**params: str | int) -> list[str]:
        response = await admin.get(BASE, params=params)
        assert response.status_code == 200, response.text
        return [item["email"] for item in response.json()["items"]]

    assert await emails() == ["alice@shop.example", "bob@bank.example", "carol@shop.example",
                              "dan_x@bank.example"]
    assert await emails(status="active") == ["bob@bank.example", "carol@shop.example"]
    assert await emails(email="SHOP") == ["alice@shop.example", "carol@shop.example"]
    assert await emails(email="_") == ["dan_x@bank.example"]  # a literal underscore, not a wildcard
    assert await emails(email="bank", status="disabled") == ["dan_x@bank.example"]
    page = (await admin.get(BASE, params={"limit": 1, "offset": 2})).json()
    assert ([i["email"] for i in page["items"]], page["total"]) == (["carol@shop.example"], 4)
    bad = await admin.get(BASE, params={"limit": 501, "status": "gone"})
    assert {p["location"] for p in bad.json()["problems"]} == {"query.limit", "query.status"}


async def test_inspect_lists_the_developers_clients(dashboard: Dashboard, admin: httpx.AsyncClient) -> None:
    developer = await _create(admin, "alice@example.com")
    idp_id = await add_identity_provider(dashboard.context.database)
    record = await add_client(dashboard.context.database, dashboard.context.secrets,
                              developer_id=str(developer["id"]), identity_provider_id=idp_id,
                              client_id="cid-1", name="shop", catalogue_entry_ids=["cat"])
    body = (await admin.get(f"{BASE}/{developer['id']}")).json()
    assert body["clients"] == [{"id": record, "client_id": "cid-1", "name": "shop", "status": "active",
                                "revoked": False, "identity_provider_id": idp_id,
                                "catalogue_entry_ids": ["cat"]}]
    assert (await admin.get(f"{BASE}/nope")).status_code == 404


async def test_patch_changes_name_and_status(admin: httpx.AsyncClient) -> None:
    developer = await _create(admin, "alice@example.com")
    path = f"{BASE}/{developer['id']}"
    response = await admin.patch(path, json={"name": "Alice A."})
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["status"]) == ("Alice A.", "active")
    response = await admin.patch(path, json={"status": "pending"})
    assert (response.json()["name"], response.json()["status"]) == ("Alice A.", "pending")
    assert (await admin.get(path)).json()["status"] == "pending"

    assert (await admin.patch(path, json={})).status_code == 422
    bad = await admin.patch(path, json={"status": "gone", "name": "", "email": "x@y.z"})
    assert {p["location"] for p in bad.json()["problems"]} == {"status", "name", "email"}
    assert (await admin.patch(f"{BASE}/nope", json={"name": "X"})).status_code == 404


async def test_suspending_a_developer_revokes_their_clients_until_reactivated(
    dashboard: Dashboard, admin: httpx.AsyncClient
) -> None:
    developer = await _create(admin, "alice@example.com")
    idp_id = await add_identity_provider(dashboard.context.database)
    for client_id in ("cid-1", "cid-2"):
        await add_client(dashboard.context.database, dashboard.context.secrets,
                         developer_id=str(developer["id"]), identity_provider_id=idp_id, client_id=client_id)
    path = f"{BASE}/{developer['id']}"
    assert await _revoked(dashboard) == []

    await admin.patch(path, json={"status": "disabled"})
    assert await _revoked(dashboard) == ["cid-1", "cid-2"]
    assert all(c["revoked"] for c in (await admin.get(path)).json()["clients"])

    # A client deleted while its developer is suspended stays revoked after reactivation.
    first = (await admin.get(path)).json()["clients"][0]["id"]
    assert (await admin.delete(f"/api/v1/oauth-clients/{first}")).status_code == 200
    await admin.patch(path, json={"status": "active"})
    assert await _revoked(dashboard) == ["cid-1"]
    async with dashboard.context.database.sessions() as session:
        reasons = {r.client_id: r.reason for r in (await session.scalars(select(ClientTombstoneRow))).all()}
    assert reasons == {"cid-1": "deleted"}


async def test_delete_developer(
    dashboard: Dashboard, admin: httpx.AsyncClient, idp: RegistrationServer
) -> None:
    lonely = await _create(admin, "lonely@example.com")
    assert (await admin.delete(f"{BASE}/{lonely['id']}")).status_code == 204
    assert (await admin.get(f"{BASE}/{lonely['id']}")).status_code == 404
    assert (await admin.delete(f"{BASE}/{lonely['id']}")).status_code == 404

    developer = await _create(admin, "alice@example.com")
    idp_id = await add_identity_provider(dashboard.context.database, issuer=idp.base_url)
    registered = [idp.add_client(), idp.add_client()]
    for client in registered:
        await add_client(dashboard.context.database, dashboard.context.secrets,
                         developer_id=str(developer["id"]), identity_provider_id=idp_id, registered=client)
    path = f"{BASE}/{developer['id']}"

    refused = await admin.delete(path)
    assert refused.status_code == 409
    assert len(refused.json()["problems"]) == 2
    assert all(idp.has_client(c.client_id) for c in registered)
    assert await _revoked(dashboard) == []

    idp.stop()
    pending = await admin.delete(path, params={"delete_clients": "true"})
    assert pending.status_code == 202, pending.text
    assert [c["status"] for c in pending.json()["clients"]] == ["deleting", "deleting"]
    assert await _revoked(dashboard) == sorted(c.client_id for c in registered)
    assert (await admin.get(path)).json()["status"] == "disabled"

    idp.start()
    done = await admin.delete(path, params={"delete_clients": "true"})
    assert done.status_code == 204, done.text
    assert (await admin.get(path)).status_code == 404
    assert not any(idp.has_client(c.client_id) for c in registered)
    deletes = [r for r in idp.requests if r.method == "DELETE"]
    assert {r.authorization for r in deletes} == {f"Bearer {c.access_token}" for c in registered}
    assert await _revoked(dashboard) == sorted(c.client_id for c in registered)


async def test_auth_is_required(anonymous: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    developer = await _create(admin, "alice@example.com")
    path = f"{BASE}/{developer['id']}"
    for method, url, body in [("POST", BASE, {"email": "x@example.com", "name": "X"}), ("GET", BASE, None),
                              ("GET", path, None), ("PATCH", path, {"name": "Y"}), ("DELETE", path, None)]:
        for headers in ({}, {"Authorization": "Bearer ppl_nope"}, {"Authorization": "Basic YWRtaW46bm8="}):
            response = await anonymous.request(method, url, json=body, headers=headers)
            assert response.status_code == 401, (method, url, headers)
    assert (await admin.get(BASE)).json()["total"] == 1
    assert (await admin.get(path)).json()["name"] == "Dev"
