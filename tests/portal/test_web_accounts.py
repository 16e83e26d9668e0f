"""Portal pages, accounts: sign-up (with and without approval, no account enumeration), sign-in
(one generic failure, throttling shared with the JSON API, a new session id every time), sessions
(digest only, idle and absolute expiry, disabled developers), sign-out, password change, CSRF,
cookie flags and security headers. Everything through the real dashboard app on both databases."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update
from tests.dashboard.conftest import Dashboard
from tests.portal.conftest import EMAIL, PASSWORD, add_developer, basic
from tests.support.portal_pages import PortalBrowser, set_cookies

from propylon.dashboard.changes import now
from propylon.storage.sql.schema import DeveloperRow, DeveloperTokenRow, PortalSessionRow

NEW_PASSWORD = "a brand new password 456"
SESSION = "propylon_portal"


@pytest.fixture
async def browser(dashboard: Dashboard) -> AsyncIterator[PortalBrowser]:
    client = PortalBrowser(dashboard.app)
    yield client
    await client.aclose()


async def developers(dashboard: Dashboard) -> list[DeveloperRow]:
    async with dashboard.context.database.sessions() as session:
        return list((await session.scalars(select(DeveloperRow).order_by(DeveloperRow.email))).all())


async def sessions(dashboard: Dashboard) -> list[PortalSessionRow]:
    async with dashboard.context.database.sessions() as session:
        return list((await session.scalars(select(PortalSessionRow))).all())


async def signed_in(browser: PortalBrowser) -> bool:
    """Whether the browser's session opens the clients page (else it is sent to sign in)."""
    shown = await browser.get("/portal/clients")
    assert shown.status in (200, 303), shown.response.text
    return shown.status == 200


async def test_sign_up_creates_an_active_developer(dashboard: Dashboard, browser: PortalBrowser) -> None:
    answer = await browser.sign_up("  New.Dev@Example.COM ", PASSWORD, name="New Dev")
    assert (answer.status, answer.response.headers["location"]) == (303, "/portal/login?signed_up=1")
    [row] = await developers(dashboard)
    assert (row.email, row.name, row.status) == ("new.dev@example.com", "New Dev", "active")
    assert row.password_hash is not None
    assert row.password_hash.startswith("$argon2id$")
    shown = await browser.get("/portal/login?signed_up=1")
    assert "account is created" in shown.text_of("flash")
    assert "approval" not in shown.text_of("flash")
    signed = await browser.sign_in("NEW.DEV@example.com", PASSWORD)
    assert (signed.status, signed.response.headers["location"]) == (303, "/portal/clients")
    assert await signed_in(browser)


async def test_sign_up_awaits_approval_when_the_portal_requires_it(
    dashboard: Dashboard, admin: httpx.AsyncClient, browser: PortalBrowser
) -> None:
    saved = await admin.put("/api/v1/portal-settings", json={"require_developer_approval": True})
    assert saved.status_code == 200, saved.text
    assert (await browser.sign_up("wait@example.com", PASSWORD)).status == 303
    [row] = await developers(dashboard)
    assert row.status == "pending"
    assert "approval" in (await browser.get("/portal/login?signed_up=1")).text_of("flash")
    refused = await browser.sign_in("wait@example.com", PASSWORD)
    assert refused.status == 401
    assert not await signed_in(browser)
    approved = await admin.patch(f"/api/v1/developers/{row.id}", json={"status": "active"})
    assert approved.status_code == 200, approved.text
    assert (await browser.sign_in("wait@example.com", PASSWORD)).status == 303
    assert await signed_in(browser)


async def test_sign_up_never_tells_whether_an_address_has_an_account(
    dashboard: Dashboard, admin: httpx.AsyncClient, browser: PortalBrowser
) -> None:
    await add_developer(admin)
    [before] = await developers(dashboard)
    known = await browser.sign_up(EMAIL.upper(), "another password 789", name="Intruder")
    unknown = await browser.sign_up("fresh@example.com", "another password 789", name="Fresh")
    assert (known.status, known.response.headers["location"]) == \
        (unknown.status, unknown.response.headers["location"]) == (303, "/portal/login?signed_up=1")
    assert known.response.text == unknown.response.text
    rows = {row.email: row for row in await developers(dashboard)}
    assert set(rows) == {EMAIL, "fresh@example.com"}
    # The existing account is untouched: same name, same password.
    assert (rows[EMAIL].name, rows[EMAIL].password_hash) == (before.name, before.password_hash)
    assert (await browser.sign_in(EMAIL, "another password 789")).status == 401
    assert (await browser.sign_in(EMAIL, PASSWORD)).status == 303


async def test_sign_up_problems_are_listed_and_the_input_kept(
    dashboard: Dashboard, browser: PortalBrowser
) -> None:
    weak = await browser.sign_up("someone@example.com", "short", name="<b>Some One</b>")
    assert weak.status == 422
    assert weak.errors() == ["Password must be at least 12 characters"]
    assert (weak.value("email"), weak.value("name")) == ("someone@example.com", "<b>Some One</b>")
    assert "<b>Some One</b>" not in weak.response.text  # escaped, not markup
    assert weak.value("password") == ""  # a password is never sent back
    several = await browser.submit("/portal/signup", "/portal/signup",
                                   {"email": "not an address", "password": PASSWORD})
    assert several.status == 422
    assert several.errors() == ["Name is required",
                                "Email must be an e-mail address like name@example.com"]
    assert several.value("email") == "not an address"
    assert await developers(dashboard) == []


async def test_every_sign_in_failure_gets_the_same_answer(
    admin: httpx.AsyncClient, browser: PortalBrowser
) -> None:
    await add_developer(admin)
    await add_developer(admin, "pending@example.com", status="pending")
    await add_developer(admin, "disabled@example.com", status="disabled")
    failures = [
        await browser.sign_in(EMAIL, "wrong password 000"),
        await browser.sign_in("nobody@example.com", PASSWORD),
        await browser.sign_in("pending@example.com", PASSWORD),
        await browser.sign_in("disabled@example.com", PASSWORD),
    ]
    assert [f.status for f in failures] == [401] * 4
    bodies = {f.response.text.replace(f.csrf_token, "TOKEN") for f in failures}
    assert len(bodies) == 1
    assert failures[0].errors() == ["Wrong e-mail address or password, or the account is not active (yet)."]
    assert not await signed_in(browser)


async def test_sign_in_guessing_is_throttled_together_with_the_json_api(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, browser: PortalBrowser
) -> None:
    await add_developer(admin)
    for _ in range(5):
        assert (await browser.sign_in(EMAIL, "guess guess guess")).status == 401
    for _ in range(5):
        answer = await anonymous.post("/portal/api/v1/tokens", headers=basic(EMAIL, "guess guess guess"))
        assert answer.status_code == 401
    throttled = await browser.sign_in(EMAIL, PASSWORD)  # even the right password now
    assert throttled.status == 429
    assert int(throttled.response.headers["retry-after"]) > 0
    assert throttled.errors() == ["Too many failed sign-ins; try again later."]
    assert not await signed_in(browser)
    api = await anonymous.post("/portal/api/v1/tokens", headers=basic(EMAIL, PASSWORD))
    assert api.status_code == 429


async def test_sign_in_starts_a_new_session_stored_as_a_digest(
    dashboard: Dashboard, admin: httpx.AsyncClient, browser: PortalBrowser
) -> None:
    await add_developer(admin)
    planted = "A" * 43  # a session id an attacker chose (fixation): never adopted
    browser.http.cookies.set(SESSION, planted, domain="dashboard.test", path="/portal")
    assert not await signed_in(browser)
    assert (await browser.sign_in(EMAIL, PASSWORD)).status == 303
    first = browser.cookie(SESSION)
    assert first is not None
    assert first != planted
    [row] = await sessions(dashboard)
    assert row.id_digest == hashlib.sha256(first.encode()).hexdigest()
    assert first not in (row.id_digest, row.csrf_secret)
    assert row.expires_at - row.created_at == timedelta(hours=12)

    # Signing in again (signed in already) replaces the session: the old id stops working.
    assert (await browser.sign_in(EMAIL, PASSWORD)).status == 303
    second = browser.cookie(SESSION)
    assert second is not None
    assert second != first
    assert [r.id_digest for r in await sessions(dashboard)] == [hashlib.sha256(second.encode()).hexdigest()]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=dashboard.app),
                                 base_url="http://dashboard.test", cookies={SESSION: first}) as old:
        replay = await old.get("/portal/clients")
    assert replay.status_code == 303
    assert replay.headers["location"] == "/portal/login?next=/portal/clients"


async def test_cookies_are_http_only_lax_scoped_and_secure_over_https(
    dashboard: Dashboard, admin: httpx.AsyncClient
) -> None:
    await add_developer(admin)
    for base, secure in (("http://dashboard.test", False), ("https://dashboard.test", True)):
        browser = PortalBrowser(dashboard.app, base_url=base)
        try:
            form = await browser.get("/portal/login")
            signed = await browser.sign_in(EMAIL, PASSWORD)
        finally:
            await browser.aclose()
        cookies = {**set_cookies(form.response), **set_cookies(signed.response)}
        assert set(cookies) >= {SESSION, "propylon_portal_csrf"}
        for header in cookies.values():
            attributes = [part.strip().lower() for part in header.split(";")[1:]]
            assert {"httponly", "path=/portal", "samesite=lax"} <= set(attributes), header
            assert ("secure" in attributes) is secure, header


async def test_pages_carry_the_security_headers(browser: PortalBrowser) -> None:
    for path in ("/portal/", "/portal/login", "/portal/signup", "/portal/catalogue", "/portal/nowhere"):
        shown = await browser.get(path)
        headers = shown.response.headers
        assert "default-src 'self'" in headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert (headers["x-frame-options"], headers["referrer-policy"], headers["x-content-type-options"],
                headers["cache-control"]) == ("DENY", "same-origin", "nosniff", "no-store"), path
        assert "<script" not in shown.response.text
    css = await browser.http.get("/portal/static/portal.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert css.headers["x-content-type-options"] == "nosniff"
    assert "#flash" in css.text


async def test_forms_without_a_valid_csrf_token_change_nothing(
    dashboard: Dashboard, admin: httpx.AsyncClient, browser: PortalBrowser
) -> None:
    await add_developer(admin)
    signup = {"email": "forged@example.com", "name": "F", "password": PASSWORD}
    await browser.get("/portal/signup")  # the browser holds a CSRF cookie
    for data in (signup, {**signup, "csrf_token": "x" * 43}, {**signup, "csrf_token": ["a", "b"]}):
        refused = await browser.post("/portal/signup", data)
        assert refused.status == 403
        assert "reload the page" in refused.errors()[0]
    # A token taken from another visitor (another cookie) is no good either.
    other = PortalBrowser(dashboard.app)
    try:
        stolen = (await other.get("/portal/signup")).csrf_token
    finally:
        await other.aclose()
    assert (await browser.post("/portal/signup", {**signup, "csrf_token": stolen})).status == 403
    assert [row.email for row in await developers(dashboard)] == [EMAIL]
    refused_login = await browser.post("/portal/login", {"email": EMAIL, "password": PASSWORD})
    assert refused_login.status == 403
    assert await sessions(dashboard) == []
    # Cross-site, even with the right token.
    cross = await browser.submit("/portal/login", "/portal/login", {"email": EMAIL, "password": PASSWORD},
                                 headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status == 403
    assert await sessions(dashboard) == []

    # Signed in: the session's token is required; the anonymous one no longer counts.
    anonymous_token = (await browser.get("/portal/login")).csrf_token
    assert (await browser.sign_in(EMAIL, PASSWORD)).status == 303
    for data in ({"name": "t"}, {"name": "t", "csrf_token": anonymous_token}):
        assert (await browser.post("/portal/tokens", data)).status == 403
        assert (await browser.post("/portal/logout", data)).status == 403
    async with dashboard.context.database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(DeveloperTokenRow)) == 0
    assert await signed_in(browser)
    created = await browser.submit("/portal/tokens", "/portal/tokens", {"name": "t"})
    assert created.status == 200


async def test_sign_out_ends_the_session(
    dashboard: Dashboard, admin: httpx.AsyncClient, browser: PortalBrowser
) -> None:
    await add_developer(admin)
    await browser.sign_in(EMAIL, PASSWORD)
    old = browser.cookie(SESSION)
    out = await browser.submit("/portal/clients", "/portal/logout", {})
    assert (out.status, out.response.headers["location"]) == (303, "/portal/login")
    assert browser.cookie(SESSION) is None
    assert await sessions(dashboard) == []
    assert "signed out" in (await browser.get("/portal/login")).text_of("flash")
    assert (await browser.get("/portal/login")).by_id("flash") is None  # shown once
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=dashboard.app),
                                 base_url="http://dashboard.test", cookies={SESSION: old or ""}) as replay:
        assert (await replay.get("/portal/clients")).status_code == 303


async def test_changing_the_password_ends_the_other_sessions(
    dashboard: Dashboard, admin: httpx.AsyncClient, browser: PortalBrowser
) -> None:
    await add_developer(admin)
    other = PortalBrowser(dashboard.app)
    try:
        await other.sign_in(EMAIL, PASSWORD)
        await browser.sign_in(EMAIL, PASSWORD)
        before = browser.cookie(SESSION)
        form = "/portal/account/password"
        wrong = await browser.submit(form, form, {"current_password": "not my password",
                                                  "new_password": NEW_PASSWORD})
        assert (wrong.status, wrong.errors()) == (422, ["Current password is not correct"])
        weak = await browser.submit(form, form, {"current_password": PASSWORD, "new_password": "short"})
        assert (weak.status, weak.errors()) == (422, ["New password must be at least 12 characters"])
        assert await signed_in(other)

        changed = await browser.submit(form, form, {"current_password": PASSWORD,
                                                    "new_password": NEW_PASSWORD})
        assert (changed.status, changed.response.headers["location"]) == (303, form)
        assert "password is changed" in (await browser.get(form)).text_of("flash")
        assert browser.cookie(SESSION) not in (None, before)  # this session goes on, under a new id
        assert await signed_in(browser)
        assert not await signed_in(other)
        assert len(await sessions(dashboard)) == 1
        assert (await other.sign_in(EMAIL, PASSWORD)).status == 401
        assert (await other.sign_in(EMAIL, NEW_PASSWORD)).status == 303
    finally:
        await other.aclose()


async def test_sessions_end_when_idle_or_too_old(
    dashboard: Dashboard, admin: httpx.AsyncClient, browser: PortalBrowser
) -> None:
    await add_developer(admin)
    database = dashboard.context.database
    for column, age in ((PortalSessionRow.last_seen_at, timedelta(minutes=31)),
                        (PortalSessionRow.expires_at, timedelta(seconds=1))):
        await browser.sign_in(EMAIL, PASSWORD)
        assert await signed_in(browser)
        async with database.transaction() as session:
            await session.execute(update(PortalSessionRow).values({column: now() - age}))
        assert not await signed_in(browser)
        assert await sessions(dashboard) == []
    # Busy sessions stay: using one moves its idle deadline.
    await browser.sign_in(EMAIL, PASSWORD)
    async with database.transaction() as session:
        await session.execute(update(PortalSessionRow).values(last_seen_at=now() - timedelta(minutes=20)))
    assert await signed_in(browser)
    [row] = await sessions(dashboard)
    assert now() - row.last_seen_at < timedelta(minutes=1)


async def test_a_developer_disabled_by_an_admin_loses_access_at_once(
    dashboard: Dashboard, admin: httpx.AsyncClient, browser: PortalBrowser
) -> None:
    developer_id = await add_developer(admin)
    await browser.sign_in(EMAIL, PASSWORD)
    assert await signed_in(browser)
    disabled = await admin.patch(f"/api/v1/developers/{developer_id}", json={"status": "disabled"})
    assert disabled.status_code == 200, disabled.text
    assert not await signed_in(browser)
    assert await sessions(dashboard) == []
    await admin.patch(f"/api/v1/developers/{developer_id}", json={"status": "active"})
    assert not await signed_in(browser)  # the ended session does not come back


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/portal/", "/portal/\\evil",
                                    "/api/v1/apis", "/portal/logout", "javascript:alert(1)"])
async def test_sign_in_returns_only_to_portal_pages(
    admin: httpx.AsyncClient, browser: PortalBrowser, target: str
) -> None:
    await add_developer(admin)
    answer = await browser.sign_in(EMAIL, PASSWORD, next=target)
    assert answer.response.headers["location"] == "/portal/clients"


async def test_sign_in_returns_to_the_page_asked_for(admin: httpx.AsyncClient,
                                                     browser: PortalBrowser) -> None:
    await add_developer(admin)
    sent = await browser.get("/portal/tokens")
    assert sent.response.headers["location"] == "/portal/login?next=/portal/tokens"
    form = await browser.get(sent.response.headers["location"])
    assert form.value("next") == "/portal/tokens"
    answer = await browser.post("/portal/login", {"csrf_token": form.csrf_token, "email": EMAIL,
                                                  "password": PASSWORD, "next": "/portal/tokens"})
    assert answer.response.headers["location"] == "/portal/tokens"
