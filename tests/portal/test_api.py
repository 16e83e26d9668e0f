"""The developer JSON API without the IdP in the way: developer tokens and authentication errors,
the catalogue, validation (every problem at once), and one developer never seeing another's
clients."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update
from tests.dashboard.conftest import Dashboard
from tests.portal.conftest import EMAIL, PASSWORD, add, add_developer, basic, developer_token
from tests.support.client_records import add_client

from propylon.dashboard.changes import Actor
from propylon.portal.api import credentials_for
from propylon.portal.developer_tokens import DEFAULT_TOKEN_DAYS, create_developer_token
from propylon.portal.registration import NewClient, RegistrationRequest, plan_registration
from propylon.storage.sql.schema import DeveloperTokenRow, OAuthClientRow
from propylon.web.credentials import token_digest

TOKENS = "/portal/api/v1/tokens"
CLIENTS = "/portal/api/v1/clients"


async def test_developer_tokens_and_authentication_errors(
    dashboard: Dashboard, admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    developer_id = await add_developer(admin)
    await add_developer(admin, "pending@example.com", status="pending")
    token = await developer_token(anonymous, EMAIL.upper())  # emails are case-insensitive
    assert token.startswith("ppd_")
    async with dashboard.context.database.sessions() as session:
        stored = (await session.scalars(select(DeveloperTokenRow))).all()
    assert [(row.token_digest, row.prefix) for row in stored] == [(token_digest(token), token[:12])]
    ok = await anonymous.get(CLIENTS, headers={"Authorization": f"Bearer {token}"})
    assert (ok.status_code, ok.json()) == (200, [])

    refusals = [
        await anonymous.post(TOKENS),
        await anonymous.post(TOKENS, headers=basic(EMAIL, "wrong password!")),
        await anonymous.post(TOKENS, headers=basic("nobody@example.com", PASSWORD)),
        await anonymous.post(TOKENS, headers=basic("pending@example.com", PASSWORD)),
        await anonymous.post(TOKENS, headers={"Authorization": "Basic !!!"}),
        await anonymous.get(CLIENTS),
        await anonymous.get(CLIENTS, headers={"Authorization": "Bearer ppd_not-a-token"}),
        await anonymous.get(CLIENTS, headers={"Authorization": f"Bearer {dashboard.admin_token}"}),
        await anonymous.get("/portal/api/v1/catalogue", headers=basic(EMAIL, PASSWORD)),
    ]
    assert [r.status_code for r in refusals] == [401] * len(refusals)
    assert len({r.text for r in refusals}) == 1
    assert all(r.headers["www-authenticate"].startswith("Bearer") for r in refusals)
    # Developer tokens are not admin credentials.
    assert (await anonymous.get("/api/v1/oauth-clients",
                                headers={"Authorization": f"Bearer {token}"})).status_code == 401

    # A suspended developer's token stops working at once.
    patched = await admin.patch(f"/api/v1/developers/{developer_id}", json={"status": "disabled"})
    assert patched.status_code == 200, patched.text
    assert (await anonymous.get(CLIENTS, headers={"Authorization": f"Bearer {token}"})).status_code == 401


async def test_password_guessing_is_throttled(admin: httpx.AsyncClient, anonymous: httpx.AsyncClient) -> None:
    await add_developer(admin)
    for _ in range(10):
        assert (await anonymous.post(TOKENS, headers=basic(EMAIL, "guess guess guess"))).status_code == 401
    throttled = await anonymous.post(TOKENS, headers=basic(EMAIL, PASSWORD))
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0


@pytest.fixture
async def catalogue(admin: httpx.AsyncClient) -> None:
    """IdP, API, policy and entries, without a running IdP (no registration reaches it here)."""
    await add(admin, "/api/v1/identity-providers", {
        "id": "main", "issuer": "http://127.0.0.1:9/idp", "kind": "generic",
        "registration_endpoint": "http://127.0.0.1:9/idp/reg"})
    await add(admin, "/api/v1/identity-providers", {"id": "other", "issuer": "http://127.0.0.1:9/o"})
    for api, idp in (("orders", "main"), ("stock", "other")):
        await add(admin, "/api/v1/apis", {
            "id": api, "name": api.title(), "listen_path": f"/{api}/", "upstream": "http://127.0.0.1:9/",
            "auth": {"type": "jwt", "identity_provider": idp}})
    await add(admin, "/api/v1/policies", {
        "id": "gold", "rate": {"requests": 10, "per_seconds": 1},
        "quota": {"max": 1000, "renewal_seconds": 3600}, "key_expires_in_seconds": 86400,
        "access_rights": {"*": {}}})
    await add(admin, "/api/v1/catalogue", {"id": "orders-entry", "name": "Orders", "description": "All "
                                           "orders", "api_ids": ["orders"], "policy_id": "gold"})
    await add(admin, "/api/v1/catalogue", {"id": "web-entry", "name": "Web", "api_ids": ["orders"],
                                           "policy_id": "gold", "redirect_uris_required": True,
                                           "grant_types": ["authorization_code", "client_credentials"]})
    await add(admin, "/api/v1/catalogue", {"id": "hidden", "name": "Hidden", "api_ids": ["orders"],
                                           "policy_id": "gold", "published": False})
    await add(admin, "/api/v1/catalogue", {"id": "no-dcr", "name": "No DCR", "api_ids": ["orders"],
                                           "policy_id": "gold", "dcr_enabled": False})
    await add(admin, "/api/v1/catalogue", {"id": "stock-entry", "name": "Stock", "api_ids": ["stock"],
                                           "policy_id": "gold"})


@pytest.fixture
async def developer(dashboard: Dashboard, admin: httpx.AsyncClient,
                    anonymous: httpx.AsyncClient) -> httpx.AsyncClient:
    await add_developer(admin)
    anonymous.headers["Authorization"] = f"Bearer {await developer_token(anonymous)}"
    return anonymous


@pytest.mark.usefixtures("catalogue")
async def test_catalogue_lists_published_entries_in_words(developer: httpx.AsyncClient) -> None:
    response = await developer.get("/portal/api/v1/catalogue")
    assert response.status_code == 200, response.text
    entries = {item["id"]: item for item in response.json()}
    assert set(entries) == {"orders-entry", "web-entry", "no-dcr", "stock-entry"}
    orders = entries["orders-entry"]
    assert orders["description"] == "All orders"
    assert orders["apis"] == [{"id": "orders", "name": "Orders", "listen_path": "/orders/"}]
    assert orders["limits"] == ["at most 10 requests per second",
                                "quota of 1000 requests per hour",
                                "access expires after a day"]
    assert (orders["registration_enabled"], orders["grant_types"]) == (True, ["client_credentials"])
    assert entries["no-dcr"]["registration_enabled"] is False
    assert entries["web-entry"]["redirect_uris_required"] is True


@pytest.mark.usefixtures("catalogue")
async def test_validation_reports_every_problem_at_once(
    dashboard: Dashboard, developer: httpx.AsyncClient
) -> None:
    response = await developer.post(CLIENTS, json={
        "catalogue_entry_ids": ["orders-entry", "missing", "hidden", "no-dcr", "stock-entry", "web-entry"],
        "name": "app", "grant_type": "refresh_token",
        "redirect_uris": ["http://app.example/cb", "https://app.example/cb#x", "https://ok.example/cb",
                          "https://ok.example/cb", "nonsense"],
    })
    assert response.status_code == 422, response.text
    problems = {(p["location"], p["message"].split(" ")[0]) for p in response.json()["problems"]}
    assert {location for location, _ in problems} == {
        "catalogue_entry_ids.1", "catalogue_entry_ids.2", "catalogue_entry_ids.3",
        "catalogue_entry_ids", "grant_type", "redirect_uris.0", "redirect_uris.1", "redirect_uris.3",
        "redirect_uris.4"}
    # A web entry needs redirect URIs; the body's own shape is checked too.
    missing = await developer.post(CLIENTS, json={"catalogue_entry_ids": ["web-entry"], "name": "w"})
    assert [p["location"] for p in missing.json()["problems"]] == ["redirect_uris"]
    shape = await developer.post(CLIENTS, json={"catalogue_entry_ids": [], "name": ""})
    assert shape.status_code == 422
    assert len(shape.json()["problems"]) == 2
    async with dashboard.context.database.sessions() as session:
        assert (await session.scalars(select(OAuthClientRow))).all() == []


@pytest.mark.usefixtures("catalogue")
async def test_developers_see_only_their_own_clients(
    dashboard: Dashboard, admin: httpx.AsyncClient, developer: httpx.AsyncClient
) -> None:
    context = dashboard.context
    other = await add_developer(admin, "other@example.com")
    theirs = await add_client(context.database, context.secrets, developer_id=other,
                              identity_provider_id="main", client_id="theirs")
    assert (await developer.get(CLIENTS)).json() == []
    for call in (developer.get(f"{CLIENTS}/{theirs}"), developer.delete(f"{CLIENTS}/{theirs}"),
                 developer.patch(f"{CLIENTS}/{theirs}", json={"name": "mine"}),
                 developer.get(f"{CLIENTS}/nope")):
        answer = await call
        assert answer.status_code == 404, answer.text
    assert (await admin.get(f"/api/v1/oauth-clients/{theirs}")).json()["name"] == "app"


async def test_a_portal_page_does_not_exist_for_admins(admin: httpx.AsyncClient) -> None:
    """Admin credentials are not developer credentials."""
    assert (await admin.get(CLIENTS)).status_code == 401


async def test_developer_tokens_are_listed_revoked_and_expire(
    dashboard: Dashboard, admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    await add_developer(admin)
    other_id = await add_developer(admin, "other@example.com")
    created = await anonymous.post(TOKENS, headers=basic(EMAIL, PASSWORD),
                                   json={"name": "ci", "expires_in_days": 7})
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    first = created.json()
    lifetime = datetime.fromisoformat(first["expires_at"]) - datetime.fromisoformat(first["created_at"])
    assert lifetime == timedelta(days=7)
    second = await developer_token(anonymous)  # the default lifetime
    auth = {"Authorization": f"Bearer {first['token']}"}

    listed = await anonymous.get(TOKENS, headers=auth)
    assert listed.status_code == 200, listed.text
    tokens = listed.json()
    assert {t["name"] for t in tokens} == {"ci", "api"}
    assert set(tokens[0]) == {"id", "name", "prefix", "created_at", "last_used_at", "expires_at",
                              "revoked_at"}
    assert first["token"] not in listed.text
    assert second not in listed.text
    default = next(t for t in tokens if t["name"] == "api")
    assert datetime.fromisoformat(default["expires_at"]) - datetime.fromisoformat(
        default["created_at"]) == timedelta(days=DEFAULT_TOKEN_DAYS)
    assert next(t for t in tokens if t["name"] == "ci")["last_used_at"] is not None

    # Lifetimes outside 1..365 days are refused; nothing is created.
    for days in (0, 366, "never"):
        bad = await anonymous.post(TOKENS, headers=basic(EMAIL, PASSWORD), json={"expires_in_days": days})
        assert bad.status_code == 422, bad.text
    assert len((await anonymous.get(TOKENS, headers=auth)).json()) == 2

    # Another developer's token is not found; one's own is revoked at once (twice is harmless).
    _, theirs = await create_developer_token(dashboard.context, Actor("developer", "other", other_id), "x")
    async with dashboard.context.database.sessions() as session:
        their_id = await session.scalar(select(DeveloperTokenRow.id).where(
            DeveloperTokenRow.developer_id == other_id))
    assert (await anonymous.delete(f"{TOKENS}/{their_id}", headers=auth)).status_code == 404
    assert (await anonymous.get(CLIENTS, headers={"Authorization": f"Bearer {theirs}"})).status_code == 200
    second_auth = {"Authorization": f"Bearer {second}"}
    for _ in range(2):
        revoked = await anonymous.delete(f"{TOKENS}/{default['id']}", headers=auth)
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None
    assert (await anonymous.get(CLIENTS, headers=second_auth)).status_code == 401
    assert (await anonymous.get(CLIENTS, headers=auth)).status_code == 200

    # An expired token is refused like any bad one.
    async with dashboard.context.database.transaction() as session:
        await session.execute(update(DeveloperTokenRow).where(DeveloperTokenRow.id == first["id"])
                              .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert (await anonymous.get(TOKENS, headers=auth)).status_code == 401
    with pytest.raises(ValueError, match="1 to 365 days"):
        await create_developer_token(dashboard.context, Actor("developer", "o", other_id), "x",
                                     expires_in_days=0)


async def test_the_gateway_url_setting_is_a_clean_base_url(admin: httpx.AsyncClient) -> None:
    saved = await admin.put("/api/v1/portal-settings", json={"gateway_url": "https://api.example.com/gw/"})
    assert saved.status_code == 200, saved.text
    assert saved.json()["gateway_url"] == "https://api.example.com/gw"
    for bad in ("api.example.com", "ftp://api.example.com", "https://u:p@api.example.com",
                "https://api.example.com/?x=1", "https://api.example.com/#top",
                'https://api.example.com/"$(id)"'):
        refused = await admin.put("/api/v1/portal-settings", json={"gateway_url": bad})
        assert refused.status_code == 422, bad
        assert "gateway_url" in refused.text
    assert (await admin.get("/api/v1/portal-settings")).json()["gateway_url"] == "https://api.example.com/gw"


@pytest.mark.usefixtures("catalogue")
async def test_credentials_name_the_gateway_when_its_url_is_set(
    dashboard: Dashboard, admin: httpx.AsyncClient
) -> None:
    context = dashboard.context
    request = RegistrationRequest(catalogue_entry_ids=["orders-entry"], name="app")
    plan = await plan_registration(context, request)
    new = NewClient("record", "the-client", "s3cret", 0, plan)
    placeholder = await credentials_for(context, new)
    assert placeholder.curl_call == ['curl -H "Authorization: Bearer $ACCESS_TOKEN" "$GATEWAY_URL/orders/"']
    assert placeholder.replaced is False
    assert (await admin.put("/api/v1/portal-settings",
                            json={"gateway_url": "https://api.example.com/"})).status_code == 200
    named = await credentials_for(context, NewClient("record", "new-client", "s3cret", 0, plan,
                                                     replaced=True))
    assert named.curl_call == ['curl -H "Authorization: Bearer $ACCESS_TOKEN" https://api.example.com/orders/']
    assert (named.client_id, named.replaced) == ("new-client", True)
