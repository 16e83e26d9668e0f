"""The embedded OpenID provider as a real process on loopback, and helpers to drive it with httpx.

``RunningIdp`` starts ``propylon idp`` (a subprocess on a free port, its own data directory) and
knows its issuer and settings, so that tests can create initial access tokens and users the way
an operator does (the CLI) or the way ``propylon up`` will (the Python functions).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from propylon.provider.service import create_initial_access_token
from propylon.provider.settings import ProviderSettings
from tests.support.processes import free_port, spawn, stop, wait_http

USER = "alice"
PASSWORD = "correct horse battery staple"
REDIRECT_URI = "http://127.0.0.1:8765/callback"


@dataclass
class RunningIdp:
    """A ``propylon idp`` process and what tests need to talk to it."""

    data_dir: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def settings(self) -> ProviderSettings:
        return ProviderSettings(data_dir=self.data_dir, port=self.port)

    def start(self, *extra: str) -> RunningIdp:
        self.log = self.data_dir.parent / f"idp-{self.port}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = spawn("idp", "--port", str(self.port), "--data-dir", str(self.data_dir), *extra,
                          env=self.env, log=self.log)
        wait_http(f"{self.issuer}/jwks", self.proc)
        return self

    def stop(self) -> int:
        assert self.proc is not None
        status = stop(self.proc)
        self.proc = None
        return status

    def output(self) -> str:
        return self.log.read_text() if self.log and self.log.exists() else ""

    def iat(self, expires_in: int | None = None) -> str:
        return create_initial_access_token(self.settings, expires_in=expires_in, label="tests")

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``propylon idp --data-dir D ARGS…`` run to completion."""
        return subprocess.run([sys.executable, "-m", "propylon.cli", "idp", "--data-dir", str(self.data_dir),
                               *args], input=stdin or "", capture_output=True, text=True, timeout=60,
                              env={**os.environ, **self.env}, check=False)


def start_idp(tmp: Path, **env: str) -> RunningIdp:
    """A provider process on a free port with its own data directory under ``tmp``."""
    return RunningIdp(tmp / "idp-data", free_port(), env=env).start()


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningIdp]:
    """One provider per test module, with the user ``alice``."""
    running = start_idp(tmp_path_factory.mktemp("idp"))
    added = running.cli("add-user", USER, "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    yield running
    running.stop()
    output = running.output()
    # A 500 (uvicorn logs the exception) or a deprecated Authlib call must not go unnoticed.
    assert "Exception in ASGI application" not in output
    assert "DeprecationWarning" not in output


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """An HTTP client that ignores proxy settings and never follows redirects."""
    with httpx.Client(trust_env=False, timeout=30.0, follow_redirects=False) as client:
        yield client


def register(http: httpx.Client, idp: RunningIdp, token: str | None = None, **metadata: Any
             ) -> dict[str, Any]:
    """Register a client (client_credentials by default) and return the 201 answer."""
    body = {"client_name": "test client", "grant_types": ["client_credentials"], **metadata}
    response = http.post(f"{idp.issuer}/register", json=body,
                         headers={"Authorization": f"Bearer {token or idp.iat()}"})
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


def client_token(http: httpx.Client, idp: RunningIdp, client: dict[str, Any], **form: str) -> httpx.Response:
    """A client_credentials token request with HTTP Basic client authentication."""
    return http.post(f"{idp.issuer}/token", data={"grant_type": "client_credentials", **form},
                     auth=(client["client_id"], client["client_secret"]))


def pkce_pair() -> tuple[str, str]:
    """A code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class FormFields(HTMLParser):
    """The input fields (name → value) of the sign-in page's form."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "input" and values.get("name"):
            self.fields[str(values["name"])] = values.get("value") or ""


def form_fields(html: str) -> dict[str, str]:
    parser = FormFields()
    parser.feed(html)
    return parser.fields


def errors_text(html: str) -> str:
    found = re.search(r"<ul id=errors>(.*?)</ul>", html, re.S)
    return found.group(1) if found else ""
