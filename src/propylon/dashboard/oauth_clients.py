"""OAuth clients in the admin API (``/api/v1/oauth-clients``): list, inspect, delete.

Clients are registered by the portal's DCR wizard (RFC 7591); here an admin sees them and deletes
them. Deleting is two steps, in this order on purpose:

1. In one transaction: the client id is **tombstoned** (``client_tombstones``; the snapshot's
   ``revoked_clients``, so gateways refuse its tokens at once although they still verify), the
   record goes to status ``deleting``, and the change is audited with a config-version bump.
2. The client is deleted at the IdP (RFC 7592 ``DELETE`` with its decrypted registration access
   token). 204 or 404 means it is gone and the record is removed (200). If the IdP cannot be
   reached, fails (5xx) or refuses the token (401), the record stays ``deleting`` with
   ``last_error`` and the answer is 202; ``POST …/{id}/retry-delete`` tries again, and
   ``…?force=true`` removes the record without the IdP's confirmation (the tombstone stays, so
   the client's tokens remain refused). The dashboard's background reconciler also retries
   (:func:`retry_deletions`).

A client with no registration URI or token (e.g. a registration that never completed) is removed
locally. ``GET …/{id}/registration`` reads the registration at the IdP (RFC 7592 ``GET``), secrets
removed; a registration access token the IdP rotates in that answer is stored at once.

Tombstones are kept after the record is gone: a deleted client's tokens may live until they expire.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from propylon.dashboard.admin_auth import AdminActor
from propylon.dashboard.changes import SYSTEM, Actor, now, record_change
from propylon.dashboard.context import DashboardContext, get_context
from propylon.dashboard.errors import ApiError, conflict, not_found
from propylon.domain.resources import IdentityProviderSpec
from propylon.idp.adapters import IdpAdapter, adapter_for
from propylon.idp.client_management import RegistrationError, delete_client, public_metadata, read_client
from propylon.storage.secret_box import SecretKeyError
from propylon.storage.sql.schema import (
    ClientTombstoneRow,
    DeveloperRow,
    IdentityProviderRow,
    OAuthClientRow,
)

log = logging.getLogger(__name__)

Context = Annotated[DashboardContext, Depends(get_context)]
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
"""Text without control characters (PostgreSQL cannot even compare a string holding NUL)."""
RecordId = Annotated[str, Path(max_length=64, pattern=TEXT_PATTERN, description="The record's id.")]
ClientStatus = Literal["pending", "active", "deleting", "failed"]
TOMBSTONE_DELETED = "deleted"
TOMBSTONE_SUSPENDED = "developer_suspended"


class DeveloperRef(BaseModel):
    """The developer owning a client."""

    id: str
    email: str
    name: str
    status: str


class ClientView(BaseModel):
    """An OAuth client as the admin sees it (never its secret or registration access token)."""

    id: str = Field(description="Propylon's id of the record.")
    client_id: str | None = Field(description="The IdP's client id; null while pending.")
    name: str
    status: ClientStatus
    revoked: bool = Field(description="Gateways refuse its tokens (deleted, or its developer is "
                          "not active).")
    developer: DeveloperRef
    identity_provider_id: str
    catalogue_entry_ids: list[str]
    policy_ids: list[str]
    metadata: dict[str, Any] = Field(description="Client metadata as the IdP returned it, secrets "
                                     "removed.")
    registration_client_uri: str | None
    has_registration_access_token: bool
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class ClientList(BaseModel):
    """A page of clients."""

    items: list[ClientView]
    total: int
    limit: int
    offset: int


class ClientDeletion(BaseModel):
    """Where a deletion stands."""

    id: str
    client_id: str | None
    status: Literal["deleted", "deleting"] = Field(description="`deleted`: the record is gone; "
                                                   "`deleting`: the IdP has not confirmed yet.")
    idp: Literal["deleted", "already_gone", "not_managed", "forced", "failed"]
    message: str
    idp_error: str | None = Field(default=None, description="The IdP's error code, if it failed.")


class Registration(BaseModel):
    """A client's registration as the IdP holds it now (RFC 7592 read), secrets removed."""

    id: str
    client_id: str | None
    registration: dict[str, Any]
    registration_access_token_rotated: bool = Field(
        description="The IdP issued a new registration access token in this answer; it was stored."
    )


def client_view(row: OAuthClientRow, developer: DeveloperRow, revoked: bool) -> ClientView:
    """The public view of ``row``."""
    return ClientView(
        id=row.id, client_id=row.client_id, name=row.name, status=row.status,
        revoked=revoked,
        developer=DeveloperRef(id=developer.id, email=developer.email, name=developer.name,
                               status=developer.status),
        identity_provider_id=row.identity_provider_id,
        catalogue_entry_ids=list(row.catalogue_entry_ids or ()),
        policy_ids=list(row.policy_ids or ()),
        metadata=public_metadata(row.metadata_ or {}),
        registration_client_uri=row.registration_client_uri,
        has_registration_access_token=row.registration_access_token_enc is not None,
        last_error=row.last_error, created_at=row.created_at, updated_at=row.updated_at,
    )


async def revoked_ids(session: AsyncSession, client_ids: list[str | None]) -> set[str]:
    """Which of ``client_ids`` are tombstoned."""
    wanted = [c for c in client_ids if c]
    if not wanted:
        return set()
    result = await session.scalars(
        select(ClientTombstoneRow.client_id).where(ClientTombstoneRow.client_id.in_(wanted))
    )
    return set(result.all())


async def tombstone(session: AsyncSession, client_ids: list[str], reason: str) -> None:
    """Tombstone ``client_ids`` (idempotent). A ``deleted`` tombstone is never downgraded to a
    suspension, so re-activating a developer cannot revive a deleted client."""
    if not client_ids:
        return
    values = [{"client_id": c, "deleted_at": now(), "reason": reason} for c in client_ids]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(ClientTombstoneRow).values(values)
    if reason == TOMBSTONE_DELETED:
        statement = statement.on_conflict_do_update(
            index_elements=[ClientTombstoneRow.client_id], set_={"reason": TOMBSTONE_DELETED}
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=[ClientTombstoneRow.client_id])
    await session.execute(statement)


async def lift_suspension(session: AsyncSession, client_ids: list[str]) -> None:
    """Remove the suspension tombstones of ``client_ids`` (deletion tombstones stay)."""
    if client_ids:
        await session.execute(delete(ClientTombstoneRow).where(
            ClientTombstoneRow.client_id.in_(client_ids),
            ClientTombstoneRow.reason == TOMBSTONE_SUSPENDED,
        ))


async def idp_management(context: DashboardContext,
                         identity_provider_id: str) -> tuple[IdpAdapter, str | None]:
    """The adapter of a client's identity provider and its decrypted initial access token (Okta
    manages clients with its API token, not a registration access token). An IdP whose record is
    gone or unreadable falls back to the generic adapter without a token. ``SecretKeyError`` when
    the stored token cannot be decrypted."""
    async with context.database.sessions() as session:
        row = await session.get(IdentityProviderRow, identity_provider_id)
    if row is None:
        return adapter_for("generic"), None
    try:
        kind = IdentityProviderSpec.model_validate(row.spec).kind
    except ValueError:
        kind = "generic"
    token = context.secrets.decrypt(row.initial_access_token_enc) if row.initial_access_token_enc else None
    return adapter_for(kind), token


def _management_token(context: DashboardContext, row: OAuthClientRow) -> str | None:
    return context.secrets.decrypt(row.registration_access_token_enc) \
        if row.registration_access_token_enc else None


async def begin_delete(session: AsyncSession, actor: Actor, row: OAuthClientRow) -> int | None:
    """Step 1 of a deletion, in the caller's transaction: tombstone, status ``deleting``, audit.
    Returns the new config version."""
    if row.client_id:
        await tombstone(session, [row.client_id], TOMBSTONE_DELETED)
    row.status = "deleting"
    row.last_error = None
    row.updated_at = now()
    return await record_change(session, actor, "delete", "oauth_client", row.id,
                               {"client_id": row.client_id, "developer_id": row.developer_id})


async def finish_delete(context: DashboardContext, actor: Actor, record_id: RecordId, *,
                        force: bool = False) -> ClientDeletion:
    """Step 2: delete at the IdP, then remove the record (or keep it ``deleting`` with the
    error). Call after step 1 is committed."""
    async with context.database.sessions() as session:
        row = await session.get(OAuthClientRow, record_id)
    if row is None:
        return ClientDeletion(id=record_id, client_id=None, status="deleted", idp="already_gone",
                              message="the client was already deleted")
    client_id = row.client_id
    failure: RegistrationError | None = None
    outcome: Literal["deleted", "already_gone", "not_managed", "forced", "failed"]
    try:
        adapter, initial_token = await idp_management(context, row.identity_provider_id)
        token = _management_token(context, row)
        manageable = bool(row.registration_client_uri) and \
            adapter.management_authorization(token, initial_token) is not None
    except SecretKeyError:
        adapter, initial_token, token, manageable = adapter_for("generic"), None, None, False
        failure = RegistrationError("undecryptable", "a stored token cannot be decrypted with the "
                                    "configured secret key(s)")
    if failure is None and manageable:
        assert row.registration_client_uri is not None
        try:
            outcome = (await delete_client(row.registration_client_uri, token, adapter=adapter,
                                           initial_access_token=initial_token,
                                           guard=context.outbound)).value
        except RegistrationError as exc:
            failure = exc
    elif failure is None:
        outcome = "not_managed"
    if failure is not None:
        outcome = "forced" if force else "failed"
        log.warning("deleting OAuth client %s at its IdP failed: %s", record_id, failure)
    async with context.database.transaction() as session:
        current = await session.get(OAuthClientRow, record_id)
        version: int | None = None
        if current is not None and outcome != "failed":
            await session.delete(current)
            version = await record_change(session, actor, "delete_completed", "oauth_client",
                                          record_id, {"client_id": client_id, "idp": outcome})
        elif current is not None and failure is not None:
            current.status = "deleting"
            current.last_error = f"{failure.error}: {failure.description}"[:2000]
            current.updated_at = now()
            await record_change(session, actor, "delete_failed", "oauth_client", record_id,
                                {"client_id": client_id, "idp_error": failure.error},
                                versioned=False)
    await context.config_changed(version)
    if outcome == "failed" and failure is not None:
        return ClientDeletion(
            id=record_id, client_id=client_id, status="deleting", idp="failed",
            idp_error=failure.error,
            message=f"the client's tokens are already refused by the gateways, but the IdP did not "
            f"delete it ({failure.error}: {failure.description}); retry with POST "
            f"/api/v1/oauth-clients/{record_id}/retry-delete",
        )
    messages = {
        "deleted": "deleted at the IdP and here",
        "already_gone": "the IdP no longer knew the client; deleted here",
        "not_managed": "the client has no registration URI or token: deleted here only",
        "forced": "deleted here without the IdP's confirmation; its tokens stay refused",
    }
    return ClientDeletion(id=record_id, client_id=client_id, status="deleted", idp=outcome,
                          message=messages[outcome],
                          idp_error=failure.error if failure is not None else None)


async def retry_deletions(context: DashboardContext, older_than: timedelta) -> list[ClientDeletion]:
    """Step 2 again for every client stuck in ``deleting`` (its IdP failed or was unreachable)
    whose last attempt is older than ``older_than``; run by the dashboard's background reconciler.
    A failure stays ``deleting`` with its ``last_error`` and a fresh ``updated_at``, so the next
    try waits ``older_than`` again."""
    cutoff = now() - older_than
    async with context.database.sessions() as session:
        record_ids = list((await session.scalars(
            select(OAuthClientRow.id).where(OAuthClientRow.status == "deleting",
                                            OAuthClientRow.updated_at < cutoff)
            .order_by(OAuthClientRow.updated_at))).all())
    return [await finish_delete(context, SYSTEM, record_id) for record_id in record_ids]


def _catalogue_filter(dialect: str, entry_id: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        return text("CAST(oauth_clients.catalogue_entry_ids AS jsonb) @> CAST(:cat AS jsonb)"
                    ).bindparams(cat=orjson.dumps([entry_id]).decode())  # type: ignore[return-value]
    return text("EXISTS (SELECT 1 FROM json_each(oauth_clients.catalogue_entry_ids) AS e "
                "WHERE e.value = :cat)").bindparams(cat=entry_id)  # type: ignore[return-value]


async def _load(session: AsyncSession, record_id: str) -> OAuthClientRow:
    row = await session.get(OAuthClientRow, record_id)
    if row is None:
        raise not_found("OAuth client", record_id)
    return row


def _deletion_response(result: ClientDeletion, response: Response) -> ClientDeletion:
    response.status_code = 202 if result.status == "deleting" else 200
    return result


def oauth_clients_router() -> APIRouter:
    """The ``/api/v1/oauth-clients`` routes."""
    router = APIRouter(prefix="/api/v1/oauth-clients", tags=["oauth clients"])
    deletion_responses: dict[int | str, dict[str, Any]] = {
        202: {"model": ClientDeletion, "description": "Tokens refused; the IdP has not confirmed "
              "the deletion yet (retry later)."},
        404: {"description": "No such client."},
    }

    @router.get("", summary="List OAuth clients")
    async def list_clients(
        _actor: AdminActor, context: Context,
        developer_id: Annotated[str | None, Query(max_length=64, pattern=TEXT_PATTERN)] = None,
        identity_provider_id: Annotated[str | None, Query(max_length=128, pattern=TEXT_PATTERN)] = None,
        status: ClientStatus | None = None,
        catalogue_entry_id: Annotated[str | None, Query(max_length=128, pattern=TEXT_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> ClientList:
        clauses: list[ColumnElement[bool]] = []
        if developer_id is not None:
            clauses.append(OAuthClientRow.developer_id == developer_id)
        if identity_provider_id is not None:
            clauses.append(OAuthClientRow.identity_provider_id == identity_provider_id)
        if status is not None:
            clauses.append(OAuthClientRow.status == status)
        if catalogue_entry_id is not None:
            clauses.append(_catalogue_filter(context.database.dialect, catalogue_entry_id))
        async with context.database.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(OAuthClientRow).where(*clauses))
            rows = (await session.execute(
                select(OAuthClientRow, DeveloperRow)
                .join(DeveloperRow, DeveloperRow.id == OAuthClientRow.developer_id)
                .where(*clauses).order_by(OAuthClientRow.created_at, OAuthClientRow.id)
                .limit(limit).offset(offset)
            )).all()
            revoked = await revoked_ids(session, [row.client_id for row, _ in rows])
        return ClientList(
            items=[client_view(row, dev, row.client_id in revoked) for row, dev in rows],
            total=int(total or 0), limit=limit, offset=offset,
        )

    @router.get("/{record_id}", summary="Inspect an OAuth client", responses={404: {}})
    async def get_client(record_id: RecordId, _actor: AdminActor, context: Context) -> ClientView:
        async with context.database.sessions() as session:
            row = await _load(session, record_id)
            developer = await session.get(DeveloperRow, row.developer_id)
            assert developer is not None  # the foreign key guarantees it
            revoked = await revoked_ids(session, [row.client_id])
        return client_view(row, developer, bool(revoked))

    @router.delete("/{record_id}", summary="Delete an OAuth client (here, at the IdP, on gateways)",
                   responses=deletion_responses)
    async def delete_one(record_id: RecordId, actor: AdminActor, context: Context,
                         response: Response) -> ClientDeletion:
        async with context.database.transaction() as session:
            version = await begin_delete(session, actor, await _load(session, record_id))
        await context.config_changed(version)
        return _deletion_response(await finish_delete(context, actor, record_id), response)

    @router.post("/{record_id}/retry-delete", summary="Retry deleting a client at its IdP",
                 responses={**deletion_responses, 409: {"description": "Not being deleted."}})
    async def retry_delete(
        record_id: RecordId, actor: AdminActor, context: Context, response: Response,
        force: Annotated[bool, Query(description="Remove the record even if the IdP does not "
                                     "confirm (its tokens stay refused).")] = False,
    ) -> ClientDeletion:
        async with context.database.sessions() as session:
            row = await _load(session, record_id)
        if row.status != "deleting":
            raise conflict(f"OAuth client {record_id!r} is {row.status}, not being deleted: "
                           "use DELETE to delete it")
        return _deletion_response(await finish_delete(context, actor, record_id, force=force),
                                  response)

    @router.get("/{record_id}/registration", summary="Read the client's registration at its IdP",
                responses={404: {}, 409: {}, 502: {}, 504: {}})
    async def registration(record_id: RecordId, actor: AdminActor, context: Context) -> Registration:
        async with context.database.sessions() as session:
            row = await _load(session, record_id)
        try:
            adapter, initial_token = await idp_management(context, row.identity_provider_id)
            token = _management_token(context, row)
            if not row.registration_client_uri or \
                    adapter.management_authorization(token, initial_token) is None:
                raise conflict("this client has no registration URI or registration access token: "
                               "it cannot be read at its IdP")
            config = await read_client(row.registration_client_uri, token, adapter=adapter,
                                       initial_access_token=initial_token, guard=context.outbound)
        except SecretKeyError as exc:
            raise ApiError(503, "secret_unavailable", "the registration access token cannot be "
                           "decrypted with the configured secret key(s)") from exc
        except RegistrationError as exc:
            raise _idp_failure(exc) from exc
        rotated = config.rotated_registration_access_token
        if rotated is not None and rotated != token:
            # RFC 7592 §2.1: the old token is void as soon as the IdP sends a new one.
            async with context.database.transaction() as session:
                current = await _load(session, record_id)
                current.registration_access_token_enc = context.secrets.encrypt(rotated)
                current.updated_at = now()
                await record_change(session, actor, "rotate_registration_access_token",
                                    "oauth_client", record_id, {"client_id": row.client_id},
                                    versioned=False)
        return Registration(id=record_id, client_id=row.client_id,
                            registration=public_metadata(config.metadata),
                            registration_access_token_rotated=rotated is not None and rotated != token)

    return router


def _idp_failure(exc: RegistrationError) -> ApiError:
    """A failed call to the IdP as a gateway error (502/504), with the IdP's own error; a URI the
    SSRF guard refuses is a 422 naming the address class."""
    if exc.error in ("address_refused", "invalid_uri"):
        return ApiError(422, exc.error, exc.description)
    if exc.error == "timeout":
        return ApiError(504, "idp_timeout", exc.description)
    if exc.status is None:
        return ApiError(502, "idp_unreachable", exc.description)
    return ApiError(502, "idp_error", f"the IdP answered HTTP {exc.status}: {exc.error}: "
                    f"{exc.description}")
