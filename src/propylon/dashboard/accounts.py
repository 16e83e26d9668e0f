"""Admin accounts and admin API tokens: ``/api/v1/me``, ``/api/v1/admins``, ``/api/v1/tokens``.

All admins have the same rights. A token acts for the admin who created it (its *owner*) and dies
with that admin. A new token is returned once, in the answer to its creation (``Cache-Control:
no-store``); only its SHA-256 digest and a short prefix are kept. A revoked token is refused by the
very next request, because every request looks the token up.

Every write is audited (``versioned=False``: accounts are not gateway configuration);
neither passwords nor tokens ever appear in audit details or logs.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue, SecretStr, field_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from propylon.dashboard import changes
from propylon.dashboard.admin_auth import AdminActor, PendingAdminActor, unauthorized
from propylon.dashboard.changes import Actor, now
from propylon.dashboard.context import DashboardContext, get_context
from propylon.dashboard.errors import Problem, conflict, invalid, not_found
from propylon.storage.sql.schema import AdminUserRow, ApiTokenRow
from propylon.web.credentials import (
    MIN_PASSWORD_LENGTH,
    hash_password,
    new_token,
    password_problem,
    token_digest,
    verify_password,
)

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$"
ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"
"""Ids are UUIDs; the pattern also keeps NUL (which PostgreSQL refuses in text) out of queries."""
_NAME_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
_TOKEN_PREFIX_CHARS = 12
# Documented in the schema, checked by web.credentials.password_problem (one message for both ends).
_PASSWORD_SCHEMA: dict[str, JsonValue] = {"minLength": MIN_PASSWORD_LENGTH, "maxLength": 1024}

router = APIRouter(prefix="/api/v1", tags=["admins and tokens"])
Context = Annotated[DashboardContext, Depends(get_context)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class AdminOut(BaseModel):
    """An admin account (never its password)."""

    id: str
    username: str
    must_change_password: bool
    created_at: datetime
    updated_at: datetime


class MeOut(AdminOut):
    """The admin making the request, and how they authenticated."""

    authenticated_with: str = Field(description="`password` or `token`.")
    token_id: str | None = Field(description="The API token used, when authenticated with one.")


class AdminCreate(_Request):
    """A new admin account."""

    username: str = Field(pattern=USERNAME_PATTERN, description="1–100 letters, digits, `._@-`.")
    password: SecretStr = Field(description="At least 12 characters. Write-only.",
                                json_schema_extra=_PASSWORD_SCHEMA)
    must_change_password: bool = Field(
        default=True, description="Make the new admin change this password at first login."
    )

    @field_validator("password")
    @classmethod
    def _strong_enough(cls, value: SecretStr) -> SecretStr:
        # Here rather than in the handler, so that it is reported with the other field problems.
        if (problem := password_problem(value.get_secret_value())) is not None:
            raise ValueError(problem)
        return value


class PasswordChange(_Request):
    """A password change of the calling admin."""

    current_password: SecretStr = Field(max_length=1024)
    new_password: SecretStr = Field(description="At least 12 characters.",
                                    json_schema_extra=_PASSWORD_SCHEMA)


class TokenOut(BaseModel):
    """An admin API token as listed (never the token itself)."""

    id: str
    name: str
    prefix: str = Field(description="The token's first characters, to tell tokens apart.")
    admin_id: str = Field(description="The admin the token acts for.")
    admin_username: str
    created_at: datetime
    last_used_at: datetime | None = Field(description="Last use, to the minute.")
    expires_at: datetime | None
    revoked: bool


class TokenCreate(_Request):
    """A new admin API token for the calling admin."""

    name: str = Field(min_length=1, max_length=200, pattern=_NAME_PATTERN,
                      description="What it is for (printable text).")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650, description="Default: never.")


class TokenCreated(TokenOut):
    """A new token: ``token`` is shown this once and cannot be retrieved later."""

    token: str = Field(description="Send as `Authorization: Bearer <token>`. Shown once.")


def _admin_out(row: AdminUserRow) -> AdminOut:
    return AdminOut(
        id=row.id, username=row.username, must_change_password=row.must_change_password,
        created_at=row.created_at, updated_at=row.updated_at,
    )


def _token_out(row: ApiTokenRow, owner: str) -> TokenOut:
    return TokenOut(
        id=row.id, name=row.name, prefix=row.prefix, admin_id=row.admin_user_id, admin_username=owner,
        created_at=row.created_at, last_used_at=row.last_used_at, expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
    )


async def _owner(session: AsyncSession, actor: Actor) -> tuple[AdminUserRow, str | None]:
    """The admin behind ``actor`` (a token's owner) and the token id, if any."""
    token_id: str | None = None
    admin_id = actor.id
    if actor.kind == "token":
        token_id = actor.id
        owner_id = await session.scalar(select(ApiTokenRow.admin_user_id).where(ApiTokenRow.id == actor.id))
        admin_id = owner_id or ""
    row = await session.get(AdminUserRow, admin_id) if admin_id else None
    if row is None:
        # Deleted between authentication and now: the credentials no longer stand for anyone.
        raise unauthorized()
    return row, token_id


@router.get("/me", summary="The calling admin")
async def get_me(actor: PendingAdminActor, context: Context) -> MeOut:
    """Who is calling, and whether they must change their password."""
    async with context.database.sessions() as session:
        row, token_id = await _owner(session, actor)
    return MeOut(
        **_admin_out(row).model_dump(),
        authenticated_with="token" if token_id else "password",
        token_id=token_id,
    )


@router.post("/me/password", status_code=204, summary="Change the calling admin's password")
async def change_password(body: PasswordChange, actor: PendingAdminActor, context: Context) -> Response:
    """Check the current password, store the new one (argon2id), clear ``must_change_password``."""
    current = body.current_password.get_secret_value()
    new = body.new_password.get_secret_value()
    problems = []
    if (problem := password_problem(new)) is not None:
        problems.append(Problem("new_password", problem))
    if new == current:
        problems.append(Problem("new_password", "must differ from the current password"))
    async with context.database.sessions() as session:
        row, _token_id = await _owner(session, actor)
    throttle = context.login_throttle
    # A wrong current password is a failed login: without this, a stolen token would be an
    # unthrottled password oracle.
    throttle.check(row.username, None)
    if not await asyncio.to_thread(verify_password, row.password_hash, current):
        throttle.failed(row.username, None)
        problems.append(Problem("current_password", "is not correct"))
    if problems:
        raise invalid(problems)
    new_hash = await asyncio.to_thread(hash_password, new)
    async with context.database.transaction() as session:
        stored = await session.get(AdminUserRow, row.id, with_for_update=True)
        if stored is None or stored.password_hash != row.password_hash:
            raise conflict("the password was changed meanwhile; try again with the current one")
        stored.password_hash = new_hash
        stored.must_change_password = False
        stored.updated_at = now()
        await changes.record_change(
            session, actor, "change_password", "admin_user", row.id, {"username": row.username},
            versioned=False,
        )
    return Response(status_code=204)


@router.get("/admins", summary="List admins")
async def list_admins(_actor: AdminActor, context: Context) -> list[AdminOut]:
    """Every admin account, by username."""
    async with context.database.sessions() as session:
        rows = (await session.scalars(select(AdminUserRow).order_by(AdminUserRow.username))).all()
    return [_admin_out(row) for row in rows]


@router.post("/admins", status_code=201, summary="Create an admin")
async def create_admin(body: AdminCreate, actor: AdminActor, context: Context) -> AdminOut:
    """A new admin with the given password (409 if the username is taken)."""
    password_hash = await asyncio.to_thread(hash_password, body.password.get_secret_value())
    timestamp = now()
    row = AdminUserRow(
        id=str(uuid.uuid4()), username=body.username, password_hash=password_hash,
        must_change_password=body.must_change_password, created_at=timestamp, updated_at=timestamp,
    )
    taken = conflict(f"an admin named {body.username!r} exists", [Problem("username", "is taken")])
    try:
        async with context.database.transaction() as session:
            if await session.scalar(select(AdminUserRow.id).where(AdminUserRow.username == body.username)):
                raise taken
            session.add(row)
            await session.flush()
            await changes.record_change(
                session, actor, "create", "admin_user", row.id,
                {"username": row.username, "must_change_password": row.must_change_password},
                versioned=False,
            )
    except IntegrityError as exc:
        raise taken from exc
    return _admin_out(row)


@router.delete("/admins/{admin_id}", status_code=204, summary="Delete an admin (and their tokens)")
async def delete_admin(
    admin_id: Annotated[str, Path(pattern=ID_PATTERN)], actor: AdminActor, context: Context
) -> Response:
    """Delete another admin; the last admin and the caller cannot be deleted (409)."""
    async with context.database.transaction() as session:
        caller, _token_id = await _owner(session, actor)
        # Lock every admin row: two admins deleting each other at once must not leave none.
        ids = set((await session.scalars(select(AdminUserRow.id).with_for_update())).all())
        if admin_id not in ids:
            raise not_found("admin", admin_id)
        if len(ids) <= 1:
            raise conflict("the last admin cannot be deleted")
        if admin_id == caller.id:
            raise conflict("you cannot delete your own account; ask another admin")
        row = await session.get(AdminUserRow, admin_id)
        assert row is not None  # locked above
        tokens = await session.scalar(
            select(func.count()).select_from(ApiTokenRow).where(ApiTokenRow.admin_user_id == admin_id)
        )
        await session.delete(row)
        await changes.record_change(
            session, actor, "delete", "admin_user", admin_id,
            {"username": row.username, "tokens_deleted": int(tokens or 0)}, versioned=False,
        )
    return Response(status_code=204)


@router.get("/tokens", summary="List admin API tokens")
async def list_tokens(_actor: AdminActor, context: Context) -> list[TokenOut]:
    """Every admin API token (of every admin), newest first; never the tokens themselves."""
    query = (
        select(ApiTokenRow, AdminUserRow.username)
        .join(AdminUserRow, AdminUserRow.id == ApiTokenRow.admin_user_id)
        .order_by(ApiTokenRow.created_at.desc(), ApiTokenRow.id)
    )
    async with context.database.sessions() as session:
        rows = (await session.execute(query)).all()
    return [_token_out(token, username) for token, username in rows]


@router.post("/tokens", status_code=201, summary="Create an admin API token (shown once)")
async def create_token(
    body: TokenCreate, actor: AdminActor, context: Context, response: Response
) -> TokenCreated:
    """A new token acting for the calling admin; the answer is the only place it appears."""
    token = new_token()
    timestamp = now()
    expires = timestamp + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    async with context.database.transaction() as session:
        owner, _token_id = await _owner(session, actor)
        row = ApiTokenRow(
            id=str(uuid.uuid4()), admin_user_id=owner.id, name=body.name.strip(),
            token_digest=token_digest(token), prefix=token[:_TOKEN_PREFIX_CHARS],
            created_at=timestamp, last_used_at=None, expires_at=expires, revoked_at=None,
        )
        session.add(row)
        await session.flush()
        await changes.record_change(
            session, actor, "create", "api_token", row.id,
            {"name": row.name, "prefix": row.prefix, "admin": owner.username,
             "expires_at": expires.isoformat() if expires else None},
            versioned=False,
        )
    response.headers["Cache-Control"] = "no-store"
    return TokenCreated(**_token_out(row, owner.username).model_dump(), token=token)


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke an admin API token")
async def revoke_token(
    token_id: Annotated[str, Path(pattern=ID_PATTERN)], actor: AdminActor, context: Context
) -> Response:
    """Revoke a token at once (revoking a revoked token changes nothing)."""
    async with context.database.transaction() as session:
        row = await session.get(ApiTokenRow, token_id, with_for_update=True)
        if row is None:
            raise not_found("token", token_id)
        if row.revoked_at is None:
            row.revoked_at = now()
            await changes.record_change(
                session, actor, "revoke", "api_token", row.id,
                {"name": row.name, "prefix": row.prefix}, versioned=False,
            )
    return Response(status_code=204)
