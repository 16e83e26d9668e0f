"""Server-side sessions of signed-in developers (the ``portal_sessions`` table).

The cookie carries a random session id (256 bits); the table keeps only its SHA-256 digest, the
developer, the session's CSRF secret and its times. A session is valid while it is younger than
the absolute lifetime, was used within the idle lifetime, and its developer is ``active``: the
status is read with the session on every request, so an admin disabling a developer ends their
access at once (the session row is deleted when that is seen). Sign-in always starts a new session
(the id changes, so a planted id is worthless); sign-out and a password change delete sessions.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, or_, select

from propylon.dashboard.changes import Actor, now
from propylon.portal.web.settings import PortalWebSettings
from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import DeveloperRow, PortalSessionRow

SESSION_COOKIE = "propylon_portal"
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")


def session_digest(session_id: str) -> str:
    """The stored form of a session id (hex SHA-256; the id has full entropy, so no slow hash)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A valid session and its developer, as read at the start of a request."""

    digest: str
    csrf_secret: str
    developer_id: str
    email: str
    name: str

    @property
    def actor(self) -> Actor:
        """The developer as the actor of audited changes."""
        return Actor("developer", self.email, self.developer_id)


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just started: the id goes into the cookie and nowhere else."""

    session_id: str
    signed_in: SignedIn


async def start_session(database: Database, settings: PortalWebSettings,
                        developer: DeveloperRow) -> NewSession:
    """A new session for ``developer`` (sessions that have ended meanwhile are purged)."""
    session_id = secrets.token_urlsafe(32)
    current = now()
    row = PortalSessionRow(
        id_digest=session_digest(session_id), developer_id=developer.id,
        csrf_secret=secrets.token_urlsafe(32), created_at=current, last_seen_at=current,
        expires_at=current + timedelta(seconds=settings.session_absolute_seconds),
    )
    async with database.transaction() as session:
        await session.execute(delete(PortalSessionRow).where(or_(
            PortalSessionRow.expires_at <= current,
            PortalSessionRow.last_seen_at <= current - timedelta(seconds=settings.session_idle_seconds),
        )))
        session.add(row)
    return NewSession(session_id, SignedIn(row.id_digest, row.csrf_secret, developer.id,
                                           developer.email, developer.name))


async def find_session(database: Database, settings: PortalWebSettings,
                       session_id: str | None) -> SignedIn | None:
    """The valid session whose id is ``session_id``, or ``None`` (a session found ended, or whose
    developer is no longer active, is deleted)."""
    if session_id is None or not _SESSION_ID.match(session_id):
        return None
    digest = session_digest(session_id)
    current = now()
    async with database.transaction() as session:
        found = (await session.execute(
            select(PortalSessionRow, DeveloperRow)
            .join(DeveloperRow, DeveloperRow.id == PortalSessionRow.developer_id)
            .where(PortalSessionRow.id_digest == digest)
        )).first()
        if found is None:
            return None
        row, developer = found
        idle_since = current - timedelta(seconds=settings.session_idle_seconds)
        if row.expires_at <= current or row.last_seen_at <= idle_since or developer.status != "active":
            await session.delete(row)
            return None
        if row.last_seen_at <= current - timedelta(seconds=settings.session_touch_seconds):
            row.last_seen_at = current
        return SignedIn(digest, row.csrf_secret, developer.id, developer.email, developer.name)


async def end_session(database: Database, digest: str) -> None:
    """End one session (sign-out)."""
    async with database.transaction() as session:
        await session.execute(delete(PortalSessionRow).where(PortalSessionRow.id_digest == digest))


async def end_sessions(database: Database, developer_id: str) -> None:
    """End every session of ``developer_id`` (after a password change)."""
    async with database.transaction() as session:
        await session.execute(delete(PortalSessionRow).where(
            PortalSessionRow.developer_id == developer_id))
