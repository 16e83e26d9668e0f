"""The configurations under test: how each is started, probed and checked for correctness.

=============  ============================================================================
upstream       the upstream nginx itself (one worker, ``return 200 "ok\\n"``), no proxy
nginx          nginx as a plain keep-alive reverse proxy, one worker, upstream keepalive
haproxy        HAProxy 2.6 verifying the RS256 JWT on every request (``jwt_verify``), nbthread 1
propylon-1w    ``propylon gateway`` with JWT auth + rate limit + analytics, one worker
propylon-2w    the same with two workers (SO_REUSEPORT)
floor          benchmarks/floor_proxy.py: the bare Protocol/httptools/uvloop proxy with a token
               dict, none of Propylon's features (the design's floor, not a product)
=============  ============================================================================
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib.processes import (
    BenchError,
    ManagedProcess,
    free_port,
    http_status,
    render_template,
    start_process,
    wait_ready,
)
from benchlib.tokens import AUDIENCE

ALL_TARGETS = ("upstream", "nginx", "haproxy", "propylon-1w", "propylon-2w", "floor")
PROPYLON_TARGETS = ("propylon-1w", "propylon-2w")
DESCRIPTIONS = {
    "upstream": "upstream nginx direct (no proxy)",
    "nginx": "nginx reverse proxy, keep-alive, no auth",
    "haproxy": "HAProxy, RS256 jwt_verify on every request",
    "propylon-1w": "Propylon, JWT + rate limit + analytics, 1 worker",
    "propylon-2w": "Propylon, JWT + rate limit + analytics, 2 workers",
    "floor": "floor: bare Protocol proxy + token dict, no features",
}
FLOOR_PROXY = Path(__file__).resolve().parent.parent / "floor_proxy.py"


@dataclass
class Target:
    """A running configuration under test."""

    name: str
    port: int
    authenticates: bool
    process: ManagedProcess
    analytics_path: Path | None = None
    check_warnings: list[str] = field(default_factory=list)

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.name]


@dataclass(frozen=True)
class StartContext:
    """What every configuration needs to start: tools, dirs, the upstream, the IdP."""

    tools: dict[str, str]
    workdir: Path
    upstream_port: int
    issuer: str
    public_key_pem: bytes
    probe_token: str
    propylon_executable: str | None


def _probe(port: int, token: str | None) -> bool:
    return http_status(port, token) == 200


def _subdir(context: StartContext, name: str) -> Path:
    path = context.workdir / name
    path.mkdir(mode=0o755)
    return path


def start_upstream(tools: dict[str, str], workdir: Path, probe_token: str) -> Target:
    """The upstream nginx; every other configuration proxies to it."""
    prefix = workdir / "upstream"
    prefix.mkdir(mode=0o755)
    port = free_port()
    return _start_nginx(
        "upstream",
        tools["nginx"],
        prefix,
        port,
        probe_token,
        render_template("upstream-nginx.conf", {"prefix": prefix, "port": port}),
    )


def _start_nginx(name: str, nginx: str, prefix: Path, port: int, probe_token: str, config: str) -> Target:
    config_path = prefix / "nginx.conf"
    config_path.write_text(config)
    argv = [nginx, "-p", str(prefix), "-c", str(config_path), "-e", str(prefix / "error.log")]
    process = start_process(name, argv, prefix)
    wait_ready(process, port, lambda: _probe(port, probe_token))
    return Target(name=name, port=port, authenticates=False, process=process)


def start_nginx_proxy(context: StartContext) -> Target:
    prefix = _subdir(context, "nginx")
    port = free_port()
    values = {"prefix": prefix, "port": port, "upstream_port": context.upstream_port}
    config = render_template("proxy-nginx.conf", values)
    return _start_nginx("nginx", context.tools["nginx"], prefix, port, context.probe_token, config)


def start_haproxy(context: StartContext) -> Target:
    prefix = _subdir(context, "haproxy")
    port = free_port()
    key_path = prefix / "jwt-public.pem"
    key_path.write_bytes(context.public_key_pem)
    values = {
        "prefix": prefix,
        "port": port,
        "upstream_port": context.upstream_port,
        "public_key": key_path,
        "issuer": context.issuer,
        "audience": AUDIENCE,
    }
    config_path = prefix / "haproxy.cfg"
    config_path.write_text(render_template("haproxy-jwt.cfg", values))
    process = start_process("haproxy", [context.tools["haproxy"], "-db", "-f", str(config_path)], prefix)
    wait_ready(process, port, lambda: _probe(port, context.probe_token))
    return Target(name="haproxy", port=port, authenticates=True, process=process)


def propylon_config(context: StartContext) -> dict[str, Any]:
    """The gateway config: one IdP, one API on ``/`` with JWT auth, one generous policy."""
    return {
        "identity_providers": [
            {
                "id": "bench-idp",
                "issuer": context.issuer,
                "jwks_uri": f"{context.issuer}/jwks",
                "audience": AUDIENCE,
                "algorithms": ["RS256"],
            }
        ],
        "apis": [
            {
                "id": "bench",
                "listen_path": "/",
                "upstream": f"http://127.0.0.1:{context.upstream_port}/",
                "auth": {
                    "type": "jwt",
                    "identity_provider": "bench-idp",
                    "identity_claim": "client_id",
                    "default_policies": ["bench"],
                },
            }
        ],
        "policies": [
            {
                "id": "bench",
                "rate": {"requests": 1_000_000, "per_seconds": 1},
                "access_rights": {"bench": {}},
            }
        ],
    }


def check_propylon_cli(executable: str | None) -> str:
    """The ``propylon`` executable if ``propylon gateway --help`` works, else a BenchError."""
    hint = "Run with --skip-propylon to benchmark only the other configurations."
    if executable is None:
        raise BenchError(f"no `propylon` executable found (install the project). {hint}")
    try:
        completed = subprocess.run(
            [executable, "gateway", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"cannot run `{executable} gateway --help`: {exc}. {hint}") from exc
    if completed.returncode != 0:
        raise BenchError(
            f"`{executable} gateway --help` failed with status {completed.returncode}; "
            f"{hint}\n{completed.stdout}{completed.stderr}"
        )
    return executable


def start_propylon(
    context: StartContext,
    workers: int,
    *,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    executable: str | None = None,
    analytics: bool = True,
) -> Target:
    """``propylon gateway`` on a free loopback port; by default the ``propylon-Nw`` configuration.

    ``features.py`` passes its own name, configuration (``propylon_config`` with features taken
    out), executable (another build) and ``analytics=False``; a configuration without identity
    providers is keyless and probed without a token.
    """
    name = name or f"propylon-{workers}w"
    config = config if config is not None else propylon_config(context)
    prefix = _subdir(context, name)
    data_dir = prefix / "data"
    data_dir.mkdir()
    config_path = prefix / "gateway.json"
    config_path.write_text(json.dumps(config, indent=2))
    port = free_port()
    executable = check_propylon_cli(executable or context.propylon_executable)
    argv = [
        executable,
        "gateway",
        "--config",
        str(config_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--data-dir",
        str(data_dir),
    ]
    # The benchmark's JWKS server listens on loopback, which the gateway's SSRF guard refuses
    # unless the network is allowed.
    env = {"PROPYLON_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8"}
    if not analytics:
        env["PROPYLON_ANALYTICS_ENABLED"] = "false"
    process = start_process(name, argv, prefix, env=env)
    authenticates = bool(config.get("identity_providers"))
    probe_token = context.probe_token if authenticates else None
    wait_ready(process, port, lambda: _probe(port, probe_token))
    return Target(
        name=name,
        port=port,
        authenticates=authenticates,
        process=process,
        analytics_path=data_dir / "analytics.jsonl" if analytics else None,
    )


def start_floor(context: StartContext) -> Target:
    """The design's floor (``floor_proxy.py``) with the Python running this script."""
    prefix = _subdir(context, "floor")
    key_path = prefix / "jwt-public.pem"
    key_path.write_bytes(context.public_key_pem)
    port = free_port()
    argv = [
        sys.executable, str(FLOOR_PROXY), "--port", str(port), "--upstream-port",
        str(context.upstream_port), "--public-key", str(key_path), "--issuer", context.issuer,
        "--audience", AUDIENCE,
    ]
    process = start_process("floor", argv, prefix)
    wait_ready(process, port, lambda: _probe(port, context.probe_token))
    return Target(name="floor", port=port, authenticates=True, process=process)


def start_target(name: str, context: StartContext) -> Target:
    if name == "nginx":
        return start_nginx_proxy(context)
    if name == "haproxy":
        return start_haproxy(context)
    if name == "floor":
        return start_floor(context)
    if name in PROPYLON_TARGETS:
        return start_propylon(context, workers=int(name.split("-")[1].rstrip("w")))
    raise BenchError(f"unknown configuration {name!r}")


def _status_or_error(port: int, token: str | None) -> str:
    try:
        return str(http_status(port, token))
    except (OSError, http.client.HTTPException) as exc:
        return f"error {exc!r}"


def check_target(target: Target, valid_token: str, invalid: dict[str, str]) -> list[str]:
    """Correctness before speed. Raises BenchError on a fatal failure; returns warnings.

    Fatal: a valid token not answered with 200, or (for authenticating proxies) a request
    without a token not answered with 401. Any other invalid token that is not a 401 is a
    warning shown in the table.
    """
    status = _status_or_error(target.port, valid_token)
    if status != "200":
        raise BenchError(f"{target.name}: a valid token got {status}, expected 200")
    if not target.authenticates:
        return []
    status = _status_or_error(target.port, None)
    if status != "401":
        raise BenchError(f"{target.name}: a request without a token got {status}, expected 401")
    warnings = []
    for reason, token in invalid.items():
        status = _status_or_error(target.port, token)
        if status != "401":
            warnings.append(f"{reason}: got {status}, expected 401")
    return warnings


def analytics_lines(target: Target) -> int | None:
    """How many analytics records the gateway has written (None if there is no file)."""
    if target.analytics_path is None or not target.analytics_path.exists():
        return None
    with target.analytics_path.open("rb") as handle:
        return sum(1 for _ in handle)
