"""Client secret rotation: by replacement against the real npm ``oidc-provider`` (which, like
Keycloak and Gluu, has no rotation in DCR), in place against the test registration server in its
Okta mode (``newSecret`` with the API token) and its Curity mode (a read rotates the secret and the
registration access token). Then the saga's failure paths: the old client cannot be deleted, the
swap cannot be stored."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from tests.dashboard.conftest import Dashboard
from tests.portal.conftest import Portal, add, add_developer, developer_token
from tests.portal.test_registration import Watching, allow_activation, refuse_activation
from tests.support.client_records import add_client
from tests.support.registration_server import RegistrationServer

from propylon.dashboard.changes import Actor
from propylon.dashboard.errors import ApiError
from propylon.portal.registration import reconcile
from propylon.portal.rotation import rotate_client_secret
from propylon.storage.sql.schema import AuditEntryRow, OAuthClientRow

pytestmark = pytest.mark.services

CLIENTS = "/portal/api/v1/clients"


async def register(portal: Portal, name: str = "orders-app") -> dict[str, str]:
    created = await portal.developer.post(CLIENTS, json={"catalogue_entry_ids": ["orders-entry"],
                                                         "name": name})
    assert created.status_code == 201, created.text
    body: dict[str, str] = created.json()
    return body


async def rows(portal: Portal) -> list[OAuthClientRow]:
    async with portal.dashboard.context.database.sessions() as session:
        return list((await session.scalars(select(OAuthClientRow).order_by(OAuthClientRow.name))).all())


async def test_an_idp_without_rotation_gets_a_replacement_client(portal: Portal) -> None:
    first = await register(portal)
    assert (await portal.token(first["client_id"], first["client_secret"])).status_code == 200

    rotated = await portal.developer.post(f"{CLIENTS}/{first['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["cache-control"] == "no-store"
    new = rotated.json()
    assert new["replaced"] is True
    assert new["id"] == first["id"]
    assert new["client_id"] != first["client_id"]
    assert new["client_secret"] not in (None, first["client_secret"])
    assert new["curl_token"].startswith(f"curl -u {new['client_id']}:{new['client_secret']} ")
    assert new["curl_call"] == first["curl_call"]

    # The new credentials work at the IdP; the old client is gone there and revoked for gateways.
    assert (await portal.token(new["client_id"], new["client_secret"])).status_code == 200
    old = await portal.token(first["client_id"], first["client_secret"])
    assert (old.status_code, old.json()["error"]) == (401, "invalid_client")
    snapshot = await portal.snapshot()
    assert first["client_id"] in snapshot["revoked_clients"]
    assert [(c["client_id"], c["policies"]) for c in snapshot["clients"]] == [(new["client_id"], ["reader"])]
    listed = (await portal.developer.get(CLIENTS)).json()
    assert [(c["id"], c["client_id"], c["status"]) for c in listed] == [
        (first["id"], new["client_id"], "active")]
    assert new["client_secret"] not in str((await rows(portal))[0].metadata_)

    # The replacement's registration access token was stored: it manages the client (a second
    # rotation deletes it with that token).
    again = await portal.developer.post(f"{CLIENTS}/{first['id']}/rotate-secret")
    assert again.status_code == 200, again.text
    assert (await portal.token(new["client_id"], new["client_secret"])).status_code == 401
    assert (await portal.token(again.json()["client_id"], again.json()["client_secret"])).status_code == 200
    async with portal.dashboard.context.database.sessions() as session:
        actions = (await session.scalars(select(AuditEntryRow.action).where(
            AuditEntryRow.resource_id == first["id"]))).all()
    assert actions.count("rotate_secret") == 2


async def test_a_replaced_client_the_idp_keeps_stays_revoked_until_deleted(portal: Portal) -> None:
    first = await register(portal)
    context = portal.dashboard.context
    async with context.database.transaction() as session:
        row = await session.get(OAuthClientRow, first["id"])
        assert row is not None
        good_token = row.registration_access_token_enc
        row.registration_access_token_enc = context.secrets.encrypt("not-the-token")

    rotated = await portal.developer.post(f"{CLIENTS}/{first['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert (await portal.token(new["client_id"], new["client_secret"])).status_code == 200
    # The IdP refused to delete the old client: it still issues tokens, but gateways refuse them,
    # and a record in "deleting" keeps what a retry needs.
    assert (await portal.token(first["client_id"], first["client_secret"])).status_code == 200
    assert first["client_id"] in (await portal.snapshot())["revoked_clients"]
    listed = {c["client_id"]: c for c in (await portal.developer.get(CLIENTS)).json()}
    kept = listed[first["client_id"]]
    assert (kept["status"], kept["name"]) == ("deleting", "orders-app (replaced)")
    assert kept["problem"]
    assert listed[new["client_id"]]["status"] == "active"
    admin_view = (await portal.admin.get(f"/api/v1/oauth-clients/{kept['id']}")).json()
    assert admin_view["last_error"].startswith("invalid_token")
    assert admin_view["revoked"] is True

    async with context.database.transaction() as session:
        old_row = await session.get(OAuthClientRow, kept["id"])
        assert old_row is not None
        old_row.registration_access_token_enc = good_token
    retried = await portal.admin.post(f"/api/v1/oauth-clients/{kept['id']}/retry-delete")
    assert (retried.status_code, retried.json()["idp"]) == (200, "deleted")
    assert (await portal.token(first["client_id"], first["client_secret"])).status_code == 401


async def test_a_swap_that_cannot_be_stored_leaves_the_client_as_it_was(portal: Portal) -> None:
    first = await register(portal)
    context = portal.dashboard.context
    for refuse_delete in (False, True):
        watching = Watching(refuse_delete=refuse_delete)
        await refuse_activation(context.database)
        try:
            with pytest.raises(ApiError) as failed:
                await rotate_client_secret(context, portal.actor, first["id"], transport=watching)
        finally:
            await allow_activation(context.database)
        assert (failed.value.status, failed.value.code) == (503, "store_failed")
        methods = [(method, status) for method, status, _ in watching.seen]
        assert methods[0] == ("POST", 201)
        replacement = watching.seen[0][2]
        replaced = (replacement["client_id"], replacement["client_secret"])
        # The client is unchanged and still works; the replacement never got to a gateway.
        assert (await portal.token(first["client_id"], first["client_secret"])).status_code == 200
        records = await rows(portal)
        assert records[0].client_id == first["client_id"]
        assert records[0].status == "active"
        snapshot = await portal.snapshot()
        assert replacement["client_id"] not in [c["client_id"] for c in snapshot["clients"]]
        assert first["client_id"] not in snapshot["revoked_clients"]
        if not refuse_delete:
            assert methods == [("POST", 201), ("DELETE", 204)]
            assert len(records) == 1
            assert (await portal.token(*replaced)).status_code == 401
        else:
            # Not deletable now: kept as a failed record, which the reconciler deletes.
            orphan = [r for r in records if r.client_id == replacement["client_id"]]
            assert [(r.status, r.name) for r in orphan] == [("failed", "orders-app (unused replacement)")]
            assert orphan[0].last_error is not None
            assert "awaiting reconciliation" in orphan[0].last_error
            assert (await portal.token(*replaced)).status_code == 200
            done = await reconcile(context, timedelta(0))
            assert [(d.client_id, d.outcome) for d in done] == [(replacement["client_id"], "deleted")]
            assert (await portal.token(*replaced)).status_code == 401
    assert len(await rows(portal)) == 1


async def test_only_an_active_own_client_can_be_rotated(portal: Portal) -> None:
    first = await register(portal)
    other = await add_developer(portal.admin, "other@example.com")
    with pytest.raises(ApiError) as theirs:
        await rotate_client_secret(portal.dashboard.context, Actor("developer", "o", other), first["id"])
    assert theirs.value.status == 404
    async with portal.dashboard.context.database.transaction() as session:
        row = await session.get(OAuthClientRow, first["id"])
        assert row is not None
        row.status = "deleting"
    refused = await portal.developer.post(f"{CLIENTS}/{first['id']}/rotate-secret")
    assert refused.status_code == 409, refused.text
    assert (await portal.developer.post(f"{CLIENTS}/nope/rotate-secret")).status_code == 404


async def vendor_world(dashboard: Dashboard, admin: httpx.AsyncClient, anonymous: httpx.AsyncClient,
                       server: RegistrationServer, kind: str, iat: str | None) -> tuple[str, str, str]:
    """An IdP of ``kind`` at the registration server, a catalogue entry, a developer with a token
    and one client there; returns (record id, client id, developer token)."""
    await add(admin, "/api/v1/identity-providers", {
        "id": "vendor", "issuer": f"{server.base_url}/oauth2/default", "kind": kind,
        "registration_endpoint": f"{server.base_url}/register",
        "token_endpoint": f"{server.base_url}/token", "initial_access_token": iat})
    await add(admin, "/api/v1/apis", {
        "id": "orders", "name": "Orders", "listen_path": "/orders/", "upstream": "http://127.0.0.1:9/",
        "auth": {"type": "jwt", "identity_provider": "vendor"}})
    await add(admin, "/api/v1/policies", {"id": "reader", "access_rights": {"orders": {}}})
    await add(admin, "/api/v1/catalogue", {"id": "orders-entry", "name": "Orders", "api_ids": ["orders"],
                                           "policy_id": "reader"})
    developer_id = await add_developer(admin)
    token = await developer_token(anonymous)
    registered = server.add_client({"client_name": "orders-app"})
    record_id = await add_client(dashboard.context.database, dashboard.context.secrets,
                                 developer_id=developer_id, identity_provider_id="vendor",
                                 registered=registered, catalogue_entry_ids=["orders-entry"],
                                 policy_ids=["reader"])
    return record_id, registered.client_id, token


async def test_okta_rotates_in_place_with_its_api_token(
    dashboard: Dashboard, admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    with RegistrationServer() as server:
        server.api_token = "okta-api-token"
        record_id, client_id, token = await vendor_world(dashboard, admin, anonymous, server, "okta",
                                                         "okta-api-token")
        before = server.secret_of(client_id)
        rotated = await anonymous.post(f"{CLIENTS}/{record_id}/rotate-secret",
                                       headers={"Authorization": f"Bearer {token}"})
        assert rotated.status_code == 200, rotated.text
        body = rotated.json()
        assert (body["client_id"], body["replaced"]) == (client_id, False)
        assert body["client_secret"] == server.secret_of(client_id) != before
        assert body["curl_token"].endswith(f"{server.base_url}/token")
        assert [(r.method, r.path, r.authorization) for r in server.requests] == [
            ("POST", f"/register/{client_id}/lifecycle/newSecret", "SSWS okta-api-token")]
        server.api_token = "rotated-away"  # a refused API token: a clear 502, nothing changes
        refused = await anonymous.post(f"{CLIENTS}/{record_id}/rotate-secret",
                                       headers={"Authorization": f"Bearer {token}"})
        assert (refused.status_code, refused.json()["error"]) == (502, "idp_error")
        assert record_id in refused.json()["message"]
        seen = (await admin.get(f"/api/v1/oauth-clients/{record_id}")).json()
        assert seen["last_error"].startswith("rotate secret: invalid_token")
        assert seen["client_id"] == client_id


async def test_curity_rotates_secret_and_registration_token_on_a_read(
    dashboard: Dashboard, admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    with RegistrationServer() as server:
        server.rotate_on_read = True
        record_id, client_id, _ = await vendor_world(dashboard, admin, anonymous, server, "curity",
                                                     "one-time-dcr-token")
        context = dashboard.context
        developer = (await admin.get(f"/api/v1/oauth-clients/{record_id}")).json()["developer"]
        actor = Actor("developer", developer["email"], developer["id"])
        secrets_seen = []
        for _ in range(2):  # the second rotation authenticates with the token the first stored
            new = await rotate_client_secret(context, actor, record_id)
            assert (new.client_id, new.replaced) == (client_id, False)
            assert new.client_secret == server.secret_of(client_id)
            secrets_seen.append(new.client_secret)
            async with context.database.sessions() as session:
                row = await session.get(OAuthClientRow, record_id)
            assert row is not None
            assert row.registration_access_token_enc is not None
            assert context.secrets.decrypt(row.registration_access_token_enc) == server.token_of(client_id)
        assert secrets_seen[0] != secrets_seen[1]
        assert [(r.method, r.path) for r in server.requests] == [("GET", f"/register/{client_id}")] * 2
