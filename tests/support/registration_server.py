"""A small RFC 7592 client-configuration endpoint for tests, over real HTTP on loopback.

Usage::

    with RegistrationServer() as idp:
        registered = idp.add_client({"client_name": "shop"})
        ...  # GET/DELETE registered.registration_client_uri with Bearer registered.access_token

It holds clients in memory and serves ``GET`` and ``DELETE /register/{client_id}``, enforcing
``Authorization: Bearer <registration access token>`` (401 ``invalid_token`` otherwise). Vendor
modes: ``api_token`` set makes it Okta-like (management with ``SSWS <api_token>`` instead, and
``POST /register/{client_id}/lifecycle/newSecret`` issues a new client secret);
``rotate_on_read`` makes it Curity-like (every read issues a new registration access token *and* a
new client secret). Switches make it misbehave: ``fail_with`` (answer every request with that
status), ``delay`` (sleep before answering), ``unknown_status`` (what an unknown client gets: 404 by
default, 401 as RFC 7592 allows), and ``stop()``/``start()`` (really down: the port refuses
connections, then comes back on the same port). Every request is logged in ``requests`` so tests
can check what was sent; ``secret_of`` is a client's current secret.

A ``ThreadingHTTPServer`` in a daemon thread, like ``tests/support/idp.py``: it serves both sync
and async tests without sharing their event loop.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["RegisteredClient", "RegistrationServer", "SeenRequest"]


@dataclass(frozen=True)
class RegisteredClient:
    """A client the server knows, with what a registration response would have given."""

    client_id: str
    access_token: str
    registration_client_uri: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class SeenRequest:
    """One request the server received."""

    method: str
    path: str
    authorization: str | None


@dataclass
class _Stored:
    token: str
    metadata: dict[str, Any] = field(default_factory=dict)
    secret: str = field(default_factory=lambda: "secret-" + secrets.token_urlsafe(16))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: RegistrationServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out broke the pipe: expected in the slow-IdP tests


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.owner._serve(self)

    def do_DELETE(self) -> None:
        self.server.owner._serve(self)

    def do_POST(self) -> None:
        self.server.owner._serve(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class RegistrationServer:
    """An in-memory IdP client registry with an RFC 7592 management endpoint."""

    __test__ = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, _Stored] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._stopping = threading.Event()
        self.fail_with: int | None = None
        self.delay = 0.0
        self.rotate_on_read = False
        self.api_token: str | None = None
        self.unknown_status = 404
        self.requests: list[SeenRequest] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> RegistrationServer:
        """Listen on 127.0.0.1 (an ephemeral port first, the same port after a ``stop``)."""
        if self._server is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.owner = self
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="registration-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are then refused); clients are kept for a restart."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> RegistrationServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (valid while stopped too, for the "down" tests)."""
        if not self._port:
            raise RuntimeError("the registration server was never started")
        return f"http://127.0.0.1:{self._port}"

    # -- clients --------------------------------------------------------------------------------

    def add_client(self, metadata: dict[str, Any] | None = None) -> RegisteredClient:
        """Register a client directly (as an RFC 7591 registration would have)."""
        client_id = "client-" + secrets.token_hex(6)
        token = "rat-" + secrets.token_urlsafe(16)
        stored_metadata = {"client_id": client_id, "grant_types": ["client_credentials"],
                           **(metadata or {})}
        with self._lock:
            self._clients[client_id] = _Stored(token, stored_metadata)
        return RegisteredClient(client_id, token, f"{self.base_url}/register/{client_id}",
                                dict(stored_metadata))

    def has_client(self, client_id: str) -> bool:
        """Whether ``client_id`` is still registered."""
        with self._lock:
            return client_id in self._clients

    def token_of(self, client_id: str) -> str:
        """The current registration access token of ``client_id``."""
        with self._lock:
            return self._clients[client_id].token

    def secret_of(self, client_id: str) -> str:
        """The current client secret of ``client_id``."""
        with self._lock:
            return self._clients[client_id].secret

    def forget(self, client_id: str) -> None:
        """Delete ``client_id`` behind the dashboard's back (an admin did it at the IdP)."""
        with self._lock:
            self._clients.pop(client_id, None)

    # -- serving --------------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        authorization = handler.headers.get("Authorization")
        with self._lock:
            self.requests.append(SeenRequest(handler.command, handler.path, authorization))
        if self.delay and self._stopping.wait(self.delay):
            return
        if self.fail_with is not None:
            self._send(handler, self.fail_with, {"error": "server_error" if self.fail_with >= 500
                                                 else "invalid_token",
                                                 "error_description": "switched to fail"})
            return
        prefix = "/register/"
        if not handler.path.startswith(prefix):
            self._send(handler, 404, {"error": "not_found"})
            return
        client_id, _, action = handler.path[len(prefix):].partition("/")
        with self._lock:
            stored = self._clients.get(client_id)
            expected = f"SSWS {self.api_token}" if self.api_token is not None else \
                f"Bearer {stored.token}" if stored is not None else None
            if stored is None:
                status, body = self.unknown_status, {"error": "invalid_client_id",
                                                     "error_description": "unknown client"}
            elif authorization != expected:
                status, body = 401, {"error": "invalid_token",
                                     "error_description": "bad registration access token"}
            elif (handler.command, action) == ("DELETE", ""):
                del self._clients[client_id]
                status, body = 204, None
            elif (handler.command, action) == ("GET", ""):
                if self.rotate_on_read:
                    stored.token = "rat-" + secrets.token_urlsafe(16)
                    stored.secret = "secret-" + secrets.token_urlsafe(16)
                status = 200
                body = {**stored.metadata, "client_secret": stored.secret,
                        "client_secret_expires_at": 0,
                        "registration_client_uri": f"{self.base_url}{prefix}{client_id}"}
                if self.rotate_on_read:
                    body["registration_access_token"] = stored.token
            elif (handler.command, action) == ("POST", "lifecycle/newSecret") and self.api_token:
                stored.secret = "secret-" + secrets.token_urlsafe(16)
                status = 200
                body = {**stored.metadata, "client_secret": stored.secret,
                        "client_secret_expires_at": 0}
            else:
                status, body = 405, {"error": "invalid_request",
                                     "error_description": "method not allowed"}
        self._send(handler, status, body)

    @staticmethod
    def _send(handler: _Handler, status: int, body: dict[str, Any] | None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        try:
            handler.send_response(status)
            if body is not None:
                handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up

