"""The reconciler runs in the background of the real ``propylon dashboard`` process: a registration
that failed half-way (its client still at the IdP) and a deletion the IdP had not confirmed are both
finished at the test registration server, with no request from anyone, and the process still
stops cleanly. Then the loop itself in-process: it survives a failing run and stops when told."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from tests.dashboard.conftest import Dashboard
from tests.support.client_records import add_client, add_developer, add_identity_provider
from tests.support.registration_server import RegistrationServer

from propylon.dashboard.service import background_reconciler
from propylon.storage.secret_box import SecretBox
from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import OAuthClientRow

pytestmark = pytest.mark.slow


class DashboardProcess:
    """``propylon dashboard`` as a subprocess with its output collected."""

    def __init__(self, data_dir: Path, environment: dict[str, str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROPYLON_")}
        env.update(environment, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "propylon.cli", "dashboard", "--port", "0", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(re.search(pattern, line) for line in list(self.lines)):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not printed: {self.lines[-20:]!r}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(20)
        self._reader.join(5)
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def server() -> Iterator[RegistrationServer]:
    with RegistrationServer() as running:
        yield running


async def _records(database: Database) -> list[OAuthClientRow]:
    async with database.sessions() as session:
        return list((await session.scalars(select(OAuthClientRow))).all())


async def test_the_running_dashboard_reconciles_in_the_background(
    tmp_path: Path, server: RegistrationServer
) -> None:
    key = Fernet.generate_key().decode()
    process = DashboardProcess(tmp_path, {
        "PROPYLON_SECRET_KEY": key, "PROPYLON_ADMIN_PASSWORD": "an admin passphrase for the test",
        "PROPYLON_RECONCILE_INTERVAL": "0.2", "PROPYLON_RECONCILE_AFTER": "0",
        "PROPYLON_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8",
    })
    try:
        process.wait_for(r"listening on http://127\.0\.0\.1:\d+")  # migrated, serving
        database = Database.connect(f"sqlite+aiosqlite:///{(tmp_path / 'propylon.db').absolute()}")
        try:
            box = SecretBox.from_setting(key)
            idp_id = await add_identity_provider(database, issuer=server.base_url)
            developer_id = await add_developer(database, "dev@example.com")
            orphan, undeleted = server.add_client(), server.add_client()
            await add_client(database, box, developer_id=developer_id, identity_provider_id=idp_id,
                             registered=orphan, status="failed")
            await add_client(database, box, developer_id=developer_id, identity_provider_id=idp_id,
                             registered=undeleted, status="deleting")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and (await _records(database) or server.has_client(
                    orphan.client_id) or server.has_client(undeleted.client_id)):
                await asyncio.sleep(0.1)
            assert await _records(database) == []
            assert not server.has_client(orphan.client_id)
            assert not server.has_client(undeleted.client_id)
            assert {(r.method, r.authorization) for r in server.requests} == {
                ("DELETE", f"Bearer {orphan.access_token}"), ("DELETE", f"Bearer {undeleted.access_token}")}
        finally:
            await database.aclose()
        assert process.stop() == 0
        output = "".join(process.lines)
        assert "reconciler: OAuth client record" in output
        assert "reconciler: deleting OAuth client record" in output
        assert "Traceback" not in output
    finally:
        process.kill()


async def test_the_loop_outlives_a_failing_run_and_stops_when_told(
    dashboard: Dashboard, server: RegistrationServer, caplog: pytest.LogCaptureFixture
) -> None:
    context = dashboard.context
    idp_id = await add_identity_provider(context.database, issuer=server.base_url)
    developer_id = await add_developer(context.database, "dev@example.com")
    stuck = server.add_client()
    await add_client(context.database, context.secrets, developer_id=developer_id,
                     identity_provider_id=idp_id, registered=stuck, status="failed")
    fast = replace(context, settings=context.settings.model_copy(
        update={"reconcile_interval": 0.05, "reconcile_after": 0.0}))
    server.fail_with = 503
    with caplog.at_level(logging.INFO, logger="propylon.dashboard.service"):
        async with background_reconciler(fast) as task:
            assert task is not None
            while len(server.requests) < 2:  # failed twice: kept, and tried again
                await asyncio.sleep(0.02)
            server.fail_with = None
            while server.has_client(stuck.client_id):
                await asyncio.sleep(0.02)
            while await _records(context.database):
                await asyncio.sleep(0.02)
        assert task.done()
    messages = [record.getMessage() for record in caplog.records]
    assert any(": kept (" in message for message in messages)
    assert any(": deleted" in message for message in messages)
    off = replace(context, settings=context.settings.model_copy(update={"reconcile_interval": 0.0}))
    async with background_reconciler(off) as none:
        assert none is None
