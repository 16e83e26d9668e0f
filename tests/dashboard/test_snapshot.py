"""``SqlSnapshotSource``: the configuration gateways receive, built from the database."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime

import httpx

from propylon.dashboard.config_sync import ConfigSnapshot, SnapshotSource
from propylon.dashboard.snapshot import SqlSnapshotSource
from propylon.domain.config import parse_config
from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import ClientTombstoneRow
from tests.dashboard.documents import (
    api_doc,
    created,
    entry_doc,
    idp_doc,
    insert_client,
    policy_doc,
    seed,
)


async def test_an_empty_database_gives_an_empty_valid_config(
    admin: httpx.AsyncClient, database: Database
) -> None:
    source: SnapshotSource = SqlSnapshotSource(database)
    snapshot = await source.snapshot()
    assert isinstance(snapshot, ConfigSnapshot)
    assert snapshot.version == 0
    assert snapshot.config == {"version": "0", "identity_providers": [], "apis": [], "policies": [],
                               "clients": [], "revoked_clients": []}
    assert parse_config(snapshot.config).version == "0"


async def test_snapshot_holds_the_gateway_fields_of_everything(
    admin: httpx.AsyncClient, database: Database
) -> None:
    await created(admin, "/api/v1/identity-providers", idp_doc(
        initial_access_token="iat-snapshot-secret", registration_endpoint="https://idp.example.com/reg",
        audience="orders",
    ))
    await created(admin, "/api/v1/apis", api_doc())
    await created(admin, "/api/v1/policies", policy_doc(key_expires_in_seconds=60, description="d"))
    await created(admin, "/api/v1/catalogue", entry_doc())
    await insert_client(database, client_id="client-b", record_id="r-b")
    await insert_client(database, client_id="client-a", record_id="r-a", developer_id="dev-2")
    await insert_client(database, client_id=None, record_id="r-pending", status="pending")
    await insert_client(database, client_id="client-failed", record_id="r-failed", status="failed")
    await insert_client(database, client_id="client-gone", record_id="r-gone")
    async with database.transaction() as session:
        for client_id in ("client-gone", "client-older"):
            session.add(ClientTombstoneRow(client_id=client_id, deleted_at=datetime.now(UTC), reason="test"))

    snapshot = await SqlSnapshotSource(database).snapshot()
    config = parse_config(snapshot.config)
    assert config.version == str(snapshot.version)
    assert snapshot.version == 4  # IdP, API, policy, catalogue entry: one version per write
    assert snapshot.config["identity_providers"] == [{
        "id": "main", "issuer": "https://idp.example.com/realms/demo", "jwks_uri": None,
        "audience": "orders", "algorithms": list(config.identity_providers[0].algorithms),
        "leeway_seconds": 30,
    }]
    assert snapshot.config["apis"][0]["id"] == "orders"
    assert set(snapshot.config["policies"][0]) == {"id", "rate", "quota", "access_rights"}
    assert snapshot.config["clients"] == [
        {"client_id": "client-a", "policies": ["gold"], "developer_id": "dev-2"},
        {"client_id": "client-b", "policies": ["gold"], "developer_id": "dev-1"},
    ]
    assert snapshot.config["revoked_clients"] == ["client-gone", "client-older"]
    assert "iat-snapshot-secret" not in repr(snapshot)


async def test_every_gateway_write_gives_a_new_version(admin: httpx.AsyncClient, database: Database) -> None:
    source = SqlSnapshotSource(database)
    seen = [await source.snapshot()]

    async def step(method: str, path: str, body: object = None) -> ConfigSnapshot:
        response = await admin.request(method, f"/api/v1/{path}", json=body)
        assert response.is_success, response.text
        snapshot = await source.snapshot()
        parse_config(snapshot.config)
        seen.append(snapshot)
        return snapshot

    await step("POST", "identity-providers", idp_doc())
    await step("POST", "apis", api_doc())
    await step("POST", "policies", policy_doc())
    await step("PUT", "apis/orders", api_doc(policies=("gold",)))
    await step("PUT", "identity-providers/main", idp_doc(leeway_seconds=5))
    assert seen[-1].config["identity_providers"][0]["leeway_seconds"] == 5
    await step("PUT", "policies/gold", policy_doc(rate=None))
    assert seen[-1].config["policies"][0]["rate"] is None
    await step("PUT", "apis/orders", api_doc())
    await step("DELETE", "policies/gold")
    assert [s.version for s in seen] == list(range(len(seen)))
    assert all(a.config != b.config for a, b in itertools.pairwise(seen))

    # Catalogue and portal settings are configuration too: a new version each, same gateway config.
    await created(admin, "/api/v1/policies", policy_doc())
    before = await source.snapshot()
    assert await source.snapshot() is before  # unchanged version: the kept snapshot, not a new read
    assert (await admin.post("/api/v1/catalogue", json=entry_doc())).status_code == 201
    assert (await admin.put("/api/v1/portal-settings", json={"portal_name": "x"})).status_code == 200
    after = await source.snapshot()
    assert after.version == before.version + 2
    assert {k: v for k, v in after.config.items() if k != "version"} == {
        k: v for k, v in before.config.items() if k != "version"
    }
    # Another source (another dashboard) on the same database builds the same document.
    assert await SqlSnapshotSource(database).snapshot() == after


async def test_version_and_rows_are_read_together(admin: httpx.AsyncClient, database: Database) -> None:
    await seed(admin)
    source = SqlSnapshotSource(database)
    base = await source.snapshot()
    apis_at_base = len(base.config["apis"])

    async def writer(index: int) -> None:
        document = {"id": f"api-{index}", "listen_path": f"/p{index}/", "upstream": "http://127.0.0.1:9",
                    "auth": {"type": "keyless"}}
        assert (await admin.post("/api/v1/apis", json=document)).status_code == 201

    async def reader() -> list[ConfigSnapshot]:
        taken = []
        for _ in range(15):
            taken.append(await source.snapshot())
            await asyncio.sleep(0)
        return taken

    results = await asyncio.gather(*(writer(i) for i in range(8)), reader(), reader())
    snapshots = [snap for result in results if isinstance(result, list) for snap in result]
    for snap in snapshots:
        # Each write adds one API and one version: a snapshot mixing two moments would not match.
        assert len(snap.config["apis"]) - apis_at_base == snap.version - base.version
    final = await source.snapshot()
    assert final.version == base.version + 8
    parse_config(final.config)
