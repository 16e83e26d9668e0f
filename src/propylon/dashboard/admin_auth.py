"""Who may call the admin API: admins with their password (HTTP Basic, meant for bootstrapping
and the command line) or with an admin API token (``Authorization: Bearer ppl_…``, for automation).

:func:`require_admin` is the FastAPI dependency every ``/api/v1`` route uses. Every failure is the
same 401 (with ``WWW-Authenticate``), whatever the reason, so that the answer does not tell an
attacker which usernames or tokens exist. Failed password logins are throttled per username and
client address (``throttle.py``: 429 with ``Retry-After``); an admin created with a one-time password
may only read ``/me`` and change the password until they do (403 ``password_change_required``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select

from propylon.dashboard.changes import Actor, now
from propylon.dashboard.context import DashboardContext, get_context
from propylon.dashboard.errors import ApiError
from propylon.storage.sql.schema import AdminUserRow, ApiTokenRow
from propylon.web.credentials import TOKEN_PREFIX, token_digest, verify_password

# Writing last_used_at on every call would turn each read into a write; a minute's precision is
# what an admin looking at a token list needs.
_LAST_USED_PRECISION = timedelta(minutes=1)


def unauthorized() -> ApiError:
    """The one 401 answer of the admin API."""
    return ApiError(
        401,
        "unauthorized",
        "admin credentials required: an admin API token (Bearer) or username and password (Basic)",
        headers={"WWW-Authenticate": 'Bearer realm="propylon", Basic realm="propylon"'},
    )


async def authenticate(
    context: DashboardContext, authorization: str | None, client: str | None = None
) -> Actor:
    """The admin behind an ``Authorization`` header value, or :func:`unauthorized` (or a 429 while
    password logins for that username or from ``client``, an address, are throttled)."""
    actor, _must_change = await _authenticate(context, authorization, client)
    return actor


async def _authenticate(
    context: DashboardContext, authorization: str | None, client: str | None
) -> tuple[Actor, bool]:
    """The actor and whether it is a password login that must change its password first."""
    if not authorization:
        raise unauthorized()
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials.startswith(TOKEN_PREFIX):
        return await _token_actor(context, credentials), False
    if scheme.lower() == "basic":
        return await _password_actor(context, credentials, client)
    raise unauthorized()


async def _token_actor(context: DashboardContext, token: str) -> Actor:
    digest = token_digest(token)
    async with context.database.transaction() as session:
        row = await session.scalar(select(ApiTokenRow).where(ApiTokenRow.token_digest == digest))
        current = now()
        if row is None or row.revoked_at is not None:
            raise unauthorized()
        if row.expires_at is not None and row.expires_at <= current:
            raise unauthorized()
        if row.last_used_at is None or current - row.last_used_at > _LAST_USED_PRECISION:
            row.last_used_at = current
        return Actor("token", row.name, row.id)


async def _password_actor(
    context: DashboardContext, credentials: str, client: str | None
) -> tuple[Actor, bool]:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise unauthorized() from exc
    username, sep, password = decoded.partition(":")
    if not sep:
        raise unauthorized()
    throttle = context.login_throttle
    # Before the lookup and the hash: a throttled login costs no argon2 CPU and reveals nothing.
    throttle.check(username, client)
    user = None
    # PostgreSQL refuses NUL in text (an error, not "no match"); no username contains one anyway.
    if "\x00" not in username:
        async with context.database.sessions() as session:
            user = await session.scalar(select(AdminUserRow).where(AdminUserRow.username == username))
    stored = user.password_hash if user is not None else None
    # argon2 takes tens of milliseconds of CPU: keep it off the event loop.
    if not await asyncio.to_thread(verify_password, stored, password) or user is None:
        throttle.failed(username, client)
        raise unauthorized()
    throttle.succeeded(username)
    return Actor("admin", user.username, user.id), user.must_change_password


def password_change_required() -> ApiError:
    """403 for an admin who logged in with a one-time password and has not changed it yet."""
    return ApiError(
        403,
        "password_change_required",
        "change your password first: POST /api/v1/me/password (only GET /api/v1/me and that "
        "route are open until then)",
    )


async def require_admin(
    request: Request, context: Annotated[DashboardContext, Depends(get_context)]
) -> Actor:
    """FastAPI dependency: the authenticated admin, or a 401 answer (403 for a password login that
    must change its password first; API tokens are never held back by that)."""
    client = request.client.host if request.client else None
    actor, must_change = await _authenticate(context, request.headers.get("authorization"), client)
    if must_change:
        raise password_change_required()
    return actor


async def require_admin_allowing_password_change(
    request: Request, context: Annotated[DashboardContext, Depends(get_context)]
) -> Actor:
    """FastAPI dependency for the few routes open to an admin who must change their password."""
    client = request.client.host if request.client else None
    return await authenticate(context, request.headers.get("authorization"), client)


AdminActor = Annotated[Actor, Depends(require_admin)]
"""Annotate a route parameter with this to require an admin and receive who it is."""

PendingAdminActor = Annotated[Actor, Depends(require_admin_allowing_password_change)]
"""Like :data:`AdminActor`, but also lets in an admin who must still change their password (only
for ``GET /me`` and ``POST /me/password``)."""
