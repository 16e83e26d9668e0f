"""``/api/v1/portal-settings``: the portal's global options and DCR defaults (one document).

Until an admin saves them the defaults of :class:`~propylon.domain.resources.PortalSettings` apply.
Writes are audited and, like every configuration write, get a new configuration version.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from propylon.dashboard.admin_auth import AdminActor
from propylon.dashboard.changes import now, record_change
from propylon.dashboard.context import DashboardContext
from propylon.dashboard.resources.deps import Context
from propylon.domain.resources import PortalSettings, PortalSettingsView
from propylon.storage.sql.schema import PortalSettingsRow

router = APIRouter(prefix="/portal-settings", tags=["portal settings"])

_ROW_ID = 1


async def _stored(session: AsyncSession) -> PortalSettingsView:
    row = await session.get(PortalSettingsRow, _ROW_ID)
    if row is None:
        return PortalSettingsView(updated_at=None)
    try:
        settings = PortalSettings.model_validate(row.spec)
    except ValidationError:
        # Saved under other rules: fall back to the defaults rather than break the portal.
        settings = PortalSettings()
    return PortalSettingsView(**settings.model_dump(), updated_at=row.updated_at)


async def load_portal_settings(context: DashboardContext) -> PortalSettings:
    """The portal settings in force (the defaults until an admin saves them)."""
    async with context.database.sessions() as session:
        return await stored_portal_settings(session)


async def stored_portal_settings(session: AsyncSession) -> PortalSettings:
    """The portal settings in force, read in ``session`` (the defaults until an admin saves them)."""
    view = await _stored(session)
    return PortalSettings.model_validate(view.model_dump(exclude={"updated_at"}))


async def write_portal_settings(session: AsyncSession, settings: PortalSettings) -> datetime:
    """Store ``settings`` as the portal-settings document in ``session`` (not audited: the caller
    records the change); returns the time of the change."""
    row = await session.get(PortalSettingsRow, _ROW_ID)
    current = now()
    if row is None:
        row = PortalSettingsRow(id=_ROW_ID)
        session.add(row)
    row.spec = settings.model_dump(mode="json")
    row.updated_at = current
    return current


@router.get("", summary="Get the portal settings")
async def get_portal_settings(context: Context, _actor: AdminActor) -> PortalSettingsView:
    """The portal settings in force."""
    async with context.database.sessions() as session:
        return await _stored(session)


@router.put("", summary="Replace the portal settings")
async def replace_portal_settings(
    body: PortalSettings, context: Context, actor: AdminActor
) -> PortalSettingsView:
    """Replace the whole document (omitted fields take their defaults)."""
    async with context.database.transaction() as session:
        current = await write_portal_settings(session, body)
        await record_change(session, actor, "update", "portal-settings", "portal-settings",
                            {"document": body.model_dump(mode="json")})
    return PortalSettingsView(**body.model_dump(), updated_at=current)
