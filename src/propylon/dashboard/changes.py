"""Every write to the control plane goes through here: it is audited, and when it changes what
gateways serve it bumps the configuration version in the same transaction.

Route handlers call :func:`record_change` inside their transaction, then, after the commit,
:meth:`DashboardContext.config_changed` (see ``context.py``) with the version it returned, which
tells the gateways. An audited write that fails rolls back with its audit row: no half-written
record, no audit entry for a change that did not happen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import AuditEntryRow, ConfigState

_STATE_ID = 1


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is making a request: an admin (by password or API token), a developer, or the system."""

    kind: str
    """``admin``, ``token``, ``developer`` or ``system``."""
    name: str
    """Username, token name, developer email, or a component name for ``system``."""
    id: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


SYSTEM = Actor("system", "propylon")


def now() -> datetime:
    """The current time, timezone-aware UTC (what every timestamp column stores)."""
    return datetime.now(UTC)


async def ensure_config_state(database: Database) -> None:
    """Create the configuration-version row if this is a new database (idempotent, and safe when
    two dashboards start together: the loser's insert fails on the primary key and is ignored)."""
    try:
        async with database.transaction() as session:
            if await session.get(ConfigState, _STATE_ID) is None:
                session.add(ConfigState(id=_STATE_ID, version=0, updated_at=now()))
    except IntegrityError:
        pass


async def current_version(session: AsyncSession) -> int:
    """The configuration version gateways should be serving."""
    version = await session.scalar(select(ConfigState.version).where(ConfigState.id == _STATE_ID))
    return int(version or 0)


async def record_change(
    session: AsyncSession,
    actor: Actor,
    action: str,
    resource_type: str,
    resource_id: str,
    details: Mapping[str, Any] | None = None,
    *,
    versioned: bool = True,
) -> int | None:
    """Audit a write, and bump the config version when it is a configuration write (``versioned``:
    identity providers, APIs, policies, catalogue, portal settings, client revocations), in
    ``session``'s transaction. Returns the new version, or ``None`` for writes that are not
    configuration (accounts, tokens, developer profiles).

    ``details`` must not contain secrets: callers pass the public view of a resource.
    """
    version: int | None = None
    if versioned:
        result = await session.execute(
            update(ConfigState)
            .where(ConfigState.id == _STATE_ID)
            .values(version=ConfigState.version + 1, updated_at=now())
            .returning(ConfigState.version)
        )
        version = int(result.scalar_one())
    session.add(
        AuditEntryRow(
            at=now(),
            actor=str(actor),
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            config_version=version,
            details=dict(details or {}),
        )
    )
    return version
