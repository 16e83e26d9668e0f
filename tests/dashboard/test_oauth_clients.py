"""OAuth clients in the admin API: list, inspect, RFC 7592 read and delete (tombstone first)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select

from propylon.dashboard.changes import current_version
from propylon.dashboard.snapshot import SqlSnapshotSource
from propylon.storage.sql.schema import AuditEntryRow, ClientTombstoneRow, OAuthClientRow
from tests.dashboard.conftest import Dashboard
from tests.support.client_records import add_client, add_developer, add_identity_provider
from tests.support.registration_server import RegisteredClient, RegistrationServer, SeenRequest

BASE = "/api/v1/oauth-clients"


@pytest.fixture
def idp() -> Iterator[RegistrationServer]:
    with RegistrationServer() as server:
        yield server


@dataclass
class World:
    dashboard: Dashboard
    idp: RegistrationServer
    idp_id: str
    developer_id: str

    async def client(self, registered: RegisteredClient | None = None, **kwargs: object) -> str:
        context = self.dashboard.context
        return await add_client(context.database, context.secrets, developer_id=self.developer_id,
                                identity_provider_id=self.idp_id, registered=registered,
                                **kwargs)  # type: ignore[arg-type]

    async def version(self) -> int:
        async with self.dashboard.context.database.sessions() as session:
            return await current_version(session)

    async def snapshot(self) -> dict[str, object]:
        return (await SqlSnapshotSource(self.dashboard.context.database).snapshot()).config

    async def tombstones(self) -> dict[str, str]:
        async with self.dashboard.context.database.sessions() as session:
            rows = (await session.scalars(select(ClientTombstoneRow))).all()
        return {row.client_id: row.reason for row in rows}

    async def row(self, record_id: str) -> OAuthClientRow | None:
        async with self.dashboard.context.database.sessions() as session:
            return await session.get(OAuthClientRow, record_id)


@pytest.fixture
async def world(dashboard: Dashboard, idp: RegistrationServer) -> World:
    idp_id = await add_identity_provider(dashboard.context.database, issuer=idp.base_url)
    developer_id = await add_developer(dashboard.context.database, "alice@example.com", name="Alice")
    return World(dashboard, idp, idp_id, developer_id)


async def test_list_filters_and_pages(world: World, admin: httpx.AsyncClient) -> None:
    database = world.dashboard.context.database
    other_idp = await add_identity_provider(database, "other-idp", "http://127.0.0.1:8")
    bob = await add_developer(database, "bob@example.com")
    first = await world.client(world.idp.add_client(), name="one", catalogue_entry_ids=["shop", "pay"])
    second = await world.client(world.idp.add_client(), name="two", catalogue_entry_ids=["pay"],
                                status="failed")
    third = await add_client(database, world.dashboard.context.secrets, developer_id=bob,
                             identity_provider_id=other_idp, client_id="bobs", name="three",
                             catalogue_entry_ids=["shop"])

    async def ids(**params: str | int) -> list[str]:
        response = await admin.get(BASE, params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await ids() == [first, second, third]
    assert await ids(developer_id=bob) == [third]
    assert await ids(identity_provider_id=world.idp_id) == [first, second]
    assert await ids(status="failed") == [second]
    assert await ids(catalogue_entry_id="shop") == [first, third]
    assert await ids(catalogue_entry_id="pay", developer_id=world.developer_id) == [first, second]
    assert await ids(catalogue_entry_id="sho") == []
    page = (await admin.get(BASE, params={"limit": 2, "offset": 1})).json()
    assert ([i["id"] for i in page["items"]], page["total"], page["limit"], page["offset"]) == (
        [second, third], 3, 2, 1)

    bad = await admin.get(BASE, params={"limit": 0, "offset": -1, "status": "gone"})
    assert bad.status_code == 422
    assert {p["location"] for p in bad.json()["problems"]} == {"query.limit", "query.offset", "query.status"}


async def test_inspect_shows_everything_but_secrets(world: World, admin: httpx.AsyncClient) -> None:
    registered = world.idp.add_client({"client_name": "shop"})
    record = await world.client(registered, name="shop", catalogue_entry_ids=["cat"], policy_ids=["gold"],
                                metadata={**registered.metadata, "client_secret": "s3cret-value"})
    response = await admin.get(f"{BASE}/{record}")
    assert response.status_code == 200
    body = response.json()
    assert body["client_id"] == registered.client_id
    assert body["developer"] == {"id": world.developer_id, "email": "alice@example.com",
                                 "name": "Alice", "status": "active"}
    assert body["identity_provider_id"] == world.idp_id
    assert (body["catalogue_entry_ids"], body["policy_ids"]) == (["cat"], ["gold"])
    assert body["registration_client_uri"] == registered.registration_client_uri
    assert body["has_registration_access_token"] is True
    assert body["status"] == "active"
    assert body["revoked"] is False
    assert body["metadata"]["client_name"] == "shop"
    assert "client_secret" not in body["metadata"]
    listed = (await admin.get(BASE)).text
    for text in (response.text, listed):
        assert registered.access_token not in text
        assert "s3cret-value" not in text
    row = await world.row(record)
    assert row is not None
    assert row.registration_access_token_enc is not None
    assert registered.access_token not in row.registration_access_token_enc


async def test_auth_and_not_found(
    world: World, admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    record = await world.client(world.idp.add_client())
    for method, path in [("GET", BASE), ("GET", f"{BASE}/{record}"), ("DELETE", f"{BASE}/{record}"),
                         ("POST", f"{BASE}/{record}/retry-delete"), ("GET", f"{BASE}/{record}/registration")]:
        for client, headers in [(anonymous, {}), (anonymous, {"Authorization": "Bearer ppl_wrong"})]:
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path)
            assert response.json()["error"] == "unauthorized"
        if path != BASE:
            missing = await admin.request(method, path.replace(record, "nope"))
            assert missing.status_code == 404, (method, path)
            assert missing.json()["error"] == "not_found"
    for method in ("GET", "DELETE"):
        assert (await admin.request(method, f"{BASE}/a%00b")).status_code == 422
    assert (await admin.get(BASE, params={"developer_id": "\x00"})).status_code == 422
    assert (await world.row(record)) is not None
    assert world.idp.requests == []


async def test_delete_tombstones_first_then_deletes_at_the_idp(
    world: World, admin: httpx.AsyncClient
) -> None:
    registered = world.idp.add_client()
    record = await world.client(registered)
    before = await world.snapshot()
    assert [c["client_id"] for c in before["clients"]] == [registered.client_id]  # type: ignore[attr-defined]
    version = await world.version()

    response = await admin.delete(f"{BASE}/{record}")

    assert response.status_code == 200, response.text
    assert response.json() | {"message": ""} == {
        "id": record, "client_id": registered.client_id, "status": "deleted", "idp": "deleted",
        "idp_error": None, "message": ""}
    assert world.idp.requests == [SeenRequest("DELETE", f"/register/{registered.client_id}",
                                              f"Bearer {registered.access_token}")]
    assert not world.idp.has_client(registered.client_id)
    assert await world.tombstones() == {registered.client_id: "deleted"}
    after = await world.snapshot()
    assert after["revoked_clients"] == [registered.client_id]
    assert after["clients"] == []
    assert await world.version() > version
    assert (await admin.get(f"{BASE}/{record}")).status_code == 404
    async with world.dashboard.context.database.sessions() as session:
        audit = (await session.scalars(select(AuditEntryRow).where(AuditEntryRow.resource_id == record)
                                       .order_by(AuditEntryRow.id))).all()
    assert [(a.action, a.actor) for a in audit] == [
        ("delete", "token:tests"), ("delete_completed", "token:tests")]
    assert audit[0].config_version is not None
    assert registered.access_token not in str([a.details for a in audit])


async def test_idp_down_answers_202_and_a_retry_finishes(world: World, admin: httpx.AsyncClient) -> None:
    registered = world.idp.add_client()
    record = await world.client(registered)
    world.idp.stop()

    response = await admin.delete(f"{BASE}/{record}")

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["status"], body["idp"], body["idp_error"]) == ("deleting", "failed", "unreachable")
    assert "retry-delete" in body["message"]
    # Security first: the tokens are refused although the IdP still has the client.
    assert (await world.snapshot())["revoked_clients"] == [registered.client_id]
    shown = (await admin.get(f"{BASE}/{record}")).json()
    assert (shown["status"], shown["revoked"]) == ("deleting", True)
    assert shown["last_error"].startswith("unreachable: ")
    assert (await admin.get(BASE, params={"status": "deleting"})).json()["total"] == 1

    still_down = await admin.post(f"{BASE}/{record}/retry-delete")
    assert still_down.status_code == 202

    world.idp.start()
    retried = await admin.post(f"{BASE}/{record}/retry-delete")
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["idp"]) == ("deleted", "deleted")
    assert not world.idp.has_client(registered.client_id)
    assert world.idp.requests[-1].authorization == f"Bearer {registered.access_token}"
    assert await world.row(record) is None
    assert await world.tombstones() == {registered.client_id: "deleted"}


@pytest.mark.parametrize("failure", [500, 401])
async def test_idp_failure_keeps_the_record_and_force_removes_it(
    world: World, admin: httpx.AsyncClient, failure: int
) -> None:
    registered = world.idp.add_client()
    if failure == 401:  # the stored token is not the IdP's
        record = await world.client(registered, access_token="rat-stale")
    else:
        world.idp.fail_with = 500
        record = await world.client(registered)

    response = await admin.delete(f"{BASE}/{record}")

    assert response.status_code == 202
    expected_error = "server_error" if failure == 500 else "invalid_token"
    assert response.json()["idp_error"] == expected_error
    row = await world.row(record)
    assert row is not None
    assert row.status == "deleting"
    assert row.last_error is not None
    assert row.last_error.startswith(f"{expected_error}: ")
    assert world.idp.has_client(registered.client_id)
    forced = await admin.post(f"{BASE}/{record}/retry-delete", params={"force": "true"})
    assert forced.status_code == 200
    assert (forced.json()["status"], forced.json()["idp"]) == ("deleted", "forced")
    assert await world.row(record) is None
    assert (await world.snapshot())["revoked_clients"] == [registered.client_id]


async def test_client_already_gone_at_the_idp_counts_as_deleted(
    world: World, admin: httpx.AsyncClient
) -> None:
    registered = world.idp.add_client()
    record = await world.client(registered)
    world.idp.forget(registered.client_id)
    response = await admin.delete(f"{BASE}/{record}")
    assert response.status_code == 200
    assert response.json()["idp"] == "already_gone"
    assert world.idp.requests[-1].method == "DELETE"
    assert await world.row(record) is None


async def test_unmanaged_record_is_deleted_locally(world: World, admin: httpx.AsyncClient) -> None:
    record = await world.client(client_id="legacy-client")
    response = await admin.delete(f"{BASE}/{record}")
    assert response.status_code == 200
    assert response.json()["idp"] == "not_managed"
    assert await world.tombstones() == {"legacy-client": "deleted"}
    assert world.idp.requests == []


async def test_retry_is_only_for_a_client_being_deleted(world: World, admin: httpx.AsyncClient) -> None:
    record = await world.client(world.idp.add_client())
    response = await admin.post(f"{BASE}/{record}/retry-delete")
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert world.idp.requests == []


async def test_registration_is_read_at_the_idp_without_secrets(
    world: World, admin: httpx.AsyncClient
) -> None:
    registered = world.idp.add_client({"client_name": "shop", "redirect_uris": ["https://a.example/cb"]})
    record = await world.client(registered)
    response = await admin.get(f"{BASE}/{record}/registration")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["registration"]["client_name"] == "shop"
    assert body["registration"]["redirect_uris"] == ["https://a.example/cb"]
    assert "client_secret" not in body["registration"]
    assert "secret-" not in response.text
    assert body["registration_access_token_rotated"] is False
    assert world.idp.requests == [SeenRequest("GET", f"/register/{registered.client_id}",
                                              f"Bearer {registered.access_token}")]


async def test_a_token_rotated_on_read_is_stored(world: World, admin: httpx.AsyncClient) -> None:
    registered = world.idp.add_client()
    record = await world.client(registered)
    world.idp.rotate_on_read = True
    first = await admin.get(f"{BASE}/{record}/registration")
    assert first.status_code == 200
    assert first.json()["registration_access_token_rotated"] is True
    new_token = world.idp.token_of(registered.client_id)
    assert new_token not in first.text
    world.idp.rotate_on_read = False
    # The IdP now refuses the old token: a second read works only if the new one was stored.
    second = await admin.get(f"{BASE}/{record}/registration")
    assert second.status_code == 200, second.text
    assert world.idp.requests[-1].authorization == f"Bearer {new_token}"


async def test_registration_read_failures(world: World, admin: httpx.AsyncClient) -> None:
    registered = world.idp.add_client()
    record = await world.client(registered)
    unmanaged = await world.client(client_id="legacy")
    assert (await admin.get(f"{BASE}/{unmanaged}/registration")).status_code == 409

    world.idp.fail_with = 500
    failed = await admin.get(f"{BASE}/{record}/registration")
    assert failed.status_code == 502
    assert failed.json()["error"] == "idp_error"
    assert "server_error" in failed.json()["message"]

    world.idp.fail_with = None
    world.idp.stop()
    down = await admin.get(f"{BASE}/{record}/registration")
    assert (down.status_code, down.json()["error"]) == (502, "idp_unreachable")
