"""``/api/v1/identity-providers``: CRUD with a write-only initial access token, discovery and the
connection test against a real OpenID provider on loopback (``tests/support/idp.py``)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from propylon.dashboard import discovery
from propylon.outbound.guard import OutboundGuard
from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import IdentityProviderRow, OAuthClientRow
from tests.dashboard.conftest import Dashboard
from tests.dashboard.documents import api_doc, audit, created, idp_doc, insert_client, locations, version
from tests.support.idp import TestIdp

BASE = "/api/v1/identity-providers"


@pytest.fixture
def idp() -> Iterator[TestIdp]:
    with TestIdp(registration=True, initial_access_token="iat-good") as provider:
        yield provider


async def stored_token(dashboard: Dashboard, ident: str) -> str | None:
    async with dashboard.context.database.sessions() as session:
        row = await session.scalar(select(IdentityProviderRow).where(IdentityProviderRow.id == ident))
    assert row is not None
    if row.initial_access_token_enc is None:
        return None
    return dashboard.context.secrets.decrypt(row.initial_access_token_enc)


async def test_create_read_list_replace_delete(admin: httpx.AsyncClient, dashboard: Dashboard) -> None:
    body = await created(admin, BASE, idp_doc(initial_access_token="iat-one", audience="orders"))
    assert "initial_access_token" not in body
    assert body["has_initial_access_token"] is True
    assert body["discovery_url"] == "https://idp.example.com/realms/demo/.well-known/openid-configuration"
    assert body["kind"] == "keycloak"
    assert body["algorithms"][0] == "RS256"
    assert await stored_token(dashboard, "main") == "iat-one"
    assert (await admin.get(f"{BASE}/main")).json() == body
    assert [i["id"] for i in (await admin.get(BASE)).json()] == ["main"]

    # Omitted on PUT: the stored token is kept.
    document = idp_doc(kind="okta", discovery_url="https://idp.example.com/custom-discovery")
    del document["id"]
    kept = await admin.put(f"{BASE}/main", json=document)
    assert kept.status_code == 200, kept.text
    assert kept.json()["has_initial_access_token"] is True
    assert kept.json()["kind"] == "okta"
    assert kept.json()["audience"] is None  # the whole document was replaced
    assert kept.json()["discovery_url"] == "https://idp.example.com/custom-discovery"
    assert await stored_token(dashboard, "main") == "iat-one"

    replaced = await admin.put(f"{BASE}/main", json={**document, "initial_access_token": "iat-two"})
    assert replaced.json()["has_initial_access_token"] is True
    assert await stored_token(dashboard, "main") == "iat-two"

    cleared = await admin.put(f"{BASE}/main", json={**document, "initial_access_token": None})
    assert cleared.json()["has_initial_access_token"] is False
    assert await stored_token(dashboard, "main") is None

    assert (await admin.delete(f"{BASE}/main")).status_code == 204
    assert (await admin.get(f"{BASE}/main")).status_code == 404
    details = [e.details.get("initial_access_token") for e in await audit(dashboard.context.database)]
    assert details == ["set", "unchanged (set)", "set", "removed", None]


async def test_field_problems_are_reported_together(admin: httpx.AsyncClient) -> None:
    response = await admin.post(BASE, json={
        "id": "-bad", "issuer": "ftp://idp", "kind": "ping", "algorithms": ["HS256", "none"],
        "leeway_seconds": 600, "jwks_uri": "not a url", "registration_endpoint": "javascript:x",
        "initial_access_token": 42,
    })
    assert response.status_code == 422
    assert {"id", "issuer", "kind", "algorithms", "leeway_seconds", "jwks_uri", "registration_endpoint",
            "initial_access_token"} <= locations(response)
    assert "discovery_url" not in locations(response)  # the bad issuer is reported once


async def test_duplicate_missing_and_mismatched_id(admin: httpx.AsyncClient) -> None:
    await created(admin, BASE, idp_doc())
    assert (await admin.post(BASE, json=idp_doc())).status_code == 409
    assert (await admin.get(f"{BASE}/none")).status_code == 404
    assert (await admin.put(f"{BASE}/none", json=idp_doc("none"))).status_code == 404
    assert (await admin.delete(f"{BASE}/none")).status_code == 404
    assert (await admin.post(f"{BASE}/none/discover")).status_code == 404
    assert (await admin.post(f"{BASE}/none/test")).status_code == 404
    mismatch = await admin.put(f"{BASE}/main", json=idp_doc("other"))
    assert mismatch.status_code == 422
    assert locations(mismatch) == {"id"}


async def test_deleting_a_provider_in_use_is_a_conflict(admin: httpx.AsyncClient, database: Database) -> None:
    await created(admin, BASE, idp_doc())
    await created(admin, BASE, idp_doc("spare", "https://spare.example"))
    await created(admin, "/api/v1/apis", api_doc("orders"))
    response = await admin.delete(f"{BASE}/main")
    assert response.status_code == 409
    assert "apis/orders" in response.json()["message"]
    # An OAuth client registered at a provider pins it too, whatever the client's status.
    await insert_client(database, client_id=None, policies=(), idp="spare", status="pending")
    response = await admin.delete(f"{BASE}/spare")
    assert response.status_code == 409
    assert locations(response) == {"oauth-clients/rec-1.identity_provider_id"}


async def test_discover_fills_the_endpoints(
    admin: httpx.AsyncClient, database: Database, idp: TestIdp
) -> None:
    await created(admin, BASE, idp_doc(issuer=idp.issuer, initial_access_token="iat-secret"))
    start = await version(database)
    response = await admin.post(f"{BASE}/main/discover")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["changed"] == {
        "jwks_uri": {"old": None, "new": idp.jwks_uri},
        "registration_endpoint": {"old": None, "new": idp.registration_endpoint},
        "token_endpoint": {"old": None, "new": f"{idp.issuer}/token"},
    }
    assert result["identity_provider"]["jwks_uri"] == idp.jwks_uri
    assert result["identity_provider"]["has_initial_access_token"] is True
    assert (await admin.get(f"{BASE}/main")).json()["registration_endpoint"] == idp.registration_endpoint
    assert await version(database) == start + 1
    assert (await audit(database))[-1].action == "discover"

    # Nothing new: nothing written.
    again = await admin.post(f"{BASE}/main/discover")
    assert again.json()["changed"] == {}
    assert await version(database) == start + 1
    assert idp.discovery_hits == 2


async def test_discover_refuses_another_issuer(admin: httpx.AsyncClient, idp: TestIdp) -> None:
    await created(admin, BASE, idp_doc(issuer=idp.issuer))
    idp.set_discovery({"issuer": idp.issuer + "/"})
    response = await admin.post(f"{BASE}/main/discover")
    assert response.status_code == 502
    assert response.json()["error"] == "issuer_mismatch"
    assert (await admin.get(f"{BASE}/main")).json()["jwks_uri"] is None


async def test_discover_reports_bad_answers(admin: httpx.AsyncClient, idp: TestIdp) -> None:
    await created(admin, BASE, idp_doc(issuer=idp.issuer))
    idp.set_failing(500)
    failing = await admin.post(f"{BASE}/main/discover")
    assert failing.status_code == 502
    assert failing.json()["error"] == "idp_bad_response"
    assert "HTTP 500" in failing.json()["message"]

    idp.set_failing(None)
    idp.set_discovery({"jwks_uri": "ftp://keys.example/"})
    garbage = await admin.post(f"{BASE}/main/discover")
    assert garbage.status_code == 502
    assert garbage.json()["error"] == "idp_bad_response"
    assert "jwks_uri" in garbage.json()["message"]


async def test_discover_reports_an_unreachable_provider(
    admin: httpx.AsyncClient, idp: TestIdp, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    await created(admin, BASE, idp_doc("gone", f"http://127.0.0.1:{closed_port}"))
    refused = await admin.post(f"{BASE}/gone/discover")
    assert refused.status_code == 502
    assert refused.json()["error"] == "idp_unreachable"

    monkeypatch.setattr(discovery, "TIMEOUT_SECONDS", 0.3)
    await created(admin, BASE, idp_doc("slow", idp.issuer))
    idp.set_delay(2)
    slow = await admin.post(f"{BASE}/slow/discover")
    assert slow.status_code == 502
    assert slow.json()["error"] == "idp_unreachable"

    idp.set_delay(0)
    idp.set_trickle(0.1)  # answers, but too slowly as a whole
    trickle = await admin.post(f"{BASE}/slow/discover")
    assert trickle.status_code == 502
    assert trickle.json()["error"] == "idp_unreachable"


async def test_connection_test_passes(admin: httpx.AsyncClient, idp: TestIdp) -> None:
    await created(admin, BASE, idp_doc(issuer=idp.issuer))
    response = await admin.post(f"{BASE}/main/test")
    assert response.status_code == 200
    report = response.json()
    assert report["ok"] is True, report
    assert [c["name"] for c in report["checks"]] == ["discovery", "jwks", "registration_endpoint"]
    assert "rsa-1" in report["checks"][1]["message"]
    assert "ec-1" in report["checks"][1]["message"]
    assert idp.jwks_hits == 1


async def test_connection_test_explains_failures(admin: httpx.AsyncClient, idp: TestIdp) -> None:
    await created(admin, BASE, idp_doc(issuer=idp.issuer, algorithms=["RS256"]))
    idp.set_discovery({"registration_endpoint": None})
    idp.set_jwks_body(json.dumps({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "x", "e": "AQAB"},
        {"kty": "EC", "kid": "es", "alg": "ES256", "crv": "P-256", "x": "a", "y": "b"},
        {"kty": "RSA", "kid": "broken", "alg": "RS256", "n": "AQAB", "e": "AQAB"},
    ]}).encode())
    response = await admin.post(f"{BASE}/main/test", json={"dry_run_registration": True})
    assert response.status_code == 200
    report = response.json()
    assert report["ok"] is False
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["discovery"]["passed"] is True
    assert checks["jwks"]["passed"] is False
    reasons = ("hmac: key type 'oct'", "enc: meant for 'enc'", "es: algorithm 'ES256'", "broken: unusable")
    for reason in reasons:
        assert reason in checks["jwks"]["message"]
    assert checks["registration_endpoint"]["passed"] is False
    assert checks["dry_run_registration"]["passed"] is False
    assert checks["dry_run_registration"]["message"] == "skipped: no registration endpoint"

    idp.set_jwks_body(None)
    idp.set_jwks_redirect("/jwks-moved")
    redirected = (await admin.post(f"{BASE}/main/test")).json()
    assert "redirect" in {c["name"]: c for c in redirected["checks"]}["jwks"]["message"]

    idp.set_jwks_redirect(None)
    idp.set_jwks_body(b'{"keys": [' + b'{"kty": "oct"},' * 70_000 + b'{}]}')
    huge = (await admin.post(f"{BASE}/main/test")).json()
    assert "larger than 1048576 bytes" in {c["name"]: c for c in huge["checks"]}["jwks"]["message"]


async def test_dry_run_registration_registers_and_deletes_a_client(
    admin: httpx.AsyncClient, idp: TestIdp
) -> None:
    await created(admin, BASE, idp_doc(issuer=idp.issuer, initial_access_token="iat-good"))
    response = await admin.post(f"{BASE}/main/test", json={"dry_run_registration": True})
    report = response.json()
    assert report["ok"] is True, report
    dry_run = report["checks"][-1]
    assert dry_run["name"] == "dry_run_registration"
    assert dry_run["passed"] is True
    assert idp.registered == {}  # deleted again
    (post, delete) = idp.registration_requests
    assert post == ("POST", "/register", "Bearer iat-good")
    assert delete[0] == "DELETE"
    assert delete[1].startswith("/register/client-")
    assert delete[2] is not None
    assert delete[2] != "Bearer iat-good"  # RFC 7592: the client's own registration access token
    assert delete[1].removeprefix("/register/") in dry_run["message"]


async def test_dry_run_registration_reports_a_refused_token(admin: httpx.AsyncClient, idp: TestIdp) -> None:
    await created(admin, BASE, idp_doc(issuer=idp.issuer, initial_access_token="iat-wrong"))
    await created(admin, BASE, idp_doc("none", idp.issuer))
    await created(admin, BASE, idp_doc("okta", idp.issuer, kind="okta", initial_access_token="api-token"))
    for ident, authorization in (("main", "Bearer iat-wrong"), ("none", None), ("okta", "SSWS api-token")):
        report = (await admin.post(f"{BASE}/{ident}/test", json={"dry_run_registration": True})).json()
        dry_run = report["checks"][-1]
        assert report["ok"] is False
        assert dry_run["passed"] is False
        assert "registration refused" in dry_run["message"]
        assert "HTTP 401 (invalid_token)" in dry_run["message"]
        assert "iat-wrong" not in dry_run["message"]
        assert idp.registration_requests[-1] == ("POST", "/register", authorization)
    assert idp.registered == {}


async def test_connection_test_of_an_unreachable_provider_is_still_200(admin: httpx.AsyncClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    await created(admin, BASE, idp_doc(issuer=f"http://127.0.0.1:{closed_port}"))
    response = await admin.post(f"{BASE}/main/test")
    assert response.status_code == 200
    assert response.json()["ok"] is False
    assert all(not c["passed"] for c in response.json()["checks"])
    assert "idp_unreachable" in response.json()["checks"][0]["message"]


async def test_admin_credentials_are_required(anonymous: httpx.AsyncClient) -> None:
    for method, path in (("GET", BASE), ("POST", BASE), ("GET", f"{BASE}/main"), ("PUT", f"{BASE}/main"),
                         ("DELETE", f"{BASE}/main"), ("POST", f"{BASE}/main/discover"),
                         ("POST", f"{BASE}/main/test")):
        for headers in ({}, {"Authorization": "Bearer ppl_forged"}):
            json_body = idp_doc() if method in ("POST", "PUT") else None
            response = await anonymous.request(method, path, json=json_body, headers=headers)
            assert response.status_code == 401, (method, path)


async def test_the_ssrf_guard_refuses_loopback_unless_allowed(
    admin: httpx.AsyncClient, dashboard: Dashboard, idp: TestIdp
) -> None:
    """The fixtures allow 127.0.0.0/8; without that allow-list, every outbound call to this
    loopback IdP is refused with the address class named, before anything is sent."""
    await created(admin, BASE, idp_doc(issuer=idp.issuer, initial_access_token="iat-good",
                                       registration_endpoint=idp.registration_endpoint,
                                       jwks_uri=idp.jwks_uri))
    dashboard.context.outbound = OutboundGuard()  # the production default: public addresses only
    refused = await admin.post(f"{BASE}/main/discover")
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["error"] == "address_refused"
    assert "127.0.0.1 is a loopback address" in body["message"]
    assert "PROPYLON_OUTBOUND_ALLOWED_NETWORKS" in body["message"]
    report = (await admin.post(f"{BASE}/main/test", json={"dry_run_registration": True})).json()
    assert report["ok"] is False
    messages = {check["name"]: check["message"] for check in report["checks"]}
    for name in ("discovery", "jwks", "dry_run_registration"):
        assert "loopback address" in messages[name], messages
    assert idp.discovery_hits == 0
    assert idp.registration_requests == []

    # An allowed network passes: the same calls reach the IdP.
    dashboard.context.outbound = OutboundGuard(["127.0.0.0/8"])
    assert (await admin.post(f"{BASE}/main/discover")).status_code == 200
    assert (await admin.post(f"{BASE}/main/test", json={"dry_run_registration": True})).json()["ok"]
    # Another private network allowed is not this one.
    dashboard.context.outbound = OutboundGuard(["10.0.0.0/8"])
    assert (await admin.post(f"{BASE}/main/discover")).json()["error"] == "address_refused"


async def test_a_management_uri_at_a_refused_address_is_refused(
    admin: httpx.AsyncClient, dashboard: Dashboard, database: Database
) -> None:
    await created(admin, BASE, idp_doc())
    await insert_client(database)
    async with database.transaction() as session:
        row = await session.get(OAuthClientRow, "rec-1")
        assert row is not None
        row.registration_client_uri = "http://169.254.169.254/latest/meta-data/"
        row.registration_access_token_enc = dashboard.context.secrets.encrypt("rat")
    read = await admin.get("/api/v1/oauth-clients/rec-1/registration")
    assert read.status_code == 422, read.text
    assert read.json()["error"] == "address_refused"
    assert "169.254.169.254 is a link-local address" in read.json()["message"]
    deleted = await admin.delete("/api/v1/oauth-clients/rec-1")
    assert deleted.status_code == 202, deleted.text
    assert deleted.json()["idp_error"] == "address_refused"
