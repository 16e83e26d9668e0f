"""Portal pages, OAuth clients: the wizard registers at the real npm ``oidc-provider`` and shows the
credentials once (no-store), a double submit registers once, invalid redirect URIs come back with
the input kept, an IdP that is down or silent gets a clear 502/504 page; then detail, edit, secret
rotation and deletion, and another developer's client is a 404 everywhere."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select
from tests.dashboard.conftest import Dashboard
from tests.portal.conftest import EMAIL, PASSWORD, add, add_developer, configure
from tests.support.client_records import add_client
from tests.support.oidc_provider import OidcProvider
from tests.support.portal_pages import Page, PortalBrowser

from propylon.storage.sql.schema import OAuthClientRow

pytestmark = pytest.mark.services  # the npm oidc-provider

NEW = "/portal/clients/new"


@dataclass
class Signed:
    """A configured portal and a browser signed in as the developer."""

    dashboard: Dashboard
    admin: httpx.AsyncClient
    browser: PortalBrowser
    developer_id: str

    async def rows(self) -> list[OAuthClientRow]:
        async with self.dashboard.context.database.sessions() as session:
            return list((await session.scalars(select(OAuthClientRow))).all())


async def signed_in_world(dashboard: Dashboard, admin: httpx.AsyncClient) -> AsyncIterator[Signed]:
    developer_id = await add_developer(admin)
    browser = PortalBrowser(dashboard.app)
    assert (await browser.sign_in(EMAIL, PASSWORD)).status == 303
    yield Signed(dashboard, admin, browser, developer_id)
    await browser.aclose()


@pytest.fixture
async def world(dashboard: Dashboard, admin: httpx.AsyncClient, idp: OidcProvider,
                echo_port: int) -> AsyncIterator[Signed]:
    """The npm IdP, API ``orders``, policy ``reader``, entry ``orders-entry``; signed in."""
    await configure(admin, idp, echo_port)
    async for signed in signed_in_world(dashboard, admin):
        yield signed


async def token_at(idp: OidcProvider, client_id: str, secret: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        return await http.post(f"{idp.issuer}/token", auth=(client_id, secret),
                               data={"grant_type": "client_credentials", "scope": "read"})


def wizard_answers(form: Page, **changes: str | list[str]) -> dict[str, str | list[str]]:
    """What a developer submits: the form's own hidden fields, the orders entry, a name."""
    answers: dict[str, str | list[str]] = {
        "csrf_token": form.csrf_token, "idempotency_key": form.value("idempotency_key"),
        "catalogue_entry_ids": ["orders-entry"], "name": "orders-app", "redirect_uris": "",
        "grant_type": "client_credentials"}
    answers.update(changes)
    return answers


async def test_the_wizard_registers_a_client_and_shows_the_secret_once(
    world: Signed, idp: OidcProvider
) -> None:
    browser = world.browser
    listing = await browser.get("/portal/clients")
    assert listing.by_id("new-client").attrs["href"] == NEW  # type: ignore[union-attr]
    form = await browser.get(NEW)
    assert form.status == 200
    assert [box.attrs["value"] for box in form.named("catalogue_entry_ids")] == ["orders-entry"]
    selected = [o for o in form.named("grant_type")[0].iter() if o.tag == "option" and "selected" in o.attrs]
    assert [o.attrs["value"] for o in selected] == ["client_credentials"]
    assert form.by_id("register") is not None
    answers = wizard_answers(form)

    created = await browser.post("/portal/clients", answers)
    assert created.status == 200, created.response.text
    assert created.response.headers["cache-control"] == "no-store"
    client_id, secret = created.text_of("client-id"), created.text_of("client-secret")
    assert client_id
    assert len(secret) > 20
    assert created.text_of("token-endpoint") == f"{idp.issuer}/token"
    curl = shlex.split(created.text_of("curl-token"))
    assert curl[:3] == ["curl", "-u", f"{client_id}:{secret}"]
    assert curl[-1] == f"{idp.issuer}/token"
    assert [e.text() for e in created.with_class("curl-call")] == [
        'curl -H "Authorization: Bearer $ACCESS_TOKEN" "$GATEWAY_URL/orders/"']
    assert (await token_at(idp, client_id, secret)).status_code == 200

    # Never stored, never shown again; the same form submitted again registers nothing.
    [row] = await world.rows()
    assert (row.client_id, row.status) == (client_id, "active")
    assert secret not in str(row.metadata_)
    again = await browser.post("/portal/clients", answers)
    assert again.status == 409
    assert again.by_id("client-link").attrs["href"] == f"/portal/clients/{row.id}"  # type: ignore[union-attr]
    assert secret not in again.response.text
    assert len(await world.rows()) == 1
    listed = await browser.get("/portal/clients")
    [entry] = listed.with_class("client-row")
    assert [a.attrs["href"] for a in entry.iter() if a.tag == "a"] == [f"/portal/clients/{row.id}"]
    detail = await browser.get(f"/portal/clients/{row.id}")
    assert detail.text_of("client-id") == client_id
    assert (detail.text_of("client-status"), detail.text_of("grant-types")) == \
        ("active", "client_credentials")
    assert detail.text_of("client-apis") == "Orders: Orders (/orders/)"
    for shown in (listed, detail):
        assert secret not in shown.response.text


async def test_curl_lines_use_the_gateway_url_when_the_portal_knows_it(world: Signed) -> None:
    saved = await world.admin.put("/api/v1/portal-settings", json={"gateway_url": "https://api.example"})
    assert saved.status_code == 200, saved.text
    form = await world.browser.get(NEW)
    created = await world.browser.post("/portal/clients", wizard_answers(form))
    assert created.status == 200, created.response.text
    assert [e.text() for e in created.with_class("curl-call")] == [
        'curl -H "Authorization: Bearer $ACCESS_TOKEN" https://api.example/orders/']


async def test_invalid_redirect_uris_come_back_with_the_input_kept(world: Signed) -> None:
    form = await world.browser.get(NEW)
    typed = "http://app.example/cb\nhttps://ok.example/cb#frag, nonsense\n\nhttps://ok.example/fine"
    refused = await world.browser.post("/portal/clients", wizard_answers(
        form, name="my <app>", redirect_uris=typed))
    assert refused.status == 422
    assert refused.errors() == [
        "Redirect URIs (1): 'http://app.example/cb' must use https (http only for localhost)",
        "Redirect URIs (2): 'https://ok.example/cb#frag' must not contain a fragment",
        "Redirect URIs (3): 'nonsense' must be an absolute https URL"]
    assert (refused.value("name"), refused.value("redirect_uris")) == ("my <app>", typed)
    assert refused.value("idempotency_key") == form.value("idempotency_key")
    assert [box.attrs.get("checked") for box in refused.named("catalogue_entry_ids")] == [""]
    assert await world.rows() == []
    # Fixed, the same form registers.
    fixed = await world.browser.post("/portal/clients", wizard_answers(
        refused, redirect_uris="https://ok.example/cb,http://localhost:8080/cb"))
    assert fixed.status == 200, fixed.response.text
    [row] = await world.rows()
    assert row.metadata_["redirect_uris"] == ["https://ok.example/cb", "http://localhost:8080/cb"]


async def test_the_wizard_splits_with_the_separator_imported_from_tyk(world: Signed) -> None:
    imported = await world.admin.post("/api/v1/import/tyk", json={"documents": [
        {"tyk_api_config": {"Host": "http://127.0.0.1", "Port": "8080"}, "listen_port": 3000,
         "oauth_redirect_uri_separator": "|"}]})
    assert imported.json()["updated"] == ["portal-settings"], imported.text
    form = await world.browser.get(NEW)
    assert "separated by “|”" in form.response.text
    typed = "https://a.example/cb|https://b.example/cb?x=1,2\nhttp://localhost:8080/cb"
    created = await world.browser.post("/portal/clients", wizard_answers(form, redirect_uris=typed))
    assert created.status == 200, created.response.text
    [row] = await world.rows()
    # The comma (the default separator) is now part of a URI; "|" and lines split.
    assert row.metadata_["redirect_uris"] == [
        "https://a.example/cb", "https://b.example/cb?x=1,2", "http://localhost:8080/cb"]


async def test_detail_edit_rotate_and_delete(world: Signed, idp: OidcProvider) -> None:
    browser = world.browser
    created = await browser.post("/portal/clients", wizard_answers(await browser.get(NEW)))
    old_id, old_secret = created.text_of("client-id"), created.text_of("client-secret")
    [row] = await world.rows()
    detail_url = f"/portal/clients/{row.id}"

    edit = await browser.get(f"{detail_url}/edit")
    assert (edit.value("name"), edit.value("redirect_uris")) == ("orders-app", "")
    bad = await browser.post(f"{detail_url}/edit", {"csrf_token": edit.csrf_token, "name": "",
                                                    "redirect_uris": "ftp://x"})
    assert bad.status == 422
    assert bad.errors() == ["Name is required"]
    assert bad.value("redirect_uris") == "ftp://x"
    bad_uri = await browser.post(f"{detail_url}/edit", {"csrf_token": edit.csrf_token, "name": "n",
                                                        "redirect_uris": "ftp://x"})
    assert bad_uri.errors() == ["Redirect URIs (1): 'ftp://x' must be an absolute https URL"]
    saved = await browser.post(f"{detail_url}/edit", {
        "csrf_token": edit.csrf_token, "name": "orders-app 2",
        "redirect_uris": "https://app.example/cb\nhttps://app.example/other"})
    assert (saved.status, saved.response.headers["location"]) == (303, detail_url)
    detail = await browser.get(detail_url)
    assert detail.text_of("flash") == "The client is updated."
    assert detail.text_of("client-name") == "orders-app 2"
    uris = detail.by_id("redirect-uris")
    assert uris is not None
    assert [li.text() for li in uris.iter() if li.tag == "li"] == [
        "https://app.example/cb", "https://app.example/other"]
    at_idp = await world.admin.get(f"/api/v1/oauth-clients/{row.id}/registration")
    assert at_idp.json()["registration"]["client_name"] == "orders-app 2"

    # Rotation: the npm IdP cannot rotate, so the client is replaced (the page says so).
    rotated = await browser.post(f"{detail_url}/rotate-secret", {"csrf_token": detail.csrf_token})
    assert rotated.status == 200, rotated.response.text
    assert rotated.response.headers["cache-control"] == "no-store"
    new_id, new_secret = rotated.text_of("client-id"), rotated.text_of("client-secret")
    assert new_id != old_id
    assert new_secret != old_secret
    assert "new client ID" in rotated.text_of("replaced")
    assert new_id in rotated.text_of("curl-token")
    assert (await token_at(idp, new_id, new_secret)).status_code == 200
    assert (await token_at(idp, old_id, old_secret)).status_code == 401

    confirm = await browser.get(f"{detail_url}/delete")
    assert confirm.by_id("confirm-delete") is not None
    deleted = await browser.post(f"{detail_url}/delete", {"csrf_token": confirm.csrf_token})
    assert (deleted.status, deleted.response.headers["location"]) == (303, "/portal/clients")
    listed = await browser.get("/portal/clients")
    assert listed.text_of("flash") == "The client is deleted."
    assert listed.with_class("client-row") == []
    assert (await token_at(idp, new_id, new_secret)).status_code == 401
    assert (await browser.get(detail_url)).status == 404


async def test_another_developers_client_is_not_found(world: Signed) -> None:
    context = world.dashboard.context
    other = await add_developer(world.admin, "other@example.com")
    theirs = await add_client(context.database, context.secrets, developer_id=other,
                              identity_provider_id="npm", client_id="theirs", name="their app")
    browser = world.browser
    token = (await browser.get("/portal/clients")).csrf_token
    for path in (f"/portal/clients/{theirs}", f"/portal/clients/{theirs}/edit",
                 f"/portal/clients/{theirs}/delete", "/portal/clients/no-such-client",
                 "/portal/clients/%00", "/portal/clients/" + "x" * 500, "/portal/clients/a%2F..%2Fb"):
        shown = await browser.get(path)
        assert (shown.status, shown.h1()) == (404, "Not found"), path
    for path in (f"/portal/clients/{theirs}/edit", f"/portal/clients/{theirs}/delete",
                 f"/portal/clients/{theirs}/rotate-secret", "/portal/clients/nope/delete"):
        posted = await browser.post(path, {"csrf_token": token, "name": "mine", "redirect_uris": ""})
        assert posted.status == 404, path
        assert "their app" not in posted.response.text
    [row] = [r for r in await world.rows() if r.id == theirs]
    assert (row.name, row.status) == ("their app", "active")


@pytest.fixture
async def unreachable(dashboard: Dashboard, admin: httpx.AsyncClient) -> AsyncIterator[Signed]:
    """An IdP whose registration endpoint refuses connections (nothing listens on port 9)."""
    await add(admin, "/api/v1/identity-providers", {
        "id": "down", "issuer": "http://127.0.0.1:9/idp", "registration_endpoint": "http://127.0.0.1:9/reg",
        "token_endpoint": "http://127.0.0.1:9/token", "initial_access_token": "secret-iat-value"})
    await add(admin, "/api/v1/apis", {"id": "orders", "name": "Orders", "listen_path": "/orders/",
                                      "upstream": "http://127.0.0.1:9/",
                                      "auth": {"type": "jwt", "identity_provider": "down"}})
    await add(admin, "/api/v1/policies", {"id": "reader", "access_rights": {"*": {}}})
    await add(admin, "/api/v1/catalogue", {"id": "orders-entry", "name": "Orders", "api_ids": ["orders"],
                                           "policy_id": "reader"})
    async for signed in signed_in_world(dashboard, admin):
        yield signed


async def test_an_unreachable_idp_gets_a_clear_502_page(unreachable: Signed) -> None:
    form = await unreachable.browser.get(NEW)
    failed = await unreachable.browser.post("/portal/clients", wizard_answers(form))
    assert (failed.status, failed.h1()) == (502, "Identity provider error")
    [message] = failed.errors()
    assert message.startswith("the identity provider could not register the client")
    for leak in ("127.0.0.1", "secret-iat-value", "Traceback", "refused"):
        assert leak not in failed.response.text
    [row] = await unreachable.rows()
    assert row.status == "failed"
    assert row.id in message  # the reference an admin looks up
    shown = await unreachable.browser.get(f"/portal/clients/{row.id}")
    assert "did not complete" in shown.text_of("client-problem")


async def test_a_silent_idp_gets_a_504_page(dashboard: Dashboard, admin: httpx.AsyncClient) -> None:
    release = asyncio.Event()
    handlers: list[asyncio.Task[object]] = []

    async def never_answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await release.wait()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await add(admin, "/api/v1/identity-providers", {
            "id": "slow", "issuer": f"http://127.0.0.1:{port}", "registration_endpoint":
            f"http://127.0.0.1:{port}/reg"})
        await add(admin, "/api/v1/apis", {"id": "orders", "listen_path": "/orders/",
                                          "upstream": "http://127.0.0.1:9/",
                                          "auth": {"type": "jwt", "identity_provider": "slow"}})
        await add(admin, "/api/v1/policies", {"id": "reader", "access_rights": {"*": {}}})
        await add(admin, "/api/v1/catalogue", {"id": "orders-entry", "name": "Orders",
                                               "api_ids": ["orders"], "policy_id": "reader"})
        async for signed in signed_in_world(dashboard, admin):
            form = await signed.browser.get(NEW)
            failed = await signed.browser.post("/portal/clients", wizard_answers(form))
            assert (failed.status, failed.h1()) == (504, "Identity provider timeout")
            assert failed.errors() == ["the identity provider did not answer in time; try again later"]
            assert str(port) not in failed.response.text
    finally:
        release.set()
        await asyncio.gather(*handlers)
        server.close()
        await server.wait_closed()


async def test_only_entries_offering_registration_are_in_the_wizard(world: Signed) -> None:
    await add(world.admin, "/api/v1/catalogue", {"id": "closed", "name": "Closed", "api_ids": ["orders"],
                                                 "policy_id": "reader", "dcr_enabled": False})
    await add(world.admin, "/api/v1/catalogue", {
        "id": "web", "name": "Web", "api_ids": ["orders"], "policy_id": "reader",
        "grant_types": ["authorization_code", "client_credentials"]})
    form = await world.browser.get(NEW)
    assert [box.attrs["value"] for box in form.named("catalogue_entry_ids")] == ["orders-entry", "web"]
    options = [o.attrs["value"] for o in form.named("grant_type")[0].iter() if o.tag == "option"]
    assert options == ["client_credentials", "authorization_code"]
    # authorization_code is not offered by orders-entry, and needs a redirect URI anyway.
    refused = await world.browser.post("/portal/clients", wizard_answers(
        form, catalogue_entry_ids=["orders-entry", "closed"], grant_type="authorization_code"))
    assert refused.status == 422
    assert refused.errors() == [
        "APIs (2): catalogue entry 'closed' does not offer client registration",
        "Grant type: must be one of: client_credentials",
        "Redirect URIs: at least one redirect URI is required (the grant type or the catalogue entry "
        "needs one)"]
    async with world.dashboard.context.database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OAuthClientRow)) == 0


async def test_a_deletion_the_idp_does_not_confirm_is_shown_as_pending(unreachable: Signed) -> None:
    context = unreachable.dashboard.context
    record_id = await add_client(context.database, context.secrets, developer_id=unreachable.developer_id,
                                 identity_provider_id="down", client_id="stuck", name="stuck app",
                                 access_token="registration-access-token")
    async with context.database.transaction() as session:
        row = await session.get(OAuthClientRow, record_id)
        assert row is not None
        row.registration_client_uri = "http://127.0.0.1:9/reg/stuck"
    browser = unreachable.browser
    confirm = await browser.get(f"/portal/clients/{record_id}/delete")
    answer = await browser.post(f"/portal/clients/{record_id}/delete", {"csrf_token": confirm.csrf_token})
    assert (answer.status, answer.response.headers["location"]) == (303, "/portal/clients")
    listed = await browser.get("/portal/clients")
    assert listed.text_of("flash").startswith("The client is revoked: its tokens no longer work.")
    [row] = await unreachable.rows()
    assert row.status == "deleting"
    detail = await browser.get(f"/portal/clients/{record_id}")
    assert "revoked" in detail.text_of("client-problem")
    assert detail.by_id("rotate-secret") is None
    assert detail.by_id("delete-client") is not None  # deleting again retries at the IdP
