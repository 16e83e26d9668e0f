"""``propylon up`` and ``propylon demo`` end to end, as a newcomer runs them: real processes, the
embedded IdP, SQLite in a fresh data directory, free loopback ports."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port

pytestmark = pytest.mark.timeout(240)


@dataclass
class Stack:
    """A running ``propylon up``."""

    proc: subprocess.Popen[str]
    ports: dict[str, int]
    data_dir: Path
    output: Path

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.ports['dashboard']}"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def text(self) -> str:
        return self.output.read_text()


def _up(data_dir: Path, ports: dict[str, int], output: Path) -> subprocess.Popen[str]:
    with output.open("w") as sink:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "propylon.cli", "up", "--data-dir", str(data_dir),
             "--port", str(ports["gateway"]), "--dashboard-port", str(ports["dashboard"]),
             "--idp-port", str(ports["idp"]), "--upstream-port", str(ports["upstream"])],
            stdout=sink, stderr=subprocess.STDOUT, text=True)


def _wait_banner(stack: Stack, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Press Ctrl-C to stop." in stack.text():
            return
        if stack.proc.poll() is not None:
            raise AssertionError(f"propylon up exited with {stack.proc.returncode}:\n{stack.text()}")
        time.sleep(0.2)
    raise AssertionError(f"propylon up did not come up:\n{stack.text()}")


def _interrupt(stack: Stack) -> int:
    stack.proc.send_signal(signal.SIGINT)
    try:
        return stack.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stack.proc.kill()
        raise


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("up")
    ports = {name: free_port() for name in ("gateway", "dashboard", "idp", "upstream")}
    output = root / "up.out"
    started = Stack(_up(root / "data", ports, output), ports, root / "data", output)
    try:
        _wait_banner(started)
        yield started
    finally:
        if started.proc.poll() is None:
            _interrupt(started)


def test_up_prints_urls_credentials_and_next_steps(stack: Stack) -> None:
    text = stack.text()
    assert f"{stack.dashboard}/portal/" in text
    assert stack.gateway in text
    assert "Seeded the demo (first start)" in text
    admin_password = (stack.data_dir / "admin.password").read_text().strip()
    assert f"admin / {admin_password}" in text
    assert (stack.data_dir / "admin.password").stat().st_mode & 0o077 == 0
    # The printed admin credentials really work.
    me = httpx.get(f"{stack.dashboard}/api/v1/me", auth=("admin", admin_password), trust_env=False)
    assert me.status_code == 200, me.text
    portal = httpx.get(f"{stack.dashboard}/portal/", trust_env=False)
    assert portal.status_code == 200


def test_demo_runs_the_whole_flow(stack: Stack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "propylon.cli", "demo", "--dashboard", stack.dashboard,
         "--gateway", stack.gateway],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for expected in ("-> 200", "-> 429", "Retry-After", "-> 403 (token refused)",
                     "Every step behaved as expected."):
        assert expected in result.stdout, result.stdout


def test_demo_fails_when_nothing_runs_there(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "propylon.cli", "demo", "--dashboard", f"http://127.0.0.1:{port}",
         "--gateway", f"http://127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "FAILED" in result.stdout


def test_a_port_in_use_gives_a_clear_message(stack: Stack, tmp_path: Path) -> None:
    ports = {**stack.ports, "gateway": free_port(), "idp": free_port(), "upstream": free_port()}
    output = tmp_path / "second.out"
    second = _up(tmp_path / "data", ports, output)
    assert second.wait(timeout=60) != 0
    text = output.read_text()
    assert f"port {stack.ports['dashboard']} (dashboard) is already in use" in text
    assert "--dashboard-port" in text
    assert "Traceback" not in text


def test_ctrl_c_stops_everything_and_a_restart_keeps_the_data(stack: Stack) -> None:
    # Runs last in this module: it stops the shared stack.
    admin_password = (stack.data_dir / "admin.password").read_text().strip()
    with httpx.Client(base_url=stack.dashboard, auth=("admin", admin_password), trust_env=False) as admin:
        developers = admin.get("/api/v1/developers").json()
    assert _interrupt(stack) == 0, stack.text()
    assert "Propylon stopped" in stack.text()
    for port in stack.ports.values():
        assert not _listening(port)
    output = stack.output.with_name("restart.out")
    again = Stack(_up(stack.data_dir, stack.ports, output), stack.ports, stack.data_dir, output)
    try:
        _wait_banner(again)
        assert "Demo data kept from the last run" in again.text()
        with httpx.Client(base_url=again.dashboard, auth=("admin", admin_password),
                          trust_env=False) as admin:
            assert admin.get("/api/v1/developers").json() == developers
    finally:
        assert _interrupt(again) == 0, again.text()
