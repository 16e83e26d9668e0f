"""Builders of admin-API documents for the resource tests, and small helpers to read what a write
left in the database (config version, audit log)."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from propylon.dashboard.changes import current_version
from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import AuditEntryRow

ISSUER = "https://idp.example.com/realms/demo"


def idp_doc(ident: str = "main", issuer: str = ISSUER, **extra: Any) -> dict[str, Any]:
    """An identity provider document."""
    return {"id": ident, "issuer": issuer, "name": f"IdP {ident}", "kind": "keycloak", **extra}


def api_doc(ident: str = "orders", *, idp: str = "main", policies: tuple[str, ...] = (),
            listen_path: str | None = None, **extra: Any) -> dict[str, Any]:
    """An API with JWT auth against ``idp``."""
    return {
        "id": ident, "name": ident.title(), "listen_path": listen_path or f"/{ident}/",
        "upstream": "http://127.0.0.1:9/", "strip_listen_path": True,
        "auth": {"type": "jwt", "identity_provider": idp, "default_policies": list(policies)},
        **extra,
    }


def policy_doc(ident: str = "gold", apis: tuple[str, ...] = ("orders",), **extra: Any) -> dict[str, Any]:
    """A policy granting every method and path of ``apis``."""
    return {
        "id": ident, "name": ident.title(), "rate": {"requests": 10, "per_seconds": 1},
        "quota": {"max": 1000, "renewal_seconds": 3600},
        "access_rights": {api: {} for api in apis}, **extra,
    }


def entry_doc(ident: str = "orders-entry", apis: tuple[str, ...] = ("orders",), policy: str = "gold",
              **extra: Any) -> dict[str, Any]:
    """A catalogue entry."""
    return {"id": ident, "name": "Orders", "api_ids": list(apis), "policy_id": policy, **extra}


async def created(client: httpx.AsyncClient, path: str, document: dict[str, Any]) -> dict[str, Any]:
    """POST ``document`` and insist on 201."""
    response = await client.post(path, json=document)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def seed(client: httpx.AsyncClient) -> None:
    """IdP ``main``, API ``orders`` and policy ``gold`` (granting ``orders``)."""
    await created(client, "/api/v1/identity-providers", idp_doc())
    await created(client, "/api/v1/apis", api_doc())
    await created(client, "/api/v1/policies", policy_doc())


async def version(database: Database) -> int:
    """The configuration version in the database."""
    async with database.sessions() as session:
        return await current_version(session)


async def audit(database: Database) -> list[AuditEntryRow]:
    """The audit log, oldest first."""
    async with database.sessions() as session:
        return list((await session.scalars(select(AuditEntryRow).order_by(AuditEntryRow.id))).all())


def locations(response: httpx.Response) -> set[str]:
    """The ``location`` of every problem in an error body."""
    return {problem["location"] for problem in response.json().get("problems", [])}


async def insert_client(
    database: Database, *, client_id: str | None = "client-1", policies: tuple[str, ...] = ("gold",),
    idp: str = "main", status: str = "active", record_id: str = "rec-1", developer_id: str = "dev-1",
) -> None:
    """An OAuth client record (and its developer) written straight to the database, as the portal's
    registration would leave it."""
    from propylon.dashboard.changes import now
    from propylon.storage.sql.schema import DeveloperRow, OAuthClientRow

    async with database.transaction() as session:
        if await session.get(DeveloperRow, developer_id) is None:
            session.add(DeveloperRow(id=developer_id, email=f"{developer_id}@example.com", name="Dev",
                                     status="active", password_hash=None, created_at=now(),
                                     updated_at=now()))
            await session.flush()
        session.add(OAuthClientRow(
            id=record_id, client_id=client_id, developer_id=developer_id, identity_provider_id=idp,
            name="client", status=status, catalogue_entry_ids=[], policy_ids=list(policies),
            metadata_={}, registration_client_uri=None, registration_access_token_enc=None,
            idempotency_key=f"key-{record_id}", last_error=None, created_at=now(), updated_at=now(),
        ))
