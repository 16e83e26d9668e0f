"""``GET /api/v1/gateways``: the gateways that reported to the dashboard, and whether each one
serves the current configuration.

A gateway heartbeats every few seconds; one not heard from for :data:`STALE_AFTER_SECONDS` is shown
as ``stale`` (it may be down, or cut off from the dashboard while still serving its last good
configuration). Otherwise its ``status`` is the one it reported (``ok``, ``degraded``, ``starting``
or ``stopping``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from propylon.dashboard import changes
from propylon.dashboard.admin_auth import AdminActor
from propylon.dashboard.context import DashboardContext, get_context

STALE_AFTER_SECONDS = 30.0

router = APIRouter(prefix="/api/v1", tags=["gateways"])


class GatewayOut(BaseModel):
    """One gateway node as last reported."""

    id: str = Field(description="The node id the gateway reports (default: its host name).")
    hostname: str
    pid: int
    address: str = Field(description="Where the gateway listens, host:port.")
    config_version: int | None = Field(description="Configuration version the gateway serves.")
    current_config_version: int = Field(description="The dashboard's current configuration version.")
    in_sync: bool = Field(description="Whether the gateway serves the current configuration.")
    started_at: datetime
    last_seen: datetime
    status: str = Field(
        description="`stale` when not heard from for more than 30 s, else the reported status: "
        "`ok`, `degraded`, `starting` or `stopping`."
    )
    reported_status: str = Field(description="The status in the gateway's last heartbeat.")
    details: dict[str, Any]


class GatewayList(BaseModel):
    """Every known gateway, ordered by id."""

    current_config_version: int
    gateways: list[GatewayOut]


@router.get("/gateways", summary="Gateways that reported to the dashboard, with their sync state")
async def list_gateways(
    _actor: AdminActor, context: Annotated[DashboardContext, Depends(get_context)]
) -> GatewayList:
    """Each gateway's latest heartbeat, whether it is in sync and whether it is stale."""
    async with context.database.sessions() as session:
        current = await changes.current_version(session)
    nodes = await context.nodes.list()
    now = time.time()
    gateways = [
        GatewayOut(
            id=node.node_id,
            hostname=node.hostname,
            pid=node.pid,
            address=node.address,
            config_version=node.config_version,
            current_config_version=current,
            in_sync=node.config_version == current,
            started_at=datetime.fromtimestamp(node.started_at, UTC),
            last_seen=datetime.fromtimestamp(node.last_seen, UTC),
            status="stale" if now - node.last_seen > STALE_AFTER_SECONDS else node.status,
            reported_status=node.status,
            details=node.details,
        )
        for node in nodes
    ]
    return GatewayList(current_config_version=current, gateways=gateways)
