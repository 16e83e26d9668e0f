"""The real third-party OpenID provider of the integration tests: panva's ``oidc-provider`` (npm).

``tests/support/oidc_provider/`` pins it (``package-lock.json``); ``make test`` installs it with
``npm ci``. :func:`start_oidc_provider` runs ``node server.mjs`` on a free loopback port, waits for
its ready line and returns a :class:`OidcProvider`; :meth:`OidcProvider.stop` ends that process (by
its own handle, never by name). Without ``node`` or the installed package the caller gets
:func:`pytest.skip` with the reason, which ``PROPYLON_REQUIRE_SERVICES=1`` (CI) turns into a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PACKAGE_DIR = Path(__file__).parent / "oidc_provider"
SERVER = PACKAGE_DIR / "server.mjs"
RESOURCE = "urn:propylon:test-api"
"""The resource indicator, and so the ``aud``, of the provider's client_credentials JWTs."""
READY_TIMEOUT = 15.0


@dataclass
class OidcProvider:
    """A running ``oidc-provider`` process and what the tests need to know about it."""

    process: subprocess.Popen[str]
    issuer: str
    port: int
    initial_access_token: str
    expiring_initial_access_token: str
    rotates_registration_access_token: bool
    resource: str = RESOURCE
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def discovery_url(self) -> str:
        """Where its OpenID discovery document is."""
        return f"{self.issuer}/.well-known/openid-configuration"

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 5 s); idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # The reader sees end-of-file once the process is gone; then the pipe can be closed.
        if self.reader is not None:
            self.reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _unavailable(reason: str) -> None:
    # tests/conftest.py turns this skip into a failure under PROPYLON_REQUIRE_SERVICES=1.
    pytest.skip(reason)


def start_oidc_provider(*, rotate_registration_access_token: bool = True,
                        expiring_iat_ttl: int = 1) -> OidcProvider:
    """Start ``oidc-provider`` on a free loopback port and wait until it listens."""
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not installed (the test OpenID provider is an npm package)")
    if not (PACKAGE_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        _unavailable("oidc-provider is not installed: run `npm ci --prefix tests/support/oidc_provider` "
                     "(make test does)")
    assert node is not None
    iat, expiring = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    environment = {
        **os.environ,
        "OIDC_INITIAL_ACCESS_TOKEN": iat,
        "OIDC_EXPIRING_INITIAL_ACCESS_TOKEN": expiring,
        "OIDC_EXPIRING_IAT_TTL": str(expiring_iat_ttl),
        "OIDC_ROTATE_RAT": "1" if rotate_registration_access_token else "0",
        "OIDC_RESOURCE": RESOURCE,
    }
    process = subprocess.Popen([node, str(SERVER), "0"], cwd=PACKAGE_DIR, env=environment, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output: list[str] = []
    ready: dict[str, Any] = {}
    got_ready = threading.Event()

    def pump() -> None:
        # Keep reading for the process's whole life: an unread pipe would fill up and block it.
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            if not got_ready.is_set() and line.startswith("{"):
                try:
                    document = json.loads(line)
                except ValueError:
                    continue
                if isinstance(document, dict) and document.get("ready") is True:
                    ready.update(document)
                    got_ready.set()
        got_ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    if not got_ready.wait(READY_TIMEOUT) or not ready:
        process.kill()
        process.wait()
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
        raise AssertionError("oidc-provider did not start:\n" + "\n".join(output[-30:]))
    return OidcProvider(
        process=process, issuer=str(ready["issuer"]), port=int(ready["port"]), initial_access_token=iat,
        expiring_initial_access_token=expiring,
        rotates_registration_access_token=rotate_registration_access_token, output=output,
        reader=reader,
    )
