"""The IdP initial access token never leaves the dashboard in clear: not in the database (file, WAL,
``pg_dump``), not in responses, the audit log, the gateway snapshot or the logs."""

from __future__ import annotations

import logging
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from propylon.dashboard.snapshot import SqlSnapshotSource
from tests.dashboard.conftest import Dashboard
from tests.dashboard.documents import audit, created, idp_doc
from tests.support.idp import TestIdp

BASE = "/api/v1/identity-providers"


def _database_bytes(database_url: str) -> bytes:
    """Everything the database holds on disk: the SQLite file and its WAL, or a pg_dump."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    dump = subprocess.run(
        ["pg_dump", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432),
         "-U", url.username or "postgres", url.database or ""],
        capture_output=True, timeout=60, check=True,
    )
    return dump.stdout


async def test_initial_access_token_is_never_in_clear(
    dashboard: Dashboard, admin: httpx.AsyncClient, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = f"IAT-{uuid.uuid4().hex}-do-not-leak"
    responses: list[httpx.Response] = []
    with TestIdp(registration=True, initial_access_token=secret) as idp:
        # Refused requests must not echo it either.
        responses.append(await admin.post(BASE, json=idp_doc("bad", "ftp://x", initial_access_token=secret)))
        assert responses[-1].status_code == 422
        await created(admin, BASE, idp_doc(issuer=idp.issuer, initial_access_token=secret))
        responses.append(await admin.post(f"{BASE}/main/discover"))
        responses.append(await admin.post(f"{BASE}/main/test", json={"dry_run_registration": True}))
        # The dry run really sent the token (decrypted) to the IdP, and nowhere else.
        assert responses[-1].json()["ok"] is True, responses[-1].text
        assert idp.registration_requests[0] == ("POST", "/register", f"Bearer {secret}")
        responses.append(await admin.put(f"{BASE}/main", json=idp_doc(issuer=idp.issuer, name="renamed")))
        responses.append(await admin.get(f"{BASE}/main"))
        responses.append(await admin.get(BASE))
        bad_put = idp_doc(issuer="ftp://x", initial_access_token=secret)
        responses.append(await admin.put(f"{BASE}/main", json=bad_put))
    assert [r.status_code for r in responses] == [422, 200, 200, 200, 200, 200, 422]
    assert responses[-2].json()[0]["has_initial_access_token"] is True
    for response in responses:
        assert secret not in response.text

    # Stored encrypted, under the context's key.
    async with dashboard.context.database.sessions() as session:
        ciphertext = await session.scalar(
            text("SELECT initial_access_token_enc FROM identity_providers WHERE id = 'main'")
        )
    assert isinstance(ciphertext, str)
    assert dashboard.context.secrets.decrypt(ciphertext) == secret

    on_disk = _database_bytes(database_url)
    assert ciphertext.encode() in on_disk, "the check must look where the data really is"
    assert secret.encode() not in on_disk

    for entry in await audit(dashboard.context.database):
        assert secret not in orjson.dumps(entry.details).decode()
    snapshot = await SqlSnapshotSource(dashboard.context.database).snapshot()
    assert secret not in orjson.dumps(snapshot.config).decode()

    assert caplog.records, "DEBUG logging was captured"
    assert secret not in caplog.text
    for record in caplog.records:
        assert secret not in record.getMessage()
