"""``/api/v1/portal-settings``: the global portal and DCR defaults."""

from __future__ import annotations

import httpx

from propylon.dashboard.resources.portal_settings import load_portal_settings
from propylon.domain.resources import PortalSettings
from propylon.storage.sql.database import Database
from tests.dashboard.conftest import Dashboard
from tests.dashboard.documents import audit, locations, version

BASE = "/api/v1/portal-settings"


async def test_defaults_until_saved(admin: httpx.AsyncClient) -> None:
    response = await admin.get(BASE)
    assert response.status_code == 200
    assert response.json() == {
        "portal_name": "Developer portal", "dcr_enabled": True, "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic", "response_types": [], "scope": None,
        "require_developer_approval": False, "oauth_redirect_uri_separator": ",", "gateway_url": None,
        "updated_at": None,
    }


async def test_replace(admin: httpx.AsyncClient, database: Database, dashboard: Dashboard) -> None:
    assert await load_portal_settings(dashboard.context) == PortalSettings()
    start = await version(database)
    response = await admin.put(BASE, json={
        "portal_name": "Acme APIs", "dcr_enabled": False,
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_post", "scope": "openid profile",
        "require_developer_approval": True, "oauth_redirect_uri_separator": ";",
    })
    assert response.status_code == 200, response.text
    assert response.json()["updated_at"] is not None
    stored = (await admin.get(BASE)).json()
    assert stored == response.json()
    assert stored["grant_types"] == ["authorization_code", "refresh_token"]
    in_force = await load_portal_settings(dashboard.context)
    assert in_force.require_developer_approval is True
    assert in_force.oauth_redirect_uri_separator == ";"

    # PUT replaces the whole document: what is left out is back to its default.
    again = await admin.put(BASE, json={"portal_name": "Acme APIs"})
    assert again.json()["dcr_enabled"] is True
    assert again.json()["oauth_redirect_uri_separator"] == ","
    assert await version(database) == start + 2
    entries = [e for e in await audit(database) if e.resource_type == "portal-settings"]
    assert [e.config_version for e in entries] == [start + 1, start + 2]
    assert entries[0].details["document"]["portal_name"] == "Acme APIs"


async def test_problems_are_reported_together(admin: httpx.AsyncClient) -> None:
    response = await admin.put(BASE, json={
        "portal_name": "", "grant_types": [], "token_endpoint_auth_method": "nope",
        "response_types": ["Code!"], "oauth_redirect_uri_separator": "", "dcr_enabled": "maybe",
        "extra": 1,
    })
    assert response.status_code == 422
    assert {"portal_name", "grant_types", "token_endpoint_auth_method", "response_types.0",
            "oauth_redirect_uri_separator", "dcr_enabled", "extra"} <= locations(response)
    assert (await admin.get(BASE)).json()["updated_at"] is None


async def test_admin_credentials_are_required(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get(BASE)).status_code == 401
    assert (await anonymous.put(BASE, json={})).status_code == 401
    assert (await anonymous.get(BASE, headers={"Authorization": "Bearer ppl_x"})).status_code == 401
