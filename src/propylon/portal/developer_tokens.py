"""Developer API tokens: the credentials of the portal's JSON API (``Bearer ppd_…``).

A token is shown once, when it is created; only its SHA-256 digest and its first characters (the
``prefix``, so a developer can tell tokens apart) are stored. Every token expires, after
:data:`DEFAULT_TOKEN_DAYS` days unless the developer chooses between 1 and :data:`MAX_TOKEN_DAYS`;
``portal.api.require_developer`` refuses expired and revoked ones. A developer lists and revokes
only their own tokens: another developer's token is "not found", with no hint that it exists.
The web pages (``portal.web``) and the JSON API both go through these functions.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import select

from propylon.dashboard.changes import Actor, now, record_change
from propylon.dashboard.context import DashboardContext
from propylon.dashboard.errors import not_found
from propylon.storage.sql.schema import DeveloperRow, DeveloperTokenRow
from propylon.web.credentials import token_digest

DEVELOPER_TOKEN_PREFIX = "ppd_"  # noqa: S105 - a public marker, not a secret
DEFAULT_TOKEN_DAYS = 90
"""Lifetime of a developer API token when the developer does not choose one."""
MAX_TOKEN_DAYS = 365
"""Longest lifetime a developer may choose: a leaked token must not work forever."""


class DeveloperTokenView(BaseModel):
    """A developer API token as its owner sees it (never the token itself)."""

    id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


def token_view(row: DeveloperTokenRow) -> DeveloperTokenView:
    """The public view of ``row``."""
    return DeveloperTokenView(id=row.id, name=row.name, prefix=row.prefix, created_at=row.created_at,
                              last_used_at=row.last_used_at, expires_at=row.expires_at,
                              revoked_at=row.revoked_at)


def _actor(developer: DeveloperRow | Actor) -> Actor:
    if isinstance(developer, Actor):
        return developer
    return Actor("developer", developer.email, developer.id)


async def create_developer_token(context: DashboardContext, developer: DeveloperRow | Actor,
                                 name: str, *, expires_in_days: int = DEFAULT_TOKEN_DAYS
                                 ) -> tuple[DeveloperTokenRow, str]:
    """A new token for ``developer`` (a developer row, or the ``Actor`` of a signed-in developer)
    and its plaintext, to show once. ``ValueError`` for a lifetime outside 1..:data:`MAX_TOKEN_DAYS`."""
    if not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        raise ValueError(f"a developer token lives 1 to {MAX_TOKEN_DAYS} days, not {expires_in_days}")
    actor = _actor(developer)
    token = DEVELOPER_TOKEN_PREFIX + secrets.token_urlsafe(32)
    created = now()
    row = DeveloperTokenRow(id=str(uuid.uuid4()), developer_id=actor.id, name=name,
                            token_digest=token_digest(token), prefix=token[:12], created_at=created,
                            last_used_at=None, expires_at=created + timedelta(days=expires_in_days),
                            revoked_at=None)
    async with context.database.transaction() as session:
        session.add(row)
        await record_change(session, actor, "create", "developer_token", row.id,
                            {"name": name, "expires_in_days": expires_in_days}, versioned=False)
    return row, token


async def list_developer_tokens(context: DashboardContext, developer_id: str) -> list[DeveloperTokenView]:
    """The developer's tokens, newest first, revoked and expired ones included."""
    async with context.database.sessions() as session:
        rows = (await session.scalars(
            select(DeveloperTokenRow).where(DeveloperTokenRow.developer_id == developer_id)
            .order_by(DeveloperTokenRow.created_at.desc(), DeveloperTokenRow.id))).all()
    return [token_view(row) for row in rows]


async def revoke_developer_token(context: DashboardContext, developer_id: str,
                                 token_id: str) -> DeveloperTokenView:
    """Revoke the developer's token ``token_id`` (at once; revoking twice is harmless). Another
    developer's token, or an unknown id, is a 404."""
    async with context.database.transaction() as session:
        row = await session.get(DeveloperTokenRow, token_id)
        if row is None or row.developer_id != developer_id:
            raise not_found("developer token", token_id)
        if row.revoked_at is None:
            row.revoked_at = now()
            developer = await session.get(DeveloperRow, developer_id)
            actor = Actor("developer", developer.email if developer else developer_id, developer_id)
            await record_change(session, actor, "revoke", "developer_token", row.id,
                                {"name": row.name}, versioned=False)
        return token_view(row)
