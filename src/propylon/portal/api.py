"""The developer JSON API under ``/portal/api/v1``: catalogue, OAuth clients, API tokens.

Developers authenticate with a developer API token (``Authorization: Bearer ppd_…``), created by
``POST /portal/api/v1/tokens`` with their email and password (HTTP Basic), listed by ``GET`` and
revoked by ``DELETE /portal/api/v1/tokens/{id}`` (``portal.developer_tokens``; tokens expire,
after 90 days by default). Only ``active`` developers get or use tokens; every authentication
failure is the same 401, and failed password attempts are throttled like admin logins (per email
and per address; keys of their own). A developer sees and changes only their own clients and
tokens: another developer's is a 404.

Failures at the identity provider reach the developer as a clear, generic message (``idp_error``,
``idp_timeout``); the IdP's own ``error``/``error_description`` is kept in the client record's
``last_error``, which admins read in ``GET /api/v1/oauth-clients/{id}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import shlex
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from propylon.dashboard.changes import Actor, now
from propylon.dashboard.context import DashboardContext, get_context
from propylon.dashboard.errors import ApiError
from propylon.dashboard.oauth_clients import ClientDeletion
from propylon.dashboard.resources.portal_settings import load_portal_settings
from propylon.dashboard.resources.store import load_state
from propylon.portal.catalogue import CatalogueItem, published_catalogue
from propylon.portal.developer_tokens import (
    DEFAULT_TOKEN_DAYS,
    DEVELOPER_TOKEN_PREFIX,
    MAX_TOKEN_DAYS,
    DeveloperTokenView,
    create_developer_token,
    list_developer_tokens,
    revoke_developer_token,
)
from propylon.portal.registration import (
    AlreadyRegistered,
    NewClient,
    RegistrationRequest,
    delete_client,
    own_client,
    register_client,
    update_client,
)
from propylon.portal.rotation import rotate_client_secret
from propylon.storage.sql.schema import DeveloperRow, DeveloperTokenRow, OAuthClientRow
from propylon.web.credentials import token_digest, verify_password

__all__ = [
    "DEVELOPER_TOKEN_PREFIX", "ClientCreated", "DeveloperClient", "DeveloperTokenView",
    "client_view", "create_developer_token", "credentials_for",
    "list_developer_tokens", "portal_api_router", "require_developer", "revoke_developer_token",
]

Context = Annotated[DashboardContext, Depends(get_context)]
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
RecordId = Annotated[str, Path(max_length=64, pattern=TEXT_PATTERN, description="The client record's id.")]
_THROTTLE_KEY = "developer:"
"""Prefix of the throttle keys, so a developer's email never shares a counter with an admin name."""


def unauthorized() -> ApiError:
    """The one 401 of every developer authentication failure."""
    return ApiError(401, "unauthorized", "developer credentials required: a developer API token "
                    "(Bearer ppd_…), or email and password (Basic) to create one",
                    headers={"WWW-Authenticate": 'Bearer realm="propylon-portal"'})


async def require_developer(request: Request, context: Context) -> Actor:
    """The active developer behind a ``Bearer ppd_…`` token."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(DEVELOPER_TOKEN_PREFIX) or len(token) > 200:
        raise unauthorized()
    async with context.database.transaction() as session:
        found = (await session.execute(
            select(DeveloperTokenRow, DeveloperRow)
            .join(DeveloperRow, DeveloperRow.id == DeveloperTokenRow.developer_id)
            .where(DeveloperTokenRow.token_digest == token_digest(token))
        )).first()
        current = now()
        if found is None:
            raise unauthorized()
        row, developer = found
        if row.revoked_at is not None or developer.status != "active" or (
                row.expires_at is not None and row.expires_at <= current):
            raise unauthorized()
        row.last_used_at = current
        return Actor("developer", developer.email, developer.id)


DeveloperActor = Annotated[Actor, Depends(require_developer)]


class TokenRequest(BaseModel):
    """Options of a new developer API token."""

    name: str = Field(default="api", min_length=1, max_length=200, pattern=TEXT_PATTERN)
    expires_in_days: int = Field(default=DEFAULT_TOKEN_DAYS, ge=1, le=MAX_TOKEN_DAYS,
                                 description="Days until the token expires.")


class TokenCreated(BaseModel):
    """A new developer API token: shown once."""

    id: str
    name: str
    token: str = Field(description="Send as `Authorization: Bearer <token>`; shown only now.")
    prefix: str
    created_at: datetime
    expires_at: datetime | None


class DeveloperClient(BaseModel):
    """One of the developer's OAuth clients (never a secret)."""

    id: str
    client_id: str | None
    name: str
    status: str
    catalogue_entry_ids: list[str]
    redirect_uris: list[str]
    grant_types: list[str]
    problem: str | None = Field(description="Why a failed client failed, in general terms.")
    created_at: datetime
    updated_at: datetime


class ClientCreated(BaseModel):
    """A registered client with its secret: shown once, never stored."""

    id: str
    client_id: str
    client_secret: str | None
    client_secret_expires_at: int = Field(description="0 for never.")
    token_endpoint: str | None
    curl_token: str | None = Field(description="Get an access token (client_credentials).")
    curl_call: list[str] = Field(description="Call each API through the gateway with that token.")
    replaced: bool = Field(default=False, description="Secret rotation only: the IdP cannot rotate "
                           "secrets, so the client was replaced by a new one with a new client_id "
                           "(the old one is revoked).")


class ClientUpdate(BaseModel):
    """Changes to a client (omitted fields stay)."""

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=TEXT_PATTERN)
    redirect_uris: list[Annotated[str, Field(max_length=2000, pattern=TEXT_PATTERN)]] | None = Field(
        default=None, max_length=20)


def client_view(row: OAuthClientRow) -> DeveloperClient:
    """The developer's view of ``row``."""
    metadata: dict[str, Any] = row.metadata_ or {}
    problem = None
    if row.status == "failed":
        problem = "the registration did not complete; delete this client and register again"
    elif row.status == "deleting":
        problem = "the client is revoked; its deletion at the identity provider is not confirmed yet"
    return DeveloperClient(
        id=row.id, client_id=row.client_id, name=row.name, status=row.status,
        catalogue_entry_ids=list(row.catalogue_entry_ids or ()),
        redirect_uris=[str(uri) for uri in metadata.get("redirect_uris") or ()],
        grant_types=[str(grant) for grant in metadata.get("grant_types") or ()],
        problem=problem, created_at=row.created_at, updated_at=row.updated_at,
    )


async def credentials_for(context: DashboardContext, new: NewClient) -> ClientCreated:
    """What a developer sees once after a registration or a secret rotation: the credentials, the
    curl that gets a token, and one curl per API through the gateway (the portal settings'
    ``gateway_url``, else the placeholder ``$GATEWAY_URL``)."""
    token_endpoint = new.plan.identity_provider.token_endpoint
    curl_token = None
    if token_endpoint is not None and new.client_secret is not None:
        data = ["-d", "grant_type=client_credentials"]
        if new.plan.client.scope:
            data += ["-d", f"scope={new.plan.client.scope}"]
        curl_token = shlex.join(["curl", "-u", f"{new.client_id}:{new.client_secret}", *data,
                                 token_endpoint])
    async with context.database.sessions() as session:
        apis = (await load_state(session, with_clients=False)).apis
    gateway = (await load_portal_settings(context)).gateway_url
    paths = [apis[api_id].listen_path for entry in new.plan.entries for api_id in entry.api_ids
             if api_id in apis]
    # The token stays a shell variable (double quotes expand it); a known URL is quoted as a word.
    calls = ['curl -H "Authorization: Bearer $ACCESS_TOKEN" '
             + (shlex.quote(gateway + path) if gateway else f'"$GATEWAY_URL{path}"')
             for path in dict.fromkeys(paths)]
    return ClientCreated(id=new.record_id, client_id=new.client_id, client_secret=new.client_secret,
                         client_secret_expires_at=new.client_secret_expires_at,
                         token_endpoint=token_endpoint, curl_token=curl_token, curl_call=calls,
                         replaced=new.replaced)


async def _basic_developer(context: DashboardContext, request: Request) -> DeveloperRow:
    scheme, _, credentials = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        raise unauthorized()
    try:
        email, sep, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise unauthorized() from exc
    if not sep:
        raise unauthorized()
    email = email.strip().lower()  # stored lower-case (dashboard.developers)
    address = request.client.host if request.client else None
    throttle = context.login_throttle
    throttle.check(_THROTTLE_KEY + email, address)
    developer = None
    if "\x00" not in email and len(email) <= 320:
        async with context.database.sessions() as session:
            developer = await session.scalar(select(DeveloperRow).where(DeveloperRow.email == email))
    stored = developer.password_hash if developer is not None else None
    matches = await asyncio.to_thread(verify_password, stored, password)
    if not matches or developer is None or developer.status != "active":
        throttle.failed(_THROTTLE_KEY + email, address)
        raise unauthorized()
    throttle.succeeded(_THROTTLE_KEY + email)
    return developer


def portal_api_router() -> APIRouter:
    """The ``/portal/api/v1`` routes."""
    router = APIRouter(prefix="/portal/api/v1", tags=["developer portal"])
    auth_errors: dict[int | str, dict[str, Any]] = {401: {"description": "Not authenticated."}}
    idp_errors: dict[int | str, dict[str, Any]] = {
        **auth_errors, 404: {}, 409: {}, 422: {}, 502: {"description": "The IdP refused or failed."},
        503: {}, 504: {"description": "The IdP did not answer in time."}}

    @router.post("/tokens", status_code=201, summary="Create a developer API token (HTTP Basic)",
                 responses={**auth_errors, 429: {"description": "Too many failed attempts."}})
    async def create_token(request: Request, context: Context, response: Response,
                           body: TokenRequest | None = None) -> TokenCreated:
        developer = await _basic_developer(context, request)
        options = body if body is not None else TokenRequest()
        row, token = await create_developer_token(context, developer, options.name,
                                                  expires_in_days=options.expires_in_days)
        response.headers["Cache-Control"] = "no-store"
        return TokenCreated(id=row.id, name=row.name, token=token, prefix=row.prefix,
                            created_at=row.created_at, expires_at=row.expires_at)

    @router.get("/tokens", summary="List my developer API tokens (never the tokens themselves)",
                responses=auth_errors)
    async def list_tokens(developer: DeveloperActor, context: Context) -> list[DeveloperTokenView]:
        return await list_developer_tokens(context, developer.id)

    @router.delete("/tokens/{token_id}", summary="Revoke one of my developer API tokens",
                   responses={**auth_errors, 404: {}})
    async def revoke_token(token_id: RecordId, developer: DeveloperActor,
                           context: Context) -> DeveloperTokenView:
        return await revoke_developer_token(context, developer.id, token_id)

    @router.get("/catalogue", summary="List the published catalogue", responses=auth_errors)
    async def catalogue(_developer: DeveloperActor, context: Context) -> list[CatalogueItem]:
        return [listing.item for listing in await published_catalogue(context)]

    @router.post("/clients", status_code=201, summary="Register an OAuth client (DCR)",
                 responses={**idp_errors, 409: {"description": "This Idempotency-Key was used."}})
    async def create_client(
        body: RegistrationRequest, developer: DeveloperActor, context: Context, response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=200, pattern=TEXT_PATTERN)] = None,
    ) -> ClientCreated:
        key = idempotency_key or str(uuid.uuid4())
        try:
            new = await register_client(context, developer, body, key)
        except AlreadyRegistered as exc:
            row = await own_client(context, developer.id, exc.record_id)
            return JSONResponse(status_code=409, content={  # type: ignore[return-value]
                "error": "already_registered",
                "message": "this Idempotency-Key already registered a client; its secret was shown "
                "only then", "client": client_view(row).model_dump(mode="json")})
        response.headers["Cache-Control"] = "no-store"
        return await credentials_for(context, new)

    @router.get("/clients", summary="List my OAuth clients", responses=auth_errors)
    async def list_clients(developer: DeveloperActor, context: Context) -> list[DeveloperClient]:
        async with context.database.sessions() as session:
            rows = (await session.scalars(
                select(OAuthClientRow).where(OAuthClientRow.developer_id == developer.id)
                .order_by(OAuthClientRow.created_at, OAuthClientRow.id))).all()
        return [client_view(row) for row in rows]

    @router.get("/clients/{record_id}", summary="Inspect one of my OAuth clients",
                responses={**auth_errors, 404: {}})
    async def get_client(record_id: RecordId, developer: DeveloperActor,
                         context: Context) -> DeveloperClient:
        return client_view(await own_client(context, developer.id, record_id))

    @router.patch("/clients/{record_id}", summary="Rename a client or change its redirect URIs",
                  responses=idp_errors)
    async def patch_client(record_id: RecordId, body: ClientUpdate,
                           developer: DeveloperActor, context: Context) -> DeveloperClient:
        row = await update_client(context, developer, record_id, name=body.name,
                                  redirect_uris=body.redirect_uris)
        return client_view(row)

    @router.post("/clients/{record_id}/rotate-secret", summary="Get a new client secret",
                 description="Shown once. On IdPs that cannot rotate secrets through DCR (generic, "
                 "Keycloak, Gluu) the client is replaced by a new one with the same metadata: the "
                 "answer's `client_id` is new, `replaced` is true, and the old client is revoked.",
                 responses=idp_errors)
    async def rotate_secret(record_id: RecordId, developer: DeveloperActor, context: Context,
                            response: Response) -> ClientCreated:
        new = await rotate_client_secret(context, developer, record_id)
        response.headers["Cache-Control"] = "no-store"
        return await credentials_for(context, new)

    @router.delete("/clients/{record_id}", summary="Delete a client (revoked at once)",
                   responses={**auth_errors, 404: {}, 409: {},
                              202: {"model": ClientDeletion, "description": "Revoked; the IdP has "
                                    "not confirmed the deletion yet."}})
    async def remove_client(record_id: RecordId,
                            developer: DeveloperActor, context: Context,
                            response: Response) -> ClientDeletion:
        result = await delete_client(context, developer, record_id)
        response.status_code = 202 if result.status == "deleting" else 200
        return result

    return router
