"""The registration saga against the real npm ``oidc-provider`` and a real gateway: register → the
secret once → a token from the IdP → the gateway serves it with the catalogue policy → update →
delete (revoked at once, gone at the IdP). Then retries, a store that fails after the IdP
succeeded (compensated, or journaled and reconciled), and an IdP that refuses the registration."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from tests.gateway.conftest import StartGateway
from tests.portal.conftest import Portal, add, add_developer, configure, developer_token

from propylon.dashboard.errors import ApiError
from propylon.domain.config import parse_config
from propylon.outbound.guard import OutboundGuard
from propylon.portal.registration import (
    AlreadyRegistered,
    RegistrationRequest,
    reconcile,
    register_client,
)
from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import AuditEntryRow, OAuthClientRow

pytestmark = pytest.mark.services

CLIENTS = "/portal/api/v1/clients"


class Watching(httpx.AsyncBaseTransport):
    """A real HTTP transport that remembers each exchange (and can refuse DELETEs, to make the
    compensation fail): the test needs the client id the IdP issued, which the saga keeps nowhere
    when it compensates."""

    def __init__(self, *, refuse_delete: bool = False) -> None:
        self.refuse_delete = refuse_delete
        self.seen: list[tuple[str, int, dict[str, Any]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.refuse_delete and request.method == "DELETE":
            raise httpx.ConnectError("refused by the test", request=request)
        async with httpx.AsyncHTTPTransport() as inner:
            response = await inner.handle_async_request(request)
            body = await response.aread()
        headers = [(k, v) for k, v in response.headers.items()
                   if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")]
        self.seen.append((request.method, response.status_code,
                          httpx.Response(200, content=body).json() if body else {}))
        return httpx.Response(response.status_code, headers=headers, content=body)


def request(name: str = "orders-app", **extra: Any) -> dict[str, Any]:
    return {"catalogue_entry_ids": ["orders-entry"], "name": name, **extra}


async def at_idp(portal: Portal, answer: dict[str, Any]) -> int:
    """The IdP's status for an RFC 7592 read of the client it answered ``answer`` for."""
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        read = await http.get(answer["registration_client_uri"],
                              headers={"Authorization": f"Bearer {answer['registration_access_token']}"})
    return read.status_code


async def client_rows(database: Database) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(OAuthClientRow)) or 0)


async def test_register_call_update_delete(portal: Portal, start_gateway: StartGateway,
                                           client: httpx.AsyncClient) -> None:
    created = await portal.developer.post(CLIENTS, json=request(), headers={"Idempotency-Key": "k1"})
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    body = created.json()
    client_id, secret = body["client_id"], body["client_secret"]
    assert secret
    assert body["token_endpoint"] == f"{portal.idp.issuer}/token"
    assert body["curl_token"].startswith(f"curl -u {client_id}:{secret} -d grant_type=client_credentials")
    assert body["curl_call"] == ['curl -H "Authorization: Bearer $ACCESS_TOKEN" "$GATEWAY_URL/orders/"']

    # Shown once: never stored, never shown again.
    listed = await portal.developer.get(CLIENTS)
    assert [item["client_id"] for item in listed.json()] == [client_id]
    shown = await portal.developer.get(f"{CLIENTS}/{body['id']}")
    assert shown.json()["status"] == "active"
    assert shown.json()["grant_types"] == ["client_credentials"]
    admin_view = await portal.admin.get(f"/api/v1/oauth-clients/{body['id']}")
    assert admin_view.json()["policy_ids"] == ["reader"]
    assert admin_view.json()["has_registration_access_token"] is True
    for text_ in (listed.text, shown.text, admin_view.text):
        assert secret not in text_
    row = await portal.row(body["id"])
    assert row is not None
    assert secret not in str(row.metadata_)

    # The IdP issues a token; the snapshot carries the client with the catalogue policy; a real
    # gateway fed that snapshot serves the token.
    token_answer = await portal.token(client_id, secret)
    assert token_answer.status_code == 200, token_answer.text
    token = token_answer.json()["access_token"]
    snapshot = await portal.snapshot()
    assert {"client_id": client_id, "policies": ["reader"], "developer_id": portal.developer_id} in \
        snapshot["clients"]
    gateway = await start_gateway(snapshot)
    url = f"http://127.0.0.1:{gateway.port}/orders/items/1"
    auth = {"Authorization": f"Bearer {token}"}
    assert (await client.get(url, headers=auth)).status_code == 200
    assert (await client.post(url, headers=auth)).status_code == 403  # the policy allows GET only

    # Update: the IdP has the new redirect URIs (its registration access token rotated, stored).
    before = row.registration_access_token_enc
    patched = await portal.developer.patch(f"{CLIENTS}/{body['id']}", json={
        "name": "orders-app 2", "redirect_uris": ["https://app.example/cb"]})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["redirect_uris"]) == (
        "orders-app 2", ["https://app.example/cb"])
    at_the_idp = await portal.admin.get(f"/api/v1/oauth-clients/{body['id']}/registration")
    assert at_the_idp.status_code == 200, at_the_idp.text
    assert at_the_idp.json()["registration"]["redirect_uris"] == ["https://app.example/cb"]
    assert at_the_idp.json()["registration"]["client_name"] == "orders-app 2"
    after = await portal.row(body["id"])
    assert after is not None
    assert after.registration_access_token_enc != before

    # Delete: revoked in the snapshot, refused by the gateway, unknown to the IdP.
    deleted = await portal.developer.delete(f"{CLIENTS}/{body['id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["idp"] == "deleted"
    refused = await portal.token(client_id, secret)
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
    snapshot = await portal.snapshot()
    assert client_id in snapshot["revoked_clients"]
    assert client_id not in [c["client_id"] for c in snapshot["clients"]]
    await gateway.apply(parse_config(snapshot))
    assert (await client.get(url, headers=auth)).status_code == 403
    assert (await portal.developer.get(f"{CLIENTS}/{body['id']}")).status_code == 404


async def test_a_retry_never_registers_twice(portal: Portal) -> None:
    first = await portal.developer.post(CLIENTS, json=request(), headers={"Idempotency-Key": "same"})
    assert first.status_code == 201, first.text
    again = await portal.developer.post(CLIENTS, json=request(), headers={"Idempotency-Key": "same"})
    assert again.status_code == 409
    assert again.json()["error"] == "already_registered"
    assert again.json()["client"]["client_id"] == first.json()["client_id"]
    assert first.json()["client_secret"] not in again.text
    # No request reaches the IdP on a retry.
    watching = Watching()
    with pytest.raises(AlreadyRegistered):
        await register_client(portal.dashboard.context, portal.actor,
                              RegistrationRequest.model_validate(request()), "same", transport=watching)
    assert watching.seen == []
    assert await client_rows(portal.dashboard.context.database) == 1
    # A registration still in progress: 409, nothing sent.
    async with portal.dashboard.context.database.transaction() as session:
        await session.execute(text("UPDATE oauth_clients SET status = 'pending'"))
    pending = await portal.developer.post(CLIENTS, json=request(), headers={"Idempotency-Key": "same"})
    assert (pending.status_code, pending.json()["error"]) == (409, "in_progress")
    # Without a key each request is a new registration.
    other = await portal.developer.post(CLIENTS, json=request("second"))
    assert other.status_code == 201
    assert other.json()["client_id"] != first.json()["client_id"]


async def refuse_activation(database: Database) -> None:
    """A trigger that makes the saga's store step (the update to ``active``) fail for real."""
    async with database.transaction() as session:
        if database.dialect == "postgresql":
            await session.execute(text(
                "CREATE FUNCTION refuse_active() RETURNS trigger AS $$ BEGIN "
                "IF NEW.status = 'active' THEN RAISE EXCEPTION 'store refused by the test'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"))
            await session.execute(text(
                "CREATE TRIGGER refuse_active BEFORE UPDATE ON oauth_clients FOR EACH ROW "
                "EXECUTE FUNCTION refuse_active()"))
        else:
            await session.execute(text(
                "CREATE TRIGGER refuse_active BEFORE UPDATE ON oauth_clients WHEN NEW.status = 'active' "
                "BEGIN SELECT RAISE(ABORT, 'store refused by the test'); END"))


async def allow_activation(database: Database) -> None:
    async with database.transaction() as session:
        await session.execute(text("DROP TRIGGER refuse_active" +
                                   (" ON oauth_clients" if database.dialect == "postgresql" else "")))
        if database.dialect == "postgresql":
            await session.execute(text("DROP FUNCTION refuse_active()"))


async def test_a_failed_store_is_compensated_at_the_idp(portal: Portal) -> None:
    database = portal.dashboard.context.database
    watching = Watching()
    await refuse_activation(database)
    try:
        with pytest.raises(ApiError) as failed:
            await register_client(portal.dashboard.context, portal.actor,
                                  RegistrationRequest.model_validate(request()), "k", transport=watching)
    finally:
        await allow_activation(database)
    assert (failed.value.status, failed.value.code) == (503, "store_failed")
    assert [(method, status) for method, status, _ in watching.seen] == [("POST", 201), ("DELETE", 204)]
    answer = watching.seen[0][2]
    assert await at_idp(portal, answer) == 401  # oidc-provider's answer for a client it does not know
    refused = await portal.token(answer["client_id"], answer["client_secret"])
    assert refused.status_code == 401
    assert await client_rows(database) == 0
    # The key is free again: the retry registers.
    again = await portal.developer.post(CLIENTS, json=request(), headers={"Idempotency-Key": "k"})
    assert again.status_code == 201, again.text


async def test_a_failed_compensation_is_journaled_then_reconciled(portal: Portal) -> None:
    database = portal.dashboard.context.database
    watching = Watching(refuse_delete=True)
    await refuse_activation(database)
    try:
        with pytest.raises(ApiError) as failed:
            await register_client(portal.dashboard.context, portal.actor,
                                  RegistrationRequest.model_validate(request()), "k", transport=watching)
    finally:
        await allow_activation(database)
    assert failed.value.code == "store_failed"
    answer = watching.seen[0][2]
    async with database.sessions() as session:
        row = await session.scalar(select(OAuthClientRow))
    assert row is not None
    assert (row.status, row.client_id) == ("failed", answer["client_id"])
    assert row.registration_client_uri == answer["registration_client_uri"]
    assert row.registration_access_token_enc is not None
    assert answer["registration_access_token"] not in row.registration_access_token_enc
    assert row.last_error is not None
    assert "awaiting reconciliation" in row.last_error
    assert answer["client_id"] not in [c["client_id"] for c in (await portal.snapshot())["clients"]]
    # The same key cannot register again while the orphan is being cleaned up.
    retry = await portal.developer.post(CLIENTS, json=request(), headers={"Idempotency-Key": "k"})
    assert retry.status_code == 409
    assert await at_idp(portal, answer) == 200  # still there

    assert await reconcile(portal.dashboard.context, timedelta(hours=1)) == []  # too recent
    done = await reconcile(portal.dashboard.context, timedelta(0))
    assert [(d.client_id, d.outcome) for d in done] == [(answer["client_id"], "deleted")]
    assert await at_idp(portal, answer) == 401
    assert await client_rows(database) == 0
    async with database.sessions() as session:
        actions = (await session.scalars(select(AuditEntryRow.action))).all()
    assert "reconciled" in actions


async def test_a_refused_registration_is_clear_to_the_developer_and_detailed_for_the_admin(
    dashboard: Any, admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, idp: Any, echo_port: int,
) -> None:
    await configure(admin, idp, echo_port, iat="not-the-initial-access-token")
    await add_developer(admin)
    token = await developer_token(anonymous)
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "x"}
    refused = await anonymous.post(CLIENTS, json=request(), headers=headers)
    assert refused.status_code == 502
    body = refused.json()
    assert body["error"] == "idp_error"
    assert "invalid_token" not in refused.text
    assert "not-the-initial" not in refused.text
    listed = (await anonymous.get(CLIENTS, headers=headers)).json()
    assert [item["status"] for item in listed] == ["failed"]
    assert listed[0]["problem"]
    record_id = listed[0]["id"]
    assert record_id in body["message"]
    seen = await admin.get(f"/api/v1/oauth-clients/{record_id}")
    assert seen.json()["last_error"].startswith("invalid_token")
    # The admin fixes the token; the developer's retry with the same key now succeeds, same record.
    fixed = await admin.put("/api/v1/identity-providers/npm", json={
        "issuer": idp.issuer, "kind": "generic", "audience": idp.resource,
        "registration_endpoint": f"{idp.issuer}/reg", "token_endpoint": f"{idp.issuer}/token",
        "jwks_uri": f"{idp.issuer}/jwks", "initial_access_token": idp.initial_access_token})
    assert fixed.status_code == 200, fixed.text
    retried = await anonymous.post(CLIENTS, json=request(), headers=headers)
    assert retried.status_code == 201, retried.text
    assert retried.json()["id"] == record_id
    assert (await admin.get(f"/api/v1/oauth-clients/{record_id}")).json()["last_error"] is None


async def test_the_entry_response_types_and_gateway_url_are_used(portal: Portal) -> None:
    await add(portal.admin, "/api/v1/catalogue", {
        "id": "web-entry", "name": "Web", "api_ids": ["orders"], "policy_id": "reader",
        "grant_types": ["authorization_code", "client_credentials"], "response_types": ["code", "none"]})
    saved = await portal.admin.put("/api/v1/portal-settings", json={"gateway_url": "https://gw.example/"})
    assert saved.status_code == 200, saved.text
    web = await portal.developer.post(CLIENTS, json={
        "catalogue_entry_ids": ["web-entry"], "name": "web", "grant_type": "authorization_code",
        "redirect_uris": ["https://app.example/cb"]})
    assert web.status_code == 201, web.text
    assert web.json()["curl_call"] == ['curl -H "Authorization: Bearer $ACCESS_TOKEN" '
                                       'https://gw.example/orders/']
    machine = await portal.developer.post(CLIENTS, json={
        "catalogue_entry_ids": ["web-entry"], "name": "machine", "grant_type": "client_credentials"})
    assert machine.status_code == 201, machine.text
    # What the IdP registered: the configured types the grant type allows (a client_credentials
    # client has no use for the authorization endpoint at all).
    for created, expected in ((web, ["code", "none"]), (machine, [])):
        read = await portal.admin.get(f"/api/v1/oauth-clients/{created.json()['id']}/registration")
        assert read.status_code == 200, read.text
        assert read.json()["registration"]["response_types"] == expected


async def test_an_idp_at_a_refused_address_is_never_called(portal: Portal) -> None:
    portal.dashboard.context.outbound = OutboundGuard()  # public addresses only; the IdP is loopback
    refused = await portal.developer.post(CLIENTS, json=request())
    assert (refused.status_code, refused.json()["error"]) == (502, "idp_error")
    assert "loopback" not in refused.text  # the developer gets no network details
    record_id = (await portal.developer.get(CLIENTS)).json()[0]["id"]
    seen = (await portal.admin.get(f"/api/v1/oauth-clients/{record_id}")).json()
    assert seen["last_error"].startswith("address_refused: the registration endpoint at ")
    assert "127.0.0.1 is a loopback address" in seen["last_error"]
