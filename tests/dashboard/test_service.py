"""Starting a dashboard: the first admin (bootstrap), the context, and the real ``propylon dashboard``
and ``propylon migrate`` commands as subprocesses."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select

from propylon.dashboard.bootstrap import BootstrapError, bootstrap_admin
from propylon.dashboard.notify import InProcessNotifier, RedisNotifier
from propylon.dashboard.service import StartupError, build_context, close_context, settings_problems
from propylon.dashboard.sql_nodes import SqlNodeRegistry
from propylon.settings import DashboardSettings
from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import AdminUserRow, AuditEntryRow
from propylon.web.credentials import verify_password

PASSWORD_LINE = re.compile(r"password: (\S+)")
STRONG = "an admin passphrase from the environment"


async def _admins(database: Database) -> list[AdminUserRow]:
    async with database.sessions() as session:
        return list((await session.scalars(select(AdminUserRow))).all())


# --- bootstrap ---------------------------------------------------------------------------------


async def test_first_start_creates_admin_with_a_one_time_password_printed_once(database: Database) -> None:
    first = io.StringIO()
    created = await bootstrap_admin(database, None, first)
    assert created is not None
    assert created.generated
    printed = PASSWORD_LINE.findall(first.getvalue())
    assert len(printed) == 1
    [admin] = await _admins(database)
    assert admin.username == "admin"
    assert admin.must_change_password is True
    assert verify_password(admin.password_hash, printed[0])
    assert printed[0] not in admin.password_hash

    second = io.StringIO()
    assert await bootstrap_admin(database, None, second) is None
    assert second.getvalue() == ""
    [again] = await _admins(database)
    assert (again.id, again.password_hash) == (admin.id, admin.password_hash)
    assert again.updated_at == admin.updated_at

    async with database.sessions() as session:
        entries = list((await session.scalars(select(AuditEntryRow))).all())
    assert [(e.actor, e.action, e.resource_type) for e in entries] == [
        ("system:propylon", "create", "admin_user"),
    ]
    assert printed[0] not in str(entries[0].details)


async def test_password_from_the_environment(database: Database) -> None:
    with pytest.raises(BootstrapError, match="at least 12"):
        await bootstrap_admin(database, "too short", io.StringIO())
    assert await _admins(database) == []
    out = io.StringIO()
    created = await bootstrap_admin(database, STRONG, out)
    assert created is not None
    assert not created.generated
    assert out.getvalue() == ""
    [admin] = await _admins(database)
    assert admin.must_change_password is False
    assert verify_password(admin.password_hash, STRONG)


async def test_two_dashboards_starting_together_create_one_admin(
    database: Database, database_url: str
) -> None:
    other = Database.connect(database_url)
    try:
        outs = [io.StringIO() for _ in range(4)]
        results = await asyncio.gather(*(
            bootstrap_admin(db, None, out) for db, out in zip([database, other] * 2, outs, strict=True)
        ))
    finally:
        await other.aclose()
    assert sum(r is not None for r in results) == 1
    printed = [p for out in outs for p in PASSWORD_LINE.findall(out.getvalue())]
    assert len(printed) == 1
    [admin] = await _admins(database)
    assert verify_password(admin.password_hash, printed[0])


# --- context -----------------------------------------------------------------------------------


async def test_build_context_on_a_new_data_dir(tmp_path: Path, database_url: str) -> None:
    settings = DashboardSettings(data_dir=tmp_path / "data", database_url=database_url,
                                 admin_password=SecretStr(STRONG))
    out = io.StringIO()
    context = await build_context(settings, out)
    try:
        key_file = tmp_path / "data" / "secret.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert context.secrets.decrypt(context.secrets.encrypt("x")) == "x"
        assert isinstance(context.nodes, SqlNodeRegistry)
        assert isinstance(context.notifier, InProcessNotifier)
        assert context.login_throttle.max_failures == settings.admin_login_max_failures
        assert [a.username for a in await _admins(context.database)] == ["admin"]
        assert out.getvalue() == ""
    finally:
        await close_context(context)
    # A second start on the same database and key file: same key, no new admin.
    again = await build_context(settings, out)
    try:
        assert len(await _admins(again.database)) == 1
    finally:
        await close_context(again)


async def test_explicit_secret_key_means_no_key_file(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    settings = DashboardSettings(data_dir=tmp_path, secret_key=SecretStr(key),
                                 admin_password=SecretStr(STRONG))
    context = await build_context(settings, io.StringIO())
    try:
        assert not (tmp_path / "secret.key").exists()
        assert Fernet(key.encode()).decrypt(context.secrets.encrypt("x").encode()) == b"x"
    finally:
        await close_context(context)


@pytest.mark.services
async def test_redis_url_selects_the_redis_notifier(tmp_path: Path) -> None:
    settings = DashboardSettings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/0",
                                 admin_password=SecretStr(STRONG))
    try:
        context = await build_context(settings, io.StringIO())
    except StartupError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"Redis not usable: {exc}")
    try:
        assert isinstance(context.notifier, RedisNotifier)
        if not await context.notifier.wait_subscribed(2.0):
            pytest.skip("Redis is not reachable at 127.0.0.1:6379")
    finally:
        await close_context(context)


async def test_bad_settings_are_refused_with_clear_reasons(tmp_path: Path) -> None:
    out = io.StringIO()
    production = DashboardSettings(data_dir=tmp_path, production=True)
    problems = settings_problems(production)
    assert len(problems) == 2
    assert "PROPYLON_NODE_SECRET" in problems[0]
    assert "PROPYLON_SECRET_KEY" in problems[1]
    with pytest.raises(StartupError, match="PROPYLON_NODE_SECRET"):
        await build_context(production, io.StringIO())
    assert not (tmp_path / "propylon.db").exists()

    short = DashboardSettings(data_dir=tmp_path, node_secret=SecretStr("x" * 31))
    assert settings_problems(short) == ["PROPYLON_NODE_SECRET must be at least 32 characters"]
    ready = DashboardSettings(data_dir=tmp_path, production=True, node_secret=SecretStr("n" * 32),
                              secret_key=SecretStr(Fernet.generate_key().decode()))
    assert settings_problems(ready) == []

    with pytest.raises(StartupError, match="Fernet key"):
        await build_context(DashboardSettings(data_dir=tmp_path, secret_key=SecretStr("nope")), out)
    with pytest.raises(StartupError, match="at least 12"):
        await build_context(DashboardSettings(data_dir=tmp_path, admin_password=SecretStr("short")), out)


# --- the real command --------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROPYLON_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Process:
    """A ``propylon`` subprocess whose standard output is collected line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "propylon.cli", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.errors), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(stream: object, into: list[str]) -> None:
        assert isinstance(stream, io.TextIOBase)
        for line in stream:
            into.append(line)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first stdout match of ``pattern``, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not printed; stdout={self.lines!r} stderr={self.errors[-5:]!r}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            for thread in self._threads:
                thread.join(5)

    def kill(self) -> None:
        """Make sure the process is gone (test clean-up)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Started processes, killed at the end whatever happened."""
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


def _start(processes: list[Process], data_dir: Path, *extra: str) -> tuple[Process, str]:
    process = Process("dashboard", "--port", "0", "--data-dir", str(data_dir), *extra)
    processes.append(process)
    url = process.wait_for(r"listening on (http://127\.0\.0\.1:\d+)").group(1)
    return process, url


@pytest.mark.slow
def test_propylon_dashboard_end_to_end(tmp_path: Path, processes: list[Process]) -> None:
    data_dir = tmp_path / "data"
    first, url = _start(processes, data_dir)
    password_lines = [line for line in first.lines if PASSWORD_LINE.search(line)]
    assert len(password_lines) == 1
    password = PASSWORD_LINE.findall(password_lines[0])[0]
    assert all(password not in line for line in first.errors)  # never logged

    with httpx.Client(base_url=url, timeout=10) as client:
        me = client.get("/api/v1/me", auth=("admin", password))
        assert me.status_code == 200
        assert me.json()["must_change_password"] is True
        assert client.post("/api/v1/tokens", auth=("admin", password), json={"name": "ci"}).status_code == 403
        changed = client.post("/api/v1/me/password", auth=("admin", password),
                              json={"current_password": password, "new_password": STRONG})
        assert changed.status_code == 204
        created = client.post("/api/v1/tokens", auth=("admin", STRONG), json={"name": "ci"})
        assert created.status_code == 201
        token = created.json()["token"]
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/api/openapi.json").status_code == 200
    assert first.stop() == 0
    assert not any("Traceback" in line for line in first.errors)

    second, url = _start(processes, data_dir)
    assert not any(PASSWORD_LINE.search(line) for line in second.lines)
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    second.proc.send_signal(signal.SIGINT)
    assert second.stop() == 0


@pytest.mark.slow
def test_a_taken_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "propylon.cli", "dashboard", "--port", str(port),
             "--data-dir", str(tmp_path / "data")],
            capture_output=True, text=True, env=_env(), timeout=60, check=False,
        )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"propylon dashboard: port {port} on 127.0.0.1 is already in use; stop the other "
                    "program or choose another port with --port (PROPYLON_DASHBOARD_PORT)")
    assert "password" not in result.stdout
    assert not (tmp_path / "data").exists()  # refused before touching anything


@pytest.mark.slow
def test_propylon_migrate_prints_the_revision(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "propylon.cli", "migrate", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=_env(), timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"at schema revision 0001\b", result.stdout)
    assert (tmp_path / "propylon.db").exists()


@pytest.mark.slow
def test_a_long_polling_gateway_does_not_hold_up_the_stop(tmp_path: Path, processes: list[Process]) -> None:
    process, url = _start(processes, tmp_path / "data")
    secret = (tmp_path / "data" / "node.secret").read_text().strip()  # generated in development
    headers = {"Authorization": f"Bearer {secret}"}
    current = httpx.get(f"{url}/system/config", headers=headers, timeout=10)
    assert current.status_code == 200
    version = current.headers["etag"].strip('"')
    answers: list[int] = []

    def long_poll() -> None:
        response = httpx.get(f"{url}/system/config", params={"after": version, "wait": 25},
                             headers=headers, timeout=40)
        answers.append(response.status_code)

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(1.0)  # the poll is waiting in the dashboard now
    assert poller.is_alive()
    started = time.monotonic()
    assert process.stop() == 0
    poller.join(10)
    # Without releasing the waiters the stop takes the whole graceful period (10 s).
    assert time.monotonic() - started < 5, time.monotonic() - started
    assert answers == [304]
