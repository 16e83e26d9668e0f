"""Fixtures of the developer-portal tests: the dashboard fixtures (both database backends), the real
gateway fixtures, one real npm ``oidc-provider`` per module, and a :class:`Portal` world set up
through the admin API (IdP, API, policy, catalogue entry, developer with a password)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.dashboard.conftest import Dashboard, admin, anonymous, dashboard
from tests.gateway.conftest import client, echo_port, start_gateway
from tests.support.oidc_provider import OidcProvider, start_oidc_provider

from propylon.dashboard.changes import Actor
from propylon.dashboard.snapshot import SqlSnapshotSource
from propylon.storage.sql.schema import OAuthClientRow

__all__ = ["admin", "anonymous", "client", "dashboard", "echo_port", "idp", "portal", "start_gateway"]

PASSWORD = "developer password 123"
EMAIL = "dev@example.com"


def basic(email: str, password: str) -> dict[str, str]:
    """An HTTP Basic ``Authorization`` header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    """The real third-party IdP (rotating registration access tokens on update, like Keycloak)."""
    provider = start_oidc_provider(rotate_registration_access_token=True)
    yield provider
    provider.stop()


@dataclass
class Portal:
    """A configured dashboard, a developer's token, and helpers."""

    dashboard: Dashboard
    idp: OidcProvider
    admin: httpx.AsyncClient
    developer: httpx.AsyncClient
    developer_id: str
    echo_port: int

    @property
    def actor(self) -> Actor:
        """The developer as the saga's actor."""
        return Actor("developer", EMAIL, self.developer_id)

    async def snapshot(self) -> dict[str, Any]:
        """The configuration gateways get now."""
        return (await SqlSnapshotSource(self.dashboard.context.database).snapshot()).config

    async def row(self, record_id: str) -> OAuthClientRow | None:
        """The client record."""
        async with self.dashboard.context.database.sessions() as session:
            return await session.get(OAuthClientRow, record_id)

    async def token(self, client_id: str, secret: str) -> httpx.Response:
        """A client_credentials request at the IdP's token endpoint."""
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            return await http.post(f"{self.idp.issuer}/token", auth=(client_id, secret),
                                   data={"grant_type": "client_credentials", "scope": "read"})


async def add(admin_client: httpx.AsyncClient, path: str, document: dict[str, Any]) -> dict[str, Any]:
    """POST to the admin API and insist on 201."""
    response = await admin_client.post(path, json=document)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def configure(admin_client: httpx.AsyncClient, idp: OidcProvider, echo: int, *,
                    idp_id: str = "npm", iat: str | None = None) -> None:
    """IdP ``idp_id``, API ``orders`` (JWT, that IdP), policy ``reader`` and entry ``orders-entry``."""
    await add(admin_client, "/api/v1/identity-providers", {
        "id": idp_id, "issuer": idp.issuer, "kind": "generic", "audience": idp.resource,
        "registration_endpoint": f"{idp.issuer}/reg", "token_endpoint": f"{idp.issuer}/token",
        "jwks_uri": f"{idp.issuer}/jwks", "initial_access_token": iat or idp.initial_access_token,
    })
    await add(admin_client, "/api/v1/apis", {
        "id": "orders", "name": "Orders", "listen_path": "/orders/",
        "upstream": f"http://127.0.0.1:{echo}/", "strip_listen_path": True,
        "auth": {"type": "jwt", "identity_provider": idp_id, "identity_claim": "client_id"},
    })
    await add(admin_client, "/api/v1/policies", {
        "id": "reader", "name": "Reader", "rate": {"requests": 100, "per_seconds": 1},
        "quota": {"max": 5000, "renewal_seconds": 86400},
        "access_rights": {"orders": {"methods": ["GET"]}},
    })
    await add(admin_client, "/api/v1/catalogue", {
        "id": "orders-entry", "name": "Orders", "description": "Order data", "api_ids": ["orders"],
        "policy_id": "reader",
    })


async def developer_token(anonymous_client: httpx.AsyncClient, email: str = EMAIL,
                          password: str = PASSWORD) -> str:
    """A developer API token (POST /portal/api/v1/tokens)."""
    response = await anonymous_client.post("/portal/api/v1/tokens", headers=basic(email, password))
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def add_developer(admin_client: httpx.AsyncClient, email: str = EMAIL, status: str = "active") -> str:
    """A developer with :data:`PASSWORD`; returns its id."""
    body = await add(admin_client, "/api/v1/developers", {"email": email, "name": "Dev",
                                                          "password": PASSWORD, "status": status})
    developer_id: str = body["id"]
    return developer_id


@pytest.fixture
async def portal(dashboard: Dashboard, admin: httpx.AsyncClient, anonymous: httpx.AsyncClient,
                 idp: OidcProvider, echo_port: int) -> AsyncIterator[Portal]:
    """Everything configured, and an HTTP client holding the developer's token."""
    await configure(admin, idp, echo_port)
    developer_id = await add_developer(admin)
    token = await developer_token(anonymous)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=dashboard.app), base_url="http://dashboard.test",
        headers={"Authorization": f"Bearer {token}"},
    ) as developer:
        yield Portal(dashboard, idp, admin, developer, developer_id, echo_port)
