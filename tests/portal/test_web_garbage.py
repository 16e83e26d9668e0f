"""Portal pages, garbage in: missing fields, NUL and control characters, huge values, repeated
fields, files, JSON, too many fields, broken encodings, odd cookies and paths. Every answer is a
precise 4xx HTML page (never a 500, never JSON) and nothing is written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from tests.dashboard.conftest import Dashboard
from tests.portal.conftest import EMAIL, PASSWORD, add, add_developer
from tests.support.portal_pages import Page, PortalBrowser, page

from propylon.storage.sql.schema import DeveloperRow, DeveloperTokenRow, OAuthClientRow, PortalSessionRow


@pytest.fixture
async def browser(dashboard: Dashboard, admin: httpx.AsyncClient) -> AsyncIterator[PortalBrowser]:
    """Signed in, with a catalogue entry whose IdP is never reached (nothing valid is sent)."""
    await add(admin, "/api/v1/identity-providers", {
        "id": "main", "issuer": "http://127.0.0.1:9/idp", "registration_endpoint": "http://127.0.0.1:9/r"})
    await add(admin, "/api/v1/apis", {"id": "orders", "listen_path": "/orders/",
                                      "upstream": "http://127.0.0.1:9/",
                                      "auth": {"type": "jwt", "identity_provider": "main"}})
    await add(admin, "/api/v1/policies", {"id": "gold", "access_rights": {"*": {}}})
    await add(admin, "/api/v1/catalogue", {"id": "orders-entry", "name": "Orders", "api_ids": ["orders"],
                                           "policy_id": "gold"})
    await add_developer(admin)
    client = PortalBrowser(dashboard.app)
    assert (await client.sign_in(EMAIL, PASSWORD)).status == 303
    yield client
    await client.aclose()


async def counts(dashboard: Dashboard) -> tuple[int, ...]:
    async with dashboard.context.database.sessions() as session:
        return tuple([int(await session.scalar(select(func.count()).select_from(table)) or 0)
                      for table in (DeveloperRow, DeveloperTokenRow, OAuthClientRow, PortalSessionRow)])


def assert_page(shown: Page, status: int) -> None:
    assert shown.status == status, shown.response.text
    assert shown.response.headers["content-type"].startswith("text/html")
    assert shown.h1()


HUGE = "x" * 300_000
FORMS = {
    "/portal/signup": {"email": "g@example.com", "name": "G", "password": PASSWORD},
    "/portal/login": {"email": EMAIL, "password": PASSWORD},
    "/portal/account/password": {"current_password": PASSWORD, "new_password": "new password 12345"},
    "/portal/tokens": {"name": "t"},
    "/portal/clients": {"catalogue_entry_ids": "orders-entry", "name": "app", "redirect_uris": "",
                        "grant_type": "client_credentials", "idempotency_key": "0123456789abcdef"},
}


@pytest.mark.parametrize("action", list(FORMS))
async def test_bad_form_fields_are_422_or_400_and_write_nothing(
    dashboard: Dashboard, browser: PortalBrowser, action: str
) -> None:
    token = (await browser.get("/portal/tokens")).csrf_token
    if action in ("/portal/signup", "/portal/login"):
        await browser.submit("/portal/clients", "/portal/logout", {})
        token = (await browser.get(action)).csrf_token
    before = await counts(dashboard)
    valid: dict[str, Any] = FORMS[action]
    cases: list[tuple[dict[str, Any], int]] = [({}, 422)]
    for field in valid:
        cases += [
            ({**valid, field: "a\x00b"}, 422),
            ({**valid, field: "a\x1bb\x7f"}, 422),
            ({**valid, field: "y" * 60_000}, 422),
            ({**valid, field: HUGE}, 400),
        ]
        if field != "catalogue_entry_ids":
            cases.append(({**valid, field: ["one", "two"]}, 422))
    for data, status in cases:
        shown = await browser.post(action, {"csrf_token": token, **data})
        assert_page(shown, status)
        assert shown.errors(), shown.response.text
    # Files instead of text, and more fields than any form has.
    files = await browser.http.post(action, data={"csrf_token": token}, files={"name": ("a.txt", b"hi")})
    assert_page(page(files), 400)
    many = await browser.http.post(action, data={"csrf_token": token,
                                                 **{f"f{i}": "v" for i in range(300)}})
    assert_page(page(many), 400)
    assert await counts(dashboard) == before


async def test_bodies_that_are_not_forms(dashboard: Dashboard, browser: PortalBrowser) -> None:
    before = await counts(dashboard)
    token = (await browser.get("/portal/tokens")).csrf_token
    raw: list[tuple[dict[str, str], bytes]] = [
        ({"content-type": "application/json"}, b'{"csrf_token": "%s", "name": "t"}' % token.encode()),
        ({"content-type": "application/x-www-form-urlencoded"}, b"csrf_token=" + token.encode()
         + b"&name=%FF%FE%00"),
        ({"content-type": "application/x-www-form-urlencoded"}, b"csrf_token=" + token.encode()
         + b"&name=%zz%&name"),
        ({"content-type": "multipart/form-data; boundary=nope"}, b"--garbage--"),
        ({"content-type": "multipart/form-data"}, b"no boundary at all"),
        ({"content-type": "text/plain"}, b"\x00\x01\x02"),
    ]
    for headers, body in raw:
        answer = await browser.http.post("/portal/tokens", headers=headers, content=body)
        assert answer.status_code in (400, 403, 422), (headers, body, answer.text)
        assert answer.headers["content-type"].startswith("text/html")
    assert await counts(dashboard) == before


async def test_wizard_answers_that_cannot_be_registered(dashboard: Dashboard, browser: PortalBrowser) -> None:
    form = await browser.get("/portal/clients/new")
    valid = {"csrf_token": form.csrf_token, "idempotency_key": form.value("idempotency_key"),
             "catalogue_entry_ids": "orders-entry", "name": "app", "grant_type": "client_credentials"}
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({**valid, "catalogue_entry_ids": []}, ["APIs: choose at least one API"]),
        ({**valid, "catalogue_entry_ids": ["nope", "<x>"]},
         ["APIs (1): no published catalogue entry 'nope'", "APIs (2): no published catalogue entry '<x>'"]),
        ({**valid, "catalogue_entry_ids": [f"e{i}" for i in range(21)]}, ["APIs: choose at most 20"]),
        ({**valid, "grant_type": "password\u202e"}, ["Grant type: must be one of: client_credentials"]),
        ({**valid, "idempotency_key": "short"}, ["The form is incomplete: reload the page"]),
        ({**valid, "idempotency_key": ""}, ["The form is incomplete: reload the page"]),
        ({**valid, "redirect_uris": "\n".join(f"https://a.example/{i}" for i in range(21))},
         ["Redirect URIs: List should have at most 20 items after validation, not 21"]),
        ({**valid, "redirect_uris": "https://a.example/" + "p" * 2100},
         ["Redirect URIs (1): String should have at most 2000 characters"]),
    ]
    for data, errors in cases:
        shown = await browser.post("/portal/clients", data)
        assert_page(shown, 422)
        assert shown.errors() == errors
    async with dashboard.context.database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OAuthClientRow)) == 0


async def test_odd_paths_and_cookies(dashboard: Dashboard, browser: PortalBrowser) -> None:
    for path in ("/portal/clients/%00", "/portal/clients/%00/edit", "/portal/clients/..%2F..%2Fapi",
                 "/portal/clients/" + "9" * 65, "/portal/catalogue/%ff", "/portal/nothing/here",
                 "/portal/clients/x/y/z"):
        assert_page(await browser.get(path), 404)
    token = (await browser.get("/portal/tokens")).csrf_token
    for path in ("/portal/clients/%00/delete", "/portal/tokens/%00/revoke", "/portal/nothing"):
        assert_page(await browser.post(path, {"csrf_token": token}), 404)
    odd_next = await browser.http.get("/portal/login", params={"next": "\x00\r\nLocation: x"})
    assert odd_next.status_code == 200
    assert page(odd_next).named("next") == []
    assert (await browser.http.get("/portal/logout")).status_code == 404  # only POST signs out
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=dashboard.app),
                                 base_url="http://dashboard.test") as fresh:
        for cookies in ({"propylon_portal": "\x01" * 50}, {"propylon_portal": "a" * 5000},
                        {"propylon_portal_csrf": "'; DROP TABLE x"}, {"propylon_portal_flash": "<script>"}):
            fresh.cookies.clear()
            for name, value in cookies.items():
                fresh.headers["cookie"] = f"{name}={value}"
            answer = await fresh.get("/portal/clients/new")
            assert answer.status_code == 303, cookies
            login = await fresh.get("/portal/login")
            assert login.status_code == 200
            assert "<script>" not in login.text
