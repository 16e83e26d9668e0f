"""The world the browser tests drive, every part a real process, started once per module: the npm
``oidc-provider`` (the third-party IdP), the echo upstream, ``propylon dashboard`` (admin API and
portal) on SQLite and ``propylon gateway --dashboard``. The admin API seeds it: the IdP with its
registration endpoint and initial access token, API ``orders`` behind JWT auth from that IdP, the
policy ``reader``, the published catalogue entry ``orders-entry`` with DCR, and the portal settings
(``gateway_url`` = the gateway).

Process output goes to ``{artifacts}/logs/browser/`` so that a CI failure can be read afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import artifacts_dir, browser, pytest_runtest_makereport, steps
from tests.support.oidc_provider import OidcProvider, start_oidc_provider
from tests.support.processes import (
    LOOPBACK_ALLOWED,
    NODE_SECRET,
    admin_token,
    free_port,
    spawn,
    start_dashboard,
    stop,
    wait_http,
)

__all__ = ["Stack", "browser", "pytest_runtest_makereport", "stack", "steps"]

API_PATH = "/orders/"
ENTRY_ID = "orders-entry"
PORTAL_NAME = "Propylon test portal"


@dataclass
class Stack:
    """The running processes' addresses, the IdP, and an admin API client."""

    dashboard: str
    gateway: str
    idp: OidcProvider
    admin: httpx.Client
    gateway_url_in_settings: bool
    """Whether the portal settings took ``gateway_url`` (curl lines then carry the gateway's URL
    instead of ``$GATEWAY_URL``)."""

    def url(self, path: str) -> str:
        """The dashboard URL of ``path`` (e.g. ``/portal/login``)."""
        return self.dashboard + path

    def portal_settings(self, **changes: Any) -> None:
        """Replace the portal settings with the seeded ones plus ``changes``."""
        document: dict[str, Any] = {"portal_name": PORTAL_NAME, **changes}
        if self.gateway_url_in_settings:
            document["gateway_url"] = self.gateway
        response = self.admin.put("/api/v1/portal-settings", json=document)
        assert response.status_code == 200, response.text

    def developer_id(self, email: str) -> str:
        """The id of the developer with ``email`` (admin API)."""
        response = self.admin.get("/api/v1/developers", params={"email": email})
        assert response.status_code == 200, response.text
        matches = [item for item in response.json()["items"] if item["email"] == email]
        assert len(matches) == 1, response.text
        developer_id: str = matches[0]["id"]
        return developer_id


def _add(admin: httpx.Client, path: str, document: dict[str, Any]) -> None:
    response = admin.post(path, json=document)
    assert response.status_code == 201, response.text


def _seed(admin: httpx.Client, idp: OidcProvider, echo_port: int) -> None:
    _add(admin, "/api/v1/identity-providers", {
        "id": "npm", "issuer": idp.issuer, "kind": "generic", "audience": idp.resource,
        "registration_endpoint": f"{idp.issuer}/reg", "token_endpoint": f"{idp.issuer}/token",
        "jwks_uri": f"{idp.issuer}/jwks", "initial_access_token": idp.initial_access_token,
    })
    _add(admin, "/api/v1/apis", {
        "id": "orders", "name": "Orders", "listen_path": API_PATH,
        "upstream": f"http://127.0.0.1:{echo_port}/", "strip_listen_path": True,
        "auth": {"type": "jwt", "identity_provider": "npm", "identity_claim": "client_id"},
    })
    _add(admin, "/api/v1/policies", {
        "id": "reader", "name": "Reader", "rate": {"requests": 100, "per_seconds": 1},
        "quota": {"max": 5000, "renewal_seconds": 86400}, "access_rights": {"orders": {"methods": ["GET"]}},
    })
    _add(admin, "/api/v1/catalogue", {
        "id": ENTRY_ID, "name": "Orders", "description": "Order data for partners", "api_ids": ["orders"],
        "policy_id": "reader", "published": True, "dcr_enabled": True,
    })


def _portal_settings_take_gateway_url(admin: httpx.Client, gateway: str) -> bool:
    """Save the portal settings with ``gateway_url``; without it if this dashboard does not know the
    field yet (it then answers 422 for the unknown field)."""
    response = admin.put("/api/v1/portal-settings", json={"portal_name": PORTAL_NAME, "gateway_url": gateway})
    if response.status_code == 200:
        return True
    assert response.status_code == 422, response.text
    response = admin.put("/api/v1/portal-settings", json={"portal_name": PORTAL_NAME})
    assert response.status_code == 200, response.text
    return False


def _start_echo(port: int, log: Path) -> subprocess.Popen[bytes]:
    code = (
        "import asyncio\n"
        "from propylon.demo.upstream import start_echo_upstream\n"
        "async def main():\n"
        f"    await start_echo_upstream('127.0.0.1', {port})\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=sink, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/", proc)
    return proc


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Start, seed, and at the end stop (by their own handles) the processes of the portal flow."""
    data = tmp_path_factory.mktemp("browser-stack")
    logs = artifacts_dir() / "logs" / "browser"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    idp = start_oidc_provider(rotate_registration_access_token=True)
    admin: httpx.Client | None = None
    try:
        echo_port, dash_port, gw_port = free_port(), free_port(), free_port()
        procs.append(_start_echo(echo_port, logs / "echo.log"))
        dashboard = f"http://127.0.0.1:{dash_port}"
        gateway = f"http://127.0.0.1:{gw_port}"
        # The IdP runs on this host: let the dashboard's SSRF guard reach loopback.
        procs.append(start_dashboard(dash_port, str(data / "dashboard"), log=logs / "dashboard.log",
                                     PROPYLON_OUTBOUND_ALLOWED_NETWORKS="127.0.0.0/8"))
        admin = httpx.Client(base_url=dashboard, trust_env=False, timeout=10,
                             headers={"Authorization": f"Bearer {admin_token(dashboard)}"})
        _seed(admin, idp, echo_port)
        with_gateway_url = _portal_settings_take_gateway_url(admin, gateway)
        gw = spawn("gateway", "--dashboard", dashboard, "--port", str(gw_port),
                   "--data-dir", str(data / "gw"), log=logs / "gateway.log",
                   env={"PROPYLON_NODE_SECRET": NODE_SECRET, "PROPYLON_NODE_ID": "browser-gateway",
                        **LOOPBACK_ALLOWED})
        procs.append(gw)
        wait_http(f"{gateway}/", gw)
        _wait_until_served(f"{gateway}{API_PATH}")
        yield Stack(dashboard=dashboard, gateway=gateway, idp=idp, admin=admin,
                    gateway_url_in_settings=with_gateway_url)
    finally:
        if admin is not None:
            admin.close()
        for proc in reversed(procs):
            # Short: the dashboard waits its whole graceful period for a gateway's long-poll that
            # ended with the gateway; nothing here depends on a clean exit status.
            stop(proc, timeout=3)
        idp.stop()
        (logs / "oidc-provider.log").write_text("\n".join(idp.output) + "\n")


def _wait_until_served(url: str, timeout: float = 10.0) -> None:
    """Wait until the gateway routes ``url`` (401 without a token, not 404 for an unknown route)."""
    deadline = time.monotonic() + timeout
    status = 0
    while time.monotonic() < deadline:
        status = httpx.get(url, trust_env=False, timeout=2).status_code
        if status == 401:
            return
        time.sleep(0.1)
    raise AssertionError(f"the gateway never served {url} (last status {status})")
