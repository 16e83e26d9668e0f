"""Developers in the admin API (``/api/v1/developers``): "Add developer", list, inspect, edit,
delete.

A developer is ``active``, ``pending`` (awaiting approval) or ``disabled``. Only an active
developer's clients are honoured: moving a developer to ``pending`` or ``disabled`` tombstones
their clients' ids (reason ``developer_suspended``: gateways refuse the tokens at once, the
clients stay registered at the IdP) and moving them back to ``active`` lifts exactly those
tombstones. Deleting a developer who owns clients is a 409 unless ``?delete_clients=true``, which
deletes each client as ``DELETE /api/v1/oauth-clients/{id}`` does; when an IdP does not confirm,
the developer is kept (``disabled``) with those clients in ``deleting`` and the answer is 202: the
same DELETE, repeated later, finishes the job.

Passwords are optional (the portal lets a developer set one later), hashed with argon2id, and
never appear in an answer, an audit entry or a log line.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from propylon.dashboard.admin_auth import AdminActor
from propylon.dashboard.changes import now, record_change
from propylon.dashboard.context import DashboardContext, get_context
from propylon.dashboard.errors import Problem, conflict, invalid, not_found
from propylon.dashboard.oauth_clients import (
    TEXT_PATTERN,
    TOMBSTONE_SUSPENDED,
    ClientDeletion,
    begin_delete,
    finish_delete,
    lift_suspension,
    revoked_ids,
    tombstone,
)
from propylon.storage.sql.schema import DeveloperRow, OAuthClientRow
from propylon.web.credentials import hash_password, password_problem

Context = Annotated[DashboardContext, Depends(get_context)]
DeveloperStatus = Literal["active", "pending", "disabled"]
DeveloperId = Annotated[str, Path(max_length=64, pattern=TEXT_PATTERN, description="The developer's id.")]

# Deliberately simple: one @, no spaces, a dotted domain. Real validation is the confirmation mail
# the portal will send; this only catches typos and garbage.
_EMAIL = re.compile(r"^[^@\s\x00-\x1f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)+$")


def normalise_email(value: str) -> str:
    """``value`` trimmed and lower-cased, or ``ValueError`` if it is not an e-mail address."""
    email = value.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise ValueError("must be an e-mail address like name@example.com")
    return email


class _Name(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    @field_validator("name", check_fields=False)
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("must not be blank")
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
            raise ValueError("must not contain control characters")
        return value.strip()


class DeveloperInput(_Name):
    """An "Add developer" body."""

    email: str = Field(max_length=320, description="Login; stored lower-case; unique.")
    name: str = Field(min_length=1, max_length=200)
    password: SecretStr | None = Field(
        default=None, description="Optional initial password (write-only, at least 12 "
        "characters); without one the developer sets it on the portal.",
    )
    status: DeveloperStatus = "active"

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalise_email(value)

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (problem := password_problem(value.get_secret_value())):
            raise ValueError(problem)
        return value


class DeveloperPatch(_Name):
    """Changes to a developer; omitted fields stay as they are."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    status: DeveloperStatus | None = None


class ClientSummary(BaseModel):
    """One of a developer's OAuth clients, briefly."""

    id: str
    client_id: str | None
    name: str
    status: str
    revoked: bool
    identity_provider_id: str
    catalogue_entry_ids: list[str]


class DeveloperView(BaseModel):
    """A developer (no password hash: ``has_password`` says whether one is set)."""

    id: str
    email: str
    name: str
    status: DeveloperStatus
    has_password: bool
    created_at: datetime
    updated_at: datetime


class DeveloperDetail(DeveloperView):
    """A developer with their OAuth clients."""

    clients: list[ClientSummary]


class DeveloperList(BaseModel):
    """A page of developers, ordered by e-mail."""

    items: list[DeveloperView]
    total: int
    limit: int
    offset: int


class DeveloperDeletion(BaseModel):
    """A developer deletion waiting for IdPs to confirm client deletions."""

    id: str
    status: Literal["deleting"]
    message: str
    clients: list[ClientDeletion]


def _view(row: DeveloperRow) -> DeveloperView:
    return DeveloperView(id=row.id, email=row.email, name=row.name,
                         status=row.status,
                         has_password=row.password_hash is not None,
                         created_at=row.created_at, updated_at=row.updated_at)


def _audit(row: DeveloperRow) -> dict[str, str]:
    return {"email": row.email, "name": row.name, "status": row.status}


async def _load(session: AsyncSession, developer_id: str) -> DeveloperRow:
    row = await session.get(DeveloperRow, developer_id)
    if row is None:
        raise not_found("developer", developer_id)
    return row


async def _clients(session: AsyncSession, developer_id: str) -> list[OAuthClientRow]:
    result = await session.scalars(select(OAuthClientRow).where(
        OAuthClientRow.developer_id == developer_id).order_by(OAuthClientRow.created_at,
                                                              OAuthClientRow.id))
    return list(result.all())


def _duplicate(email: str) -> Exception:
    return conflict(f"a developer with e-mail {email!r} already exists",
                    [Problem("email", "already registered")])


def developers_router() -> APIRouter:
    """The ``/api/v1/developers`` routes."""
    router = APIRouter(prefix="/api/v1/developers", tags=["developers"])

    @router.post("", status_code=201, summary="Add a developer", responses={409: {}, 422: {}})
    async def create(body: DeveloperInput, actor: AdminActor, context: Context) -> DeveloperView:
        password_hash = None
        if body.password is not None:
            # argon2 costs tens of milliseconds of CPU: keep it off the event loop.
            password_hash = await asyncio.to_thread(hash_password, body.password.get_secret_value())
        row = DeveloperRow(id=str(uuid.uuid4()), email=body.email, name=body.name,
                           status=body.status, password_hash=password_hash,
                           created_at=now(), updated_at=now())
        try:
            async with context.database.transaction() as session:
                existing = await session.scalar(select(DeveloperRow.id).where(
                    DeveloperRow.email == body.email))
                if existing is not None:
                    raise _duplicate(body.email)
                session.add(row)
                await session.flush()
                await record_change(session, actor, "create", "developer", row.id, _audit(row),
                                    versioned=False)
        except IntegrityError as exc:  # a concurrent "Add developer" with the same e-mail won
            raise _duplicate(body.email) from exc
        return _view(row)

    @router.get("", summary="List developers")
    async def list_developers(
        _actor: AdminActor, context: Context,
        status: DeveloperStatus | None = None,
        email: Annotated[str | None, Query(max_length=320, pattern=TEXT_PATTERN,
                                           description="Substring of the e-mail (case-insensitive).")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> DeveloperList:
        clauses: list[ColumnElement[bool]] = []
        if status is not None:
            clauses.append(DeveloperRow.status == status)
        if email:
            # E-mails are stored lower-case, so a lower-cased LIKE is case-insensitive everywhere.
            escaped = email.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append(DeveloperRow.email.like(f"%{escaped}%", escape="\\"))
        async with context.database.sessions() as session:
            total = await session.scalar(select(func.count()).select_from(DeveloperRow).where(*clauses))
            rows = (await session.scalars(select(DeveloperRow).where(*clauses)
                                          .order_by(DeveloperRow.email).limit(limit).offset(offset))).all()
        return DeveloperList(items=[_view(r) for r in rows], total=int(total or 0), limit=limit,
                             offset=offset)

    @router.get("/{developer_id}", summary="Inspect a developer and their OAuth clients",
                responses={404: {}})
    async def get_one(developer_id: DeveloperId, _actor: AdminActor, context: Context) -> DeveloperDetail:
        async with context.database.sessions() as session:
            row = await _load(session, developer_id)
            clients = await _clients(session, developer_id)
            revoked = await revoked_ids(session, [c.client_id for c in clients])
        return DeveloperDetail(**_view(row).model_dump(), clients=[
            ClientSummary(id=c.id, client_id=c.client_id, name=c.name, status=c.status,
                          revoked=c.client_id in revoked, identity_provider_id=c.identity_provider_id,
                          catalogue_entry_ids=list(c.catalogue_entry_ids or ()))
            for c in clients
        ])

    @router.patch("/{developer_id}", summary="Change a developer's name or status",
                  responses={404: {}, 422: {}})
    async def patch(developer_id: DeveloperId, body: DeveloperPatch, actor: AdminActor,
                    context: Context) -> DeveloperView:
        if body.name is None and body.status is None:
            raise invalid([Problem("", "give at least one of name, status")])
        async with context.database.transaction() as session:
            row = await _load(session, developer_id)
            before = row.status
            row.name = body.name if body.name is not None else row.name
            row.status = body.status if body.status is not None else row.status
            row.updated_at = now()
            client_ids = [c.client_id for c in await _clients(session, developer_id) if c.client_id]
            suspending = before == "active" and row.status != "active"
            restoring = before != "active" and row.status == "active"
            if suspending:
                await tombstone(session, client_ids, TOMBSTONE_SUSPENDED)
            elif restoring:
                await lift_suspension(session, client_ids)
            details = {**_audit(row), "previous_status": before}
            version = await record_change(session, actor, "update", "developer", row.id, details,
                                          versioned=bool(client_ids) and (suspending or restoring))
        await context.config_changed(version)
        return _view(row)

    @router.delete("/{developer_id}", status_code=204, summary="Delete a developer",
                   responses={202: {"model": DeveloperDeletion}, 404: {}, 409: {}})
    async def remove(
        developer_id: DeveloperId, actor: AdminActor, context: Context,
        delete_clients: Annotated[bool, Query(description="Also delete the developer's OAuth "
                                              "clients (here, at their IdPs, on gateways).")] = False,
    ) -> Response:
        async with context.database.transaction() as session:
            row = await _load(session, developer_id)
            clients = await _clients(session, developer_id)
            if clients and not delete_clients:
                raise conflict(
                    f"developer {developer_id!r} owns {len(clients)} OAuth client(s): delete them "
                    "first or pass delete_clients=true",
                    [Problem(f"clients.{c.id}", f"{c.name} ({c.status})") for c in clients],
                )
            version: int | None = None
            if clients:
                row.status = "disabled"  # no new clients while the old ones are being deleted
                row.updated_at = now()
                for client in clients:
                    version = await begin_delete(session, actor, client) or version
            else:
                await session.delete(row)
                await record_change(session, actor, "delete", "developer", developer_id,
                                    _audit(row), versioned=False)
        await context.config_changed(version)
        if not clients:
            return Response(status_code=204)
        results = [await finish_delete(context, actor, c.id) for c in clients]
        pending = [r for r in results if r.status == "deleting"]
        if not pending:
            try:
                async with context.database.transaction() as session:
                    row = await _load(session, developer_id)
                    if await _clients(session, developer_id):
                        raise conflict("the developer got a new OAuth client meanwhile; retry")
                    await session.delete(row)
                    await record_change(session, actor, "delete", "developer", developer_id,
                                        _audit(row), versioned=False)
            except IntegrityError as exc:
                raise conflict("the developer got a new OAuth client meanwhile; retry") from exc
            return Response(status_code=204)
        deletion = DeveloperDeletion(
            id=developer_id, status="deleting", clients=results,
            message=f"{len(pending)} client(s) could not be deleted at their IdP yet; their tokens "
            "are refused and the developer is disabled. Repeat this DELETE later to finish.",
        )
        return Response(deletion.model_dump_json(), status_code=202, media_type="application/json")

    return router
