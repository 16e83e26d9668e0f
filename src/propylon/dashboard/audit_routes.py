"""``GET /api/v1/audit``: who changed what, when; newest first, filtered and paginated.

Pagination is by id (``before_id``), not by offset: entries keep arriving while an admin pages
back, and an id cursor neither skips nor repeats an entry when they do. The answer's
``next_before_id`` is the cursor for the next (older) page, ``null`` on the last one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from propylon.dashboard.admin_auth import AdminActor
from propylon.dashboard.context import DashboardContext, get_context
from propylon.storage.sql.schema import AuditEntryRow

MAX_LIMIT = 500

router = APIRouter(prefix="/api/v1", tags=["audit"])

# PostgreSQL refuses NUL in text: a filter holding one would be a database error, not "no match".
_NO_NUL = r"^[^\x00]*$"
_ACTOR = "Exact actor, e.g. `admin:alice` or `token:ci`."
_SINCE = "Only entries at or after this time (ISO 8601; UTC when it has no zone)."
_BEFORE = "Only entries older than this id (the previous page's `next_before_id`)."


class AuditEntryOut(BaseModel):
    """One audited write."""

    id: int
    at: datetime
    actor: str = Field(description="`kind:name`: `admin:alice`, `token:ci`, `system:propylon`…")
    action: str
    resource_type: str
    resource_id: str
    config_version: int | None = Field(
        description="The configuration version the write produced (null when gateways are not "
        "affected)."
    )
    details: dict[str, Any] = Field(description="What changed (never secrets).")


class AuditPage(BaseModel):
    """A page of audit entries, newest first."""

    entries: list[AuditEntryOut]
    next_before_id: int | None = Field(
        description="Pass as `before_id` for the next (older) page; null on the last page."
    )


@router.get("/audit", summary="The audit log, newest first (filter, then page with before_id)")
async def list_audit(
    _actor: AdminActor,
    context: Annotated[DashboardContext, Depends(get_context)],
    resource_type: Annotated[str | None, Query(max_length=50, pattern=_NO_NUL)] = None,
    resource_id: Annotated[str | None, Query(max_length=255, pattern=_NO_NUL)] = None,
    actor: Annotated[str | None, Query(max_length=200, pattern=_NO_NUL, description=_ACTOR)] = None,
    since: Annotated[datetime | None, Query(description=_SINCE)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1, description=_BEFORE)] = None,
) -> AuditPage:
    """Audit entries matching every given filter, newest first, at most ``limit``."""
    query = select(AuditEntryRow).order_by(AuditEntryRow.id.desc()).limit(limit + 1)
    if resource_type is not None:
        query = query.where(AuditEntryRow.resource_type == resource_type)
    if resource_id is not None:
        query = query.where(AuditEntryRow.resource_id == resource_id)
    if actor is not None:
        query = query.where(AuditEntryRow.actor == actor)
    if since is not None:
        query = query.where(AuditEntryRow.at >= (since if since.tzinfo else since.replace(tzinfo=UTC)))
    if before_id is not None:
        query = query.where(AuditEntryRow.id < before_id)
    async with context.database.sessions() as session:
        rows = list((await session.scalars(query)).all())
    # One row past the limit tells whether an older page exists without a second query.
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        entries=[
            AuditEntryOut(
                id=row.id, at=row.at, actor=row.actor, action=row.action,
                resource_type=row.resource_type, resource_id=row.resource_id,
                config_version=row.config_version, details=dict(row.details or {}),
            )
            for row in rows
        ],
        next_before_id=rows[-1].id if more and rows else None,
    )
