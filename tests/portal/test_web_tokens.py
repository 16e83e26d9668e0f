"""Portal pages, developer API tokens: created and shown once, listed without the token, usable on
the JSON API, revoked at once; another developer's token cannot be revoked."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select
from tests.dashboard.conftest import Dashboard
from tests.portal.conftest import EMAIL, PASSWORD, add_developer
from tests.support.portal_pages import PortalBrowser

from propylon.portal.developer_tokens import create_developer_token
from propylon.storage.sql.schema import DeveloperRow, DeveloperTokenRow
from propylon.web.credentials import token_digest


@pytest.fixture
async def browser(dashboard: Dashboard, admin: httpx.AsyncClient) -> AsyncIterator[PortalBrowser]:
    await add_developer(admin)
    client = PortalBrowser(dashboard.app)
    assert (await client.sign_in(EMAIL, PASSWORD)).status == 303
    yield client
    await client.aclose()


async def test_a_token_is_shown_once_and_works_until_revoked(
    dashboard: Dashboard, anonymous: httpx.AsyncClient, browser: PortalBrowser
) -> None:
    empty = await browser.get("/portal/tokens")
    assert (empty.status, empty.h1(), empty.with_class("token-row")) == (200, "API tokens", [])
    created = await browser.submit("/portal/tokens", "/portal/tokens", {"name": "ci <robot>"})
    assert created.status == 200
    assert created.response.headers["cache-control"] == "no-store"
    token = created.text_of("new-token")
    assert token.startswith("ppd_")
    async with dashboard.context.database.sessions() as session:
        [row] = (await session.scalars(select(DeveloperTokenRow))).all()
    assert (row.name, row.token_digest) == ("ci <robot>", token_digest(token))
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await anonymous.get("/portal/api/v1/clients", headers=bearer)).status_code == 200

    listed = await browser.get("/portal/tokens")
    assert listed.by_id("new-token") is None
    assert token not in listed.response.text
    [entry] = listed.with_class("token-row")
    assert entry.attrs["data-id"] == row.id
    assert "ci <robot>" in entry.text()
    assert token[:12] in entry.text()

    revoked = await browser.post(f"/portal/tokens/{row.id}/revoke", {"csrf_token": listed.csrf_token})
    assert (revoked.status, revoked.response.headers["location"]) == (303, "/portal/tokens")
    after = await browser.get("/portal/tokens")
    assert after.text_of("flash") == "The token is revoked."
    assert "revoked" in after.with_class("token-row")[0].text()
    assert (await anonymous.get("/portal/api/v1/clients", headers=bearer)).status_code == 401


async def test_token_names_are_checked(dashboard: Dashboard, browser: PortalBrowser) -> None:
    for name, problem in (("", "Name is required"), ("x" * 201, "Name must be at most 200 characters"),
                          ("a\x00b", "Name must not contain control characters")):
        refused = await browser.submit("/portal/tokens", "/portal/tokens", {"name": name})
        assert (refused.status, refused.errors()) == (422, [problem])
        assert refused.by_id("new-token") is None
    async with dashboard.context.database.sessions() as session:
        assert (await session.scalars(select(DeveloperTokenRow))).all() == []


async def test_another_developers_token_cannot_be_revoked(
    dashboard: Dashboard, admin: httpx.AsyncClient, browser: PortalBrowser
) -> None:
    other_id = await add_developer(admin, "other@example.com")
    async with dashboard.context.database.sessions() as session:
        other = await session.get(DeveloperRow, other_id)
    assert other is not None
    row, _token = await create_developer_token(dashboard.context, other, "theirs")
    token = (await browser.get("/portal/tokens")).csrf_token
    for token_id in (row.id, "nope", "x" * 300):
        refused = await browser.post(f"/portal/tokens/{token_id}/revoke", {"csrf_token": token})
        assert refused.status == 404, token_id
    assert "theirs" not in (await browser.get("/portal/tokens")).response.text
    async with dashboard.context.database.sessions() as session:
        stored = await session.get(DeveloperTokenRow, row.id)
    assert stored is not None
    assert stored.revoked_at is None
