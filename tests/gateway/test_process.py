"""The ``propylon gateway`` command as an operator runs it: reload, signals, workers, analytics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import LOOPBACK_ALLOWED, free_port, wait_http

pytestmark = pytest.mark.slow


def _config(upstream_port: int, listen_path: str = "/echo/") -> dict[str, Any]:
    return {"apis": [{
        "id": "echo", "listen_path": listen_path, "upstream": f"http://127.0.0.1:{upstream_port}/",
        "strip_listen_path": True, "auth": {"type": "keyless"},
    }]}


@pytest.fixture
def echo_server() -> Iterator[int]:
    """The demo echo upstream in its own process (the gateway under test is a subprocess too)."""
    port = free_port()
    code = (
        "import asyncio, sys\n"
        "from propylon.demo.upstream import start_echo_upstream\n"
        "async def main():\n"
        f"    await start_echo_upstream('127.0.0.1', {port})\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield port
    proc.kill()
    proc.wait()


def _start(config_file: Path, data_dir: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "propylon.cli", "gateway", "--config", str(config_file),
         "--port", str(port), "--data-dir", str(data_dir), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # The test IdP (JWKS) listens on loopback, which the SSRF guard refuses unless allowed.
        env={**os.environ, "PYTHONUNBUFFERED": "1", **LOOPBACK_ALLOWED},
    )


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err.decode()


def _wait_for_status(url: str, status: int, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if httpx.get(url, trust_env=False).status_code == status:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered {status}")


@dataclass
class Running:
    """A ``propylon gateway`` process under test; ``code`` and ``err`` are set once it stopped."""

    proc: subprocess.Popen[bytes]
    base: str
    config_file: Path
    data_dir: Path
    code: int = -1
    err: str = ""


@contextmanager
def running_gateway(
    tmp_path: Path, config: dict[str, Any], *extra: str, ready_timeout: float = 20.0
) -> Iterator[Running]:
    """Write ``config``, start the gateway on a free port, and SIGTERM it when the block ends."""
    config_file = tmp_path / "gateway.json"
    config_file.write_text(json.dumps(config))
    port = free_port()
    gw = Running(_start(config_file, tmp_path / "data", port, *extra), f"http://127.0.0.1:{port}",
                 config_file, tmp_path / "data")
    try:
        wait_http(gw.base, gw.proc, ready_timeout)
        yield gw
    finally:
        gw.code, gw.err = _stop(gw.proc)


def test_file_change_reload_keeps_old_config_on_bad_file_and_flushes_analytics_on_sigterm(
    tmp_path: Path, echo_server: int
) -> None:
    with running_gateway(tmp_path, _config(echo_server)) as gw:
        base = gw.base
        assert httpx.get(f"{base}/echo/a", trust_env=False).status_code == 200

        gw.config_file.write_text(json.dumps(_config(echo_server, "/moved/")))
        assert _wait_for_status(f"{base}/moved/a", 200, timeout=5) < 2.5
        assert httpx.get(f"{base}/echo/a", trust_env=False).status_code == 404

        gw.config_file.write_text('{"apis": [{"id": "broken"}]}')
        time.sleep(2.0)
        assert httpx.get(f"{base}/moved/a", trust_env=False).status_code == 200
    assert gw.code == 0, gw.err
    assert "listen_path" in gw.err  # the bad file's problems were logged
    records = [json.loads(line) for line in (gw.data_dir / "analytics.jsonl").read_text().splitlines()]
    # Every request was recorded, including the readiness probes, and nothing was lost at exit.
    assert len([r for r in records if r["path"] in ("/echo/a", "/moved/a")]) >= 3
    assert {"status", "api_id", "total_latency_ms", "upstream_latency_ms"} <= set(records[-1])


def test_sighup_reloads_the_file(tmp_path: Path, echo_server: int) -> None:
    with running_gateway(tmp_path, _config(echo_server)) as gw:
        # Same size and mtime tricks aside, SIGHUP must reload at once.
        gw.config_file.write_text(json.dumps(_config(echo_server, "/hup/")))
        gw.proc.send_signal(signal.SIGHUP)
        assert _wait_for_status(f"{gw.base}/hup/a", 200, timeout=5) < 2.0
    assert gw.code == 0, gw.err


def test_two_workers_share_one_port(tmp_path: Path, echo_server: int) -> None:
    with running_gateway(tmp_path, _config(echo_server), "--workers", "2", ready_timeout=30) as gw:
        time.sleep(1.0)  # let the second worker bind too
        for _ in range(60):
            with httpx.Client(trust_env=False) as fresh:  # a new connection each time
                assert fresh.get(f"{gw.base}/echo/x").status_code == 200
    assert gw.code == 0, gw.err
    files = sorted(p.name for p in gw.data_dir.glob("analytics*.jsonl"))
    assert files == ["analytics.jsonl", "analytics.w1.jsonl"]
    total = sum(len(p.read_text().splitlines()) for p in gw.data_dir.glob("analytics*.jsonl"))
    assert total >= 60


def test_invalid_config_file_is_refused_with_every_problem(tmp_path: Path) -> None:
    config_file = tmp_path / "bad.yaml"
    config_file.write_text("apis:\n  - id: a\n    listen_path: nope\n    upstream: ftp://x\n")
    result = subprocess.run(
        [sys.executable, "-m", "propylon.cli", "gateway", "--config", str(config_file)],
        capture_output=True, timeout=30, check=False,
    )
    assert result.returncode != 0
    err = result.stderr.decode()
    assert "listen_path" in err
    assert "upstream" in err
    assert "auth" in err


def test_sigusr1_flushes_cached_keys_and_tokens(tmp_path: Path, echo_server: int) -> None:
    from tests.support.idp import TestIdp

    with TestIdp() as idp:
        config = _config(echo_server)
        config["identity_providers"] = [{"id": "idp", "issuer": idp.issuer}]
        config["apis"][0]["auth"] = {"type": "jwt", "identity_provider": "idp", "default_policies": ["all"]}
        config["policies"] = [{"id": "all", "access_rights": {"*": {}}}]
        auth = {"Authorization": "Bearer " + idp.mint({"sub": "someone"})}
        with running_gateway(tmp_path, config) as gw:
            url = f"{gw.base}/echo/a"
            assert httpx.get(url, headers=auth, trust_env=False).status_code == 200
            hits = idp.jwks_hits
            gw.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.5)
            # the flushed key set is fetched again for the next token; the token still works
            assert httpx.get(url, headers=auth, trust_env=False).status_code == 200
            assert idp.jwks_hits == hits + 1
        assert gw.code == 0, gw.err
        assert "flushing cached JWKS" in gw.err


def test_sigterm_loses_no_analytics_record(tmp_path: Path, echo_server: int) -> None:
    # The block's end stops the gateway at once: most records are still in the buffer then.
    with running_gateway(tmp_path, _config(echo_server)) as gw, httpx.Client(trust_env=False) as http:
        for n in range(300):
            assert http.get(f"{gw.base}/echo/counted/{n}").status_code == 200
    assert gw.code == 0, gw.err
    lines = (gw.data_dir / "analytics.jsonl").read_text().splitlines()
    counted = sorted(int(json.loads(x)["path"].rsplit("/", 1)[1]) for x in lines if "/counted/" in x)
    assert counted == list(range(300))
