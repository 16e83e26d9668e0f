"""Starting Propylon's own commands as real processes for tests, and waiting for them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

NODE_SECRET = "test-process-node-secret-0123456789abcdef"
ADMIN_PASSWORD = "test process admin password"
LOOPBACK_ALLOWED = {"PROPYLON_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8"}
"""The environment that lets a dashboard's or gateway's SSRF guard reach the test IdPs, which
listen on loopback (refused unless allowed)."""


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(*args: str, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen[bytes]:
    """``propylon ARGS…`` with this interpreter and extra environment. Output is captured in pipes,
    or written to ``log`` for a chatty process (an unread pipe fills up and blocks the process)."""
    command = [sys.executable, "-m", "propylon.cli", *args]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if log is None:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment)
    with log.open("wb") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=environment)


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait until ``url`` answers at all (any status); fail with the process's stderr if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else "(see the process log)"
            raise AssertionError(f"process exited with {proc.returncode}: {err[-2000:]}")
        try:
            httpx.get(url, timeout=0.5, trust_env=False)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


def start_dashboard(port: int, data_dir: str, log: Path | None = None, **env: str) -> subprocess.Popen[bytes]:
    """``propylon dashboard`` on ``port`` with a known admin password and node secret, ready."""
    proc = spawn("dashboard", "--port", str(port), "--data-dir", data_dir, log=log, env={
        "PROPYLON_NODE_SECRET": NODE_SECRET, "PROPYLON_ADMIN_PASSWORD": ADMIN_PASSWORD,
        **LOOPBACK_ALLOWED, **env,
    })
    wait_http(f"http://127.0.0.1:{port}/api/openapi.json", proc)
    return proc


def admin_token(base_url: str) -> str:
    """A new admin API token, made with the known admin password."""
    with httpx.Client(base_url=base_url, auth=("admin", ADMIN_PASSWORD), trust_env=False) as client:
        response = client.post("/api/v1/tokens", json={"name": "tests"})
        response.raise_for_status()
        token: str = response.json()["token"]
        return token


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM ``proc`` and return its exit status (killed after ``timeout``)."""
    proc.terminate()
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    return proc.returncode
