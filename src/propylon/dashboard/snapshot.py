"""The configuration gateways serve, built from the database: :class:`SqlSnapshotSource`.

The snapshot is read in one transaction (on PostgreSQL a read-only REPEATABLE READ one, so that the
version and every row come from the same moment; SQLite's transactions are serializable already).
It is exactly the shape of :class:`propylon.domain.config.GatewayConfig`: identity providers and
policies reduced to their gateway fields (never a secret), APIs as stored, the active OAuth clients
and the tombstones of deleted ones.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from propylon.dashboard.changes import current_version
from propylon.dashboard.config_sync import ConfigSnapshot
from propylon.dashboard.resources.store import load_state
from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import ClientTombstoneRow

log = logging.getLogger(__name__)


class SqlSnapshotSource:
    """A :class:`~propylon.dashboard.config_sync.SnapshotSource` reading the control-plane database.

    Every write that changes what gateways serve bumps the version, so the last snapshot is kept and
    a call whose version read finds it unchanged costs one small query instead of reading every
    table (each gateway's poll asks for the snapshot). Treat the returned config as read-only.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._last: ConfigSnapshot | None = None

    async def snapshot(self) -> ConfigSnapshot:
        """The configuration in force and its version, read consistently."""
        last = self._last
        if last is not None:
            async with self._database.sessions() as session:
                if await current_version(session) == last.version:
                    return last
        self._last = snapshot = await self._read()
        return snapshot

    async def _read(self) -> ConfigSnapshot:
        async with self._database.transaction() as session:
            if self._database.dialect == "postgresql":
                # Must be the transaction's first statement; READ COMMITTED would let a write that
                # commits between two SELECTs give a version that does not match the rows.
                await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            version = await current_version(session)
            config = await build_config(session)
        config["version"] = str(version)
        return ConfigSnapshot(version=version, config=config)


async def build_config(session: AsyncSession) -> dict[str, Any]:
    """The GatewayConfig-shaped data of everything stored, read in ``session``'s transaction."""
    state = await load_state(session)
    policy_ids = set(state.policies)
    revoked = sorted((await session.scalars(select(ClientTombstoneRow.client_id))).all())
    revoked_set = set(revoked)
    clients = []
    for client in sorted(state.clients, key=lambda c: c.client_id):
        if client.client_id in revoked_set:
            continue
        known = [pol for pol in client.policies if pol in policy_ids]
        if len(known) != len(client.policies):
            # Admin writes refuse to delete a policy a client uses, but a client written
            # concurrently could still name one; one bad client must not stop every gateway update.
            log.warning("OAuth client %s names unknown policies %s; they are left out of the snapshot",
                        client.client_id, sorted(set(client.policies) - policy_ids))
        clients.append({"client_id": client.client_id, "policies": known,
                        "developer_id": client.developer_id})
    return {
        "identity_providers": [idp.gateway_document() for _, idp in sorted(state.identity_providers.items())],
        "apis": [api.model_dump(mode="json") for _, api in sorted(state.apis.items())],
        "policies": [policy.gateway_document() for _, policy in sorted(state.policies.items())],
        "clients": clients,
        "revoked_clients": revoked,
    }
