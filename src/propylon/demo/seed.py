"""The demo ``propylon up`` seeds on first start, written through the dashboard's admin API.

Going through the API (not the database) means the seed is validated and audited like any admin's
work, and gateways learn of it the usual way. The seed is: the embedded IdP registered with
discovery and an initial access token, a JWT-protected echo API bound to it, a policy with visible
limits, a published catalogue entry offering dynamic client registration, the portal's gateway URL
for the copy-paste ``curl`` lines, and a demo developer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

IDP_ID = "embedded-idp"
API_ID = "echo"
POLICY_ID = "echo-starter"
ENTRY_ID = "echo-api"
LISTEN_PATH = "/echo/"
DEMO_DEVELOPER_EMAIL = "demo@example.com"
RATE_REQUESTS = 5
RATE_SECONDS = 10


class SeedError(Exception):
    """The admin API refused part of the seed; ``str()`` says which part and why."""


@dataclass(frozen=True)
class DemoPlan:
    """Where the parts of the demo live."""

    dashboard_url: str
    gateway_url: str
    issuer: str
    audience: str
    upstream_url: str
    admin_password: str
    developer_password: str


async def is_seeded(client: httpx.AsyncClient) -> bool:
    """Whether the demo IdP exists already (the seed ran before; restarts keep the data)."""
    response = await client.get(f"/api/v1/identity-providers/{IDP_ID}")
    if response.status_code == 404:
        return False
    _expect(response, 200, "reading the demo identity provider")
    return True


def _expect(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        raise SeedError(f"{what}: the dashboard answered {response.status_code}: {response.text[:500]}")
    if not response.content:
        return {}
    body: dict[str, Any] = response.json()
    return body


async def seed_demo(client: httpx.AsyncClient, plan: DemoPlan, initial_access_token: str) -> None:
    """Write the demo through ``client`` (an admin-authenticated client of the dashboard)."""
    _expect(await client.post("/api/v1/identity-providers", json={
        "id": IDP_ID, "name": "Embedded OpenID provider", "kind": "generic", "issuer": plan.issuer,
        "audience": plan.audience, "initial_access_token": initial_access_token,
    }), 201, "registering the embedded identity provider")
    _expect(await client.post(f"/api/v1/identity-providers/{IDP_ID}/discover"), 200,
            "discovering the embedded identity provider's endpoints")
    _expect(await client.post("/api/v1/apis", json={
        "id": API_ID, "name": "Echo API", "listen_path": LISTEN_PATH,
        "upstream": plan.upstream_url, "strip_listen_path": True,
        "auth": {"type": "jwt", "identity_provider": IDP_ID, "identity_claim": "client_id"},
    }), 201, "creating the echo API")
    _expect(await client.post("/api/v1/policies", json={
        "id": POLICY_ID, "name": "Starter",
        "rate": {"requests": RATE_REQUESTS, "per_seconds": RATE_SECONDS},
        "quota": {"max": 1000, "renewal_seconds": 86_400},
        "access_rights": {API_ID: {}},
    }), 201, "creating the starter policy")
    _expect(await client.post("/api/v1/catalogue", json={
        "id": ENTRY_ID, "name": "Echo API",
        "description": "Answers every request with what it received: method, path, headers. "
        "A good first API to call through the gateway.",
        "api_ids": [API_ID], "policy_id": POLICY_ID, "published": True, "dcr_enabled": True,
    }), 201, "publishing the catalogue entry")
    _expect(await client.put("/api/v1/portal-settings", json={
        "portal_name": "Propylon demo portal", "dcr_enabled": True,
        "grant_types": ["client_credentials"], "gateway_url": plan.gateway_url,
    }), 200, "setting up the portal")
    _expect(await client.post("/api/v1/developers", json={
        "email": DEMO_DEVELOPER_EMAIL, "name": "Demo Developer", "password": plan.developer_password,
    }), 201, "adding the demo developer")
