"""The control plane end to end, every part a real process: ``propylon dashboard`` on SQLite, a
``propylon gateway --dashboard`` pulling its signed snapshot, the echo upstream, and the
``propylon import-tyk --dashboard`` command. A change made through the admin API must be in force
on the gateway within 2 seconds; the gateway must keep serving when the dashboard is gone, and
start again from its last good snapshot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.test_process import _stop, _wait_for_status, echo_server  # noqa: F401
from tests.support.processes import (
    LOOPBACK_ALLOWED,
    NODE_SECRET,
    admin_token,
    free_port,
    spawn,
    start_dashboard,
    wait_http,
)
from tests.tyk.test_translate import SAMPLES

pytestmark = pytest.mark.slow

PROPAGATION_LIMIT = 2.0


def _start_gateway(dashboard: str, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    proc = spawn("gateway", "--dashboard", dashboard, "--port", str(port), "--data-dir", str(data_dir),
                  env={"PROPYLON_NODE_SECRET": NODE_SECRET, "PROPYLON_NODE_ID": "it-gateway",
                       **LOOPBACK_ALLOWED})
    wait_http(f"http://127.0.0.1:{port}/", proc)
    return proc


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """The processes a test started, stopped (SIGTERM, then kill) at the end whatever happens."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


@pytest.fixture
def clients() -> Iterator[list[httpx.Client]]:
    """HTTP clients a test opened, closed at the end."""
    opened: list[httpx.Client] = []
    yield opened
    for client in opened:
        client.close()


def _time_until(url: str, status: int) -> float:
    return _wait_for_status(url, status, timeout=10.0)


def test_admin_changes_reach_a_running_gateway_within_two_seconds(
    tmp_path: Path, echo_server: int, stack: dict[str, subprocess.Popen[bytes]],  # noqa: F811
    clients: list[httpx.Client],
) -> None:
    dash_port, gw_port = free_port(), free_port()
    dash, gw = f"http://127.0.0.1:{dash_port}", f"http://127.0.0.1:{gw_port}"
    stack["dashboard"] = start_dashboard(dash_port, str(tmp_path / "dashboard"))
    token = admin_token(dash)
    admin = httpx.Client(base_url=dash, headers={"Authorization": f"Bearer {token}"}, trust_env=False,
                         timeout=10)
    clients.append(admin)
    upstream = f"http://127.0.0.1:{echo_server}/"
    first = {"id": "first", "listen_path": "/first/", "upstream": upstream, "strip_listen_path": True,
             "auth": {"type": "keyless"}}
    assert admin.post("/api/v1/apis", json=first).status_code == 201

    stack["gateway"] = _start_gateway(dash, tmp_path / "gateway", gw_port)
    assert httpx.get(f"{gw}/first/hello", trust_env=False).status_code == 200
    assert httpx.get(f"{gw}/second/hello", trust_env=False).status_code == 404

    # A new API, then a policy limiting it: each in force within the limit.
    second = {**first, "id": "second", "listen_path": "/second/"}
    assert admin.post("/api/v1/apis", json=second).status_code == 201
    assert _time_until(f"{gw}/second/hello", 200) < PROPAGATION_LIMIT
    policy = {"id": "tight", "rate": {"requests": 1, "per_seconds": 3600},
              "access_rights": {"second": {}}}
    assert admin.post("/api/v1/policies", json=policy).status_code == 201
    limited = {**second, "auth": {"type": "keyless", "policies": ["tight"]}}
    assert admin.put("/api/v1/apis/second", json=limited).status_code == 200
    assert _time_until(f"{gw}/second/again", 429) < PROPAGATION_LIMIT
    assert admin.delete("/api/v1/apis/first").status_code == 204
    assert _time_until(f"{gw}/first/hello", 404) < PROPAGATION_LIMIT

    # Tyk definitions imported with the CLI are served too (the sample's upstream is not on this
    # machine, so the gateway answers 502 rather than 404: the route exists).
    imported = subprocess.run(
        [sys.executable, "-m", "propylon.cli", "import-tyk", str(SAMPLES), "--dashboard", dash],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PROPYLON_ADMIN_TOKEN": token},
    )
    assert imported.returncode == 0, imported.stderr
    assert "created: apis/3" in imported.stdout
    assert _time_until(f"{gw}/quickstart/get", 502) < PROPAGATION_LIMIT
    again = subprocess.run(
        [sys.executable, "-m", "propylon.cli", "import-tyk", str(SAMPLES), "--dashboard", dash],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PROPYLON_ADMIN_TOKEN": token},
    )
    assert "nothing changed" in again.stderr
    assert "unchanged: apis/3" in again.stdout

    # The gateway reports the version it serves, and its traffic reaches the dashboard's analytics.
    version = admin.get("/api/v1/gateways").json()["current_config_version"]
    deadline = time.monotonic() + 15
    while True:
        nodes = admin.get("/api/v1/gateways").json()["gateways"]
        if nodes and nodes[0]["config_version"] == version:
            break
        assert time.monotonic() < deadline, nodes
        time.sleep(0.2)
    assert nodes[0]["id"] == "it-gateway"
    assert nodes[0]["in_sync"] is True
    deadline = time.monotonic() + 15
    while True:
        top = admin.get("/api/v1/analytics/top", params={"by": "api"}).json()
        counts = {row["key"]: row["requests"] for row in top["items"]}
        if counts.get("second", 0) >= 2:
            break
        assert time.monotonic() < deadline, top
        time.sleep(0.2)

    # The dashboard goes away: the gateway keeps serving, and a restarted gateway starts from the
    # snapshot it saved.
    code, _ = _stop(stack.pop("dashboard"))
    assert code == 0
    assert httpx.get(f"{gw}/quickstart/get", trust_env=False).status_code == 502
    code, err = _stop(stack.pop("gateway"))
    assert code == 0, err
    stack["gateway"] = _start_gateway(dash, tmp_path / "gateway", gw_port)
    # Counters are per process: the new one allows the policy's one request, then refuses.
    assert httpx.get(f"{gw}/second/hello", trust_env=False).status_code == 200
    assert httpx.get(f"{gw}/second/hello", trust_env=False).status_code == 429
    assert httpx.get(f"{gw}/first/hello", trust_env=False).status_code == 404
