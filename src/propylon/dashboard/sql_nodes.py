"""Gateway heartbeats kept in the control-plane database (table ``gateway_nodes``).

:class:`SqlNodeRegistry` implements :class:`~propylon.dashboard.nodes.NodeRegistry` like
:class:`~propylon.dashboard.nodes.MemoryNodeRegistry`, but every dashboard sees every gateway's
latest report, whichever dashboard received it, and a restart forgets nothing. A report is one
upsert by ``node_id`` (``INSERT … ON CONFLICT DO UPDATE``, on SQLite and PostgreSQL alike), so two
reports of one node racing each other never fail on the primary key.
"""

from __future__ import annotations

import builtins
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from propylon.dashboard.nodes import NodeReport
from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import GatewayNodeRow

FORGET_AFTER = timedelta(days=7)
"""A node silent this long is dropped from the table (autoscaled fleets churn node ids)."""
_PRUNE_EVERY_SECONDS = 60.0


class SqlNodeRegistry:
    """Latest report per gateway node, in the ``gateway_nodes`` table."""

    def __init__(self, database: Database, *, forget_after: timedelta = FORGET_AFTER) -> None:
        self._database = database
        self._forget_after = forget_after
        self._next_prune = 0.0

    async def report(self, node: NodeReport) -> None:
        """Insert or replace ``node.node_id``'s row with ``node``."""
        values: dict[str, Any] = {
            "node_id": node.node_id,
            "hostname": node.hostname,
            "pid": node.pid,
            "address": node.address,
            "config_version": node.config_version,
            "status": node.status,
            "details": dict(node.details),
            "started_at": _from_unix(node.started_at),
            "last_seen": _from_unix(node.last_seen),
        }
        insert = postgresql.insert if self._database.dialect == "postgresql" else sqlite.insert
        statement = insert(GatewayNodeRow).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[GatewayNodeRow.node_id],
            set_={k: statement.excluded[k] for k in values if k != "node_id"},
        )
        async with self._database.transaction() as session:
            await session.execute(statement)
            if time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + _PRUNE_EVERY_SECONDS
                horizon = datetime.now(UTC) - self._forget_after
                await session.execute(delete(GatewayNodeRow).where(GatewayNodeRow.last_seen < horizon))

    async def list(self) -> builtins.list[NodeReport]:
        """Every known node's latest report, ordered by node id."""
        async with self._database.sessions() as session:
            rows = (await session.scalars(select(GatewayNodeRow).order_by(GatewayNodeRow.node_id))).all()
        return [
            NodeReport(
                node_id=row.node_id,
                hostname=row.hostname,
                pid=row.pid,
                address=row.address,
                config_version=row.config_version,
                started_at=row.started_at.timestamp(),
                last_seen=row.last_seen.timestamp(),
                status=row.status,
                details=dict(row.details or {}),
            )
            for row in rows
        ]


def _from_unix(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
