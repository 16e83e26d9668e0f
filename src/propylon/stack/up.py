"""``propylon up``: the whole platform on one machine with the embedded defaults.

It starts, in order: the demo upstream (in this process), the embedded OpenID provider, the
dashboard + portal (SQLite in the data directory), and a gateway in dashboard mode; on first start
it seeds the demo through the admin API (``stack/seed.py``). Everything lives in one data directory,
so a restart keeps the data; development credentials (admin and demo-developer passwords, the node
secret) are generated once into files there, mode 0600, and printed with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import httpx

from propylon.demo import seed
from propylon.demo.upstream import start_echo_upstream
from propylon.stack.supervisor import (
    Child,
    ChildSpec,
    StackError,
    ensure_port_free,
    first_exit,
    start_child,
    stop_child,
)
from propylon.storage.secret_box import read_or_create_secret_file

LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"
"""The embedded IdP runs on loopback, so the SSRF guard of the dashboard (discovery, registration)
and of the gateway (JWKS) must let it be called."""

DEMO_AUDIENCE = "urn:propylon:demo"
"""The ``aud`` of the embedded IdP's access tokens, which the demo API requires."""


@dataclass(frozen=True)
class UpOptions:
    """Where the stack listens and keeps its data (``propylon up`` flags)."""

    data_dir: Path
    gateway_port: int = 8080
    dashboard_port: int = 3000
    idp_port: int = 9400
    upstream_port: int = 9000
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Credentials:
    """The development credentials of this data directory."""

    admin_password: str
    developer_password: str
    node_secret: str


def development_credentials(data_dir: Path) -> Credentials:
    """The credentials kept in ``data_dir`` (created on first start, mode 0600)."""

    def generate() -> bytes:
        return secrets.token_urlsafe(18).encode()

    def node_secret() -> bytes:
        return secrets.token_urlsafe(32).encode()

    return Credentials(
        admin_password=read_or_create_secret_file(data_dir / "admin.password", generate).decode(),
        developer_password=read_or_create_secret_file(data_dir / "demo-developer.password",
                                                      generate).decode(),
        # The file the dashboard itself reads when PROPYLON_NODE_SECRET is unset.
        node_secret=read_or_create_secret_file(data_dir / "node.secret", node_secret).decode(),
    )


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def banner(options: UpOptions, credentials: Credentials, seeded_now: bool) -> str:
    """What ``up`` prints once everything answers."""
    gateway = _url(options.host, options.gateway_port)
    dashboard = _url(options.host, options.dashboard_port)
    idp = _url(options.host, options.idp_port)
    first = "Seeded the demo (first start).\n" if seeded_now else "Demo data kept from the last run.\n"
    return (
        f"\nPropylon is up. {first}"
        f"  gateway             {gateway}   (API {seed.LISTEN_PATH} -> demo upstream)\n"
        f"  developer portal    {dashboard}/portal/\n"
        f"  admin API           {dashboard}/api/v1   (OpenAPI: {dashboard}/api/docs)\n"
        f"  OpenID provider     {idp}   (discovery: {idp}/.well-known/openid-configuration)\n"
        f"  demo upstream       {_url(options.host, options.upstream_port)}\n"
        f"  data and logs       {options.data_dir}/\n\n"
        f"!! DEVELOPMENT CREDENTIALS (kept in {options.data_dir}, not for production):\n"
        f"  admin               admin / {credentials.admin_password}\n"
        f"  demo developer      {seed.DEMO_DEVELOPER_EMAIL} / {credentials.developer_password}\n\n"
        f"Next steps:\n"
        f"  1. Open {dashboard}/portal/, sign up (or sign in as the demo developer).\n"
        f"  2. OAuth clients -> New client -> tick \"Echo API\" -> Register: the page shows the\n"
        f"     client id, the secret (once) and the curl lines for a token and the first call.\n"
        f"  3. Call {gateway}{seed.LISTEN_PATH}hello with the token; the {seed.RATE_REQUESTS + 1}th call "
        f"within {seed.RATE_SECONDS} s gets 429.\n"
        f"  Or run the whole flow headlessly: propylon demo\n\n"
        f"Press Ctrl-C to stop.\n"
    )


def _specs(options: UpOptions, credentials: Credentials) -> tuple[ChildSpec, ChildSpec, ChildSpec]:
    logs = options.data_dir / "logs"
    dashboard_url = _url(options.host, options.dashboard_port)
    idp = ChildSpec(
        name="idp",
        args=["idp", "--host", options.host, "--port", str(options.idp_port),
              "--data-dir", str(options.data_dir / "idp")],
        ready_url=f"{_url(options.host, options.idp_port)}/.well-known/openid-configuration",
        log_file=logs / "idp.log",
        env={"PROPYLON_IDP_AUDIENCE": DEMO_AUDIENCE},
    )
    dashboard = ChildSpec(
        name="dashboard",
        args=["dashboard", "--host", options.host, "--port", str(options.dashboard_port),
              "--data-dir", str(options.data_dir)],
        ready_url=f"{dashboard_url}/api/openapi.json",
        log_file=logs / "dashboard.log",
        env={"PROPYLON_ADMIN_PASSWORD": credentials.admin_password,
             "PROPYLON_NODE_SECRET": credentials.node_secret,
             "PROPYLON_OUTBOUND_ALLOWED_NETWORKS": LOOPBACK_NETWORKS},
    )
    gateway = ChildSpec(
        name="gateway",
        args=["gateway", "--host", options.host, "--port", str(options.gateway_port),
              "--data-dir", str(options.data_dir / "gateway"), "--dashboard", dashboard_url],
        ready_url=f"{_url(options.host, options.gateway_port)}/",
        log_file=logs / "gateway.log",
        env={"PROPYLON_NODE_SECRET": credentials.node_secret,
             "PROPYLON_OUTBOUND_ALLOWED_NETWORKS": LOOPBACK_NETWORKS},
    )
    return idp, dashboard, gateway


async def _seed_if_new(options: UpOptions, credentials: Credentials,
                       create_iat: Callable[[], str]) -> bool:
    dashboard_url = _url(options.host, options.dashboard_port)
    plan = seed.DemoPlan(
        dashboard_url=dashboard_url, gateway_url=_url(options.host, options.gateway_port),
        issuer=_url(options.host, options.idp_port), audience=DEMO_AUDIENCE,
        upstream_url=_url(options.host, options.upstream_port) + "/",
        admin_password=credentials.admin_password, developer_password=credentials.developer_password,
    )
    async with httpx.AsyncClient(base_url=dashboard_url, auth=("admin", credentials.admin_password),
                                 trust_env=False, timeout=15.0) as client:
        if await seed.is_seeded(client):
            return False
        await seed.seed_demo(client, plan, create_iat())
    return True


async def run_up(options: UpOptions, out: TextIO, create_iat: Callable[[Path], str]) -> int:
    """Run the stack until SIGINT/SIGTERM (0) or until a part of it dies (1).

    ``create_iat(idp_data_dir)`` makes an initial access token at the embedded IdP for the seed.
    """
    for what, port, flag in (("gateway", options.gateway_port, "--port"),
                             ("dashboard", options.dashboard_port, "--dashboard-port"),
                             ("OpenID provider", options.idp_port, "--idp-port"),
                             ("demo upstream", options.upstream_port, "--upstream-port")):
        ensure_port_free(options.host, port, what, flag)
    options.data_dir.mkdir(parents=True, exist_ok=True)
    credentials = development_credentials(options.data_dir)
    idp_spec, dashboard_spec, gateway_spec = _specs(options, credentials)
    upstream = await start_echo_upstream(options.host, options.upstream_port)
    children: list[Child] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    status = 0
    try:
        out.write("Starting the OpenID provider, the dashboard and the gateway…\n")
        out.flush()
        children.append(await start_child(idp_spec))
        children.append(await start_child(dashboard_spec))
        seeded_now = await _seed_if_new(options, credentials,
                                        lambda: create_iat(options.data_dir / "idp"))
        children.append(await start_child(gateway_spec))
        out.write(banner(options, credentials, seeded_now))
        out.flush()
        stopping = asyncio.ensure_future(stop.wait())
        dying = asyncio.ensure_future(first_exit(children))
        done, _ = await asyncio.wait({stopping, dying}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        dying.cancel()
        if dying in done:
            child = dying.result()
            out.write(f"\n{child.spec.name} stopped unexpectedly (status "
                      f"{child.process.returncode}); the end of {child.spec.log_file}:\n"
                      f"{child.log_tail()}\nStopping the rest.\n")
            status = 1
    except (seed.SeedError, StackError) as exc:
        out.write(f"propylon up: {exc}\n")
        status = 1
    finally:
        for child in reversed(children):
            await stop_child(child)
        upstream.close()
        with contextlib.suppress(Exception):
            await upstream.wait_closed()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        out.write("Propylon stopped; analytics flushed.\n")
        out.flush()
    return status
