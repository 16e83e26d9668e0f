"""Portal pages, catalogue: the published entries with their APIs, limits in words and links, the
same entries the JSON API lists; unpublished entries nowhere; documentation shown as text."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from tests.dashboard.conftest import Dashboard
from tests.portal.conftest import EMAIL, PASSWORD, add, add_developer, developer_token
from tests.support.portal_pages import PortalBrowser


@pytest.fixture
async def browser(dashboard: Dashboard) -> AsyncIterator[PortalBrowser]:
    client = PortalBrowser(dashboard.app)
    yield client
    await client.aclose()


@pytest.fixture
async def catalogue(admin: httpx.AsyncClient) -> None:
    """Two APIs, a policy with every limit, a documented entry, a plain one, a hidden one and one
    without registration (no IdP is called here)."""
    await add(admin, "/api/v1/identity-providers", {
        "id": "main", "issuer": "http://127.0.0.1:9/idp", "registration_endpoint": "http://127.0.0.1:9/r"})
    for api in ("orders", "stock"):
        await add(admin, "/api/v1/apis", {
            "id": api, "name": api.title(), "listen_path": f"/{api}/", "upstream": "http://127.0.0.1:9/",
            "auth": {"type": "jwt", "identity_provider": "main"}})
    await add(admin, "/api/v1/policies", {
        "id": "gold", "rate": {"requests": 10, "per_seconds": 1},
        "quota": {"max": 1000, "renewal_seconds": 3600}, "key_expires_in_seconds": 86400,
        "access_rights": {"*": {}}})
    await add(admin, "/api/v1/policies", {"id": "free", "access_rights": {"*": {}}})
    await add(admin, "/api/v1/catalogue", {
        "id": "orders-entry", "name": "Orders <API>", "description": "All orders & more",
        "api_ids": ["orders", "stock"], "policy_id": "gold",
        "openapi_url": "https://docs.example/orders.json",
        "documentation": "# Orders\n\nCall <script>alert(1)</script> carefully."})
    await add(admin, "/api/v1/catalogue", {"id": "stock-entry", "name": "Stock", "api_ids": ["stock"],
                                           "policy_id": "free", "dcr_enabled": False})
    await add(admin, "/api/v1/catalogue", {"id": "hidden", "name": "Hidden entry", "api_ids": ["orders"],
                                           "policy_id": "gold", "published": False})


@pytest.mark.usefixtures("catalogue")
async def test_the_catalogue_shows_each_published_entry(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, browser: PortalBrowser
) -> None:
    shown = await browser.get("/portal/catalogue")  # public: no sign-in needed
    assert (shown.status, shown.h1()) == (200, "API catalogue")
    entries = {entry.attrs["id"]: entry for entry in shown.with_class("catalogue-entry")}
    assert set(entries) == {"entry-orders-entry", "entry-stock-entry"}
    assert "Hidden entry" not in shown.response.text
    orders = entries["entry-orders-entry"]

    def texts(element_class: str) -> list[str]:
        return [e.text() for e in orders.iter() if element_class in e.classes()]

    assert texts("entry-name") == ["Orders <API>"]
    assert texts("entry-description") == ["All orders & more"]
    assert [li.text() for ul in orders.iter() if "entry-apis" in ul.classes()
            for li in ul.iter() if li.tag == "li"] == ["Orders at /orders/", "Stock at /stock/"]
    assert [li.text() for ul in orders.iter() if "entry-limits" in ul.classes()
            for li in ul.iter() if li.tag == "li"] == [
        "at most 10 requests per second", "quota of 1000 requests per hour",
        "access expires after a day"]
    links = {e.attrs["class"]: e.attrs["href"] for e in orders.iter() if e.tag == "a" and "class" in e.attrs}
    assert links == {"openapi-link": "https://docs.example/orders.json",
                     "docs-link": "/portal/catalogue/orders-entry"}
    stock = entries["entry-stock-entry"]
    assert "no rate limit or quota" in stock.text()
    assert "registration is not offered" in stock.text()
    assert not [e for e in stock.iter() if "docs-link" in e.classes()]

    # The same entries, names and limits as the JSON API.
    await add_developer(admin)
    token = await developer_token(anonymous, EMAIL, PASSWORD)
    api = await anonymous.get("/portal/api/v1/catalogue", headers={"Authorization": f"Bearer {token}"})
    def shown_as(entry: str) -> tuple[str, list[str]]:
        element = entries[f"entry-{entry}"]
        name = next(e.text() for e in element.iter() if "entry-name" in e.classes())
        limits = [li.text() for ul in element.iter() if "entry-limits" in ul.classes()
                  for li in ul.iter() if li.tag == "li"]
        return name, limits

    assert [(item["name"], item["limits"]) for item in api.json()] == \
        [shown_as(item["id"]) for item in api.json()]
    assert {f"entry-{item['id']}" for item in api.json()} == set(entries)


@pytest.mark.usefixtures("catalogue")
async def test_an_entry_page_shows_its_documentation_as_text(browser: PortalBrowser) -> None:
    shown = await browser.get("/portal/catalogue/orders-entry")
    assert (shown.status, shown.h1()) == (200, "Orders <API>")
    documentation = next(e for e in shown.root.iter() if "documentation" in e.classes())
    assert documentation.text() == "# Orders Call <script>alert(1)</script> carefully."
    assert "<script>" not in shown.response.text
    for missing in ("hidden", "nope", "x%00y", "a" * 300):
        page = await browser.get(f"/portal/catalogue/{missing}")
        assert page.status == 404, missing
        assert page.h1() == "Not found"


async def test_an_empty_catalogue_says_so(browser: PortalBrowser) -> None:
    shown = await browser.get("/portal/catalogue")
    assert shown.status == 200
    assert shown.with_class("catalogue-entry") == []
    assert "No APIs are published yet." in shown.response.text
