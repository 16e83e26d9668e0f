"""A real OpenID provider for tests: discovery and JWKS over HTTP on loopback, plus a token minter.

Usage::

    with TestIdp() as idp:
        token = idp.mint({"sub": "alice", "aud": "orders"})
        ...  # point a JwksCache at idp.issuer (discovery) or idp.jwks_uri

With ``registration=True`` it is also a minimal RFC 7591/7592 registration endpoint
(``POST /register`` with the initial access token, ``DELETE /register/{client_id}`` with the
client's registration access token), listed in discovery as ``registration_endpoint``.

The server is a ``ThreadingHTTPServer`` on ``127.0.0.1`` with an ephemeral port, in a daemon
thread. Its behaviour can be changed while it runs (rotation, outages, delays, Cache-Control,
garbage answers, redirects) and it counts the requests it serves, so that tests can assert how
often a cache really went to the network.

``mint`` builds tokens by hand rather than through ``jwt.encode`` so that tests can build the
malicious tokens a gateway must refuse: ``alg: none``, HS256 keyed with the RSA public key,
forbidden headers, missing claims. Keys are generated once per process and shared (RSA key
generation is slow), so starting many providers is cheap.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm, get_default_algorithms

__all__ = ["TestIdp", "ec_private_key", "rsa_private_key"]

_KEY_LOCK = threading.Lock()
_RSA_KEYS: list[rsa.RSAPrivateKey] = []
_EC_KEY: list[ec.EllipticCurvePrivateKey] = []
_HMAC_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def rsa_private_key(index: int = 0) -> rsa.RSAPrivateKey:
    """The process-wide RSA-2048 key number ``index``, generated on first use."""
    with _KEY_LOCK:
        while len(_RSA_KEYS) <= index:
            _RSA_KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return _RSA_KEYS[index]


def ec_private_key() -> ec.EllipticCurvePrivateKey:
    """The process-wide EC P-256 key, generated on first use."""
    with _KEY_LOCK:
        if not _EC_KEY:
            _EC_KEY.append(ec.generate_private_key(ec.SECP256R1()))
        return _EC_KEY[0]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    idp: TestIdp

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout tests) breaks the pipe: expected, not worth a traceback.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    send_length = True
    trickle: float | None = None

    def do_GET(self) -> None:
        self.server.idp._serve(self)

    def do_POST(self) -> None:
        self.server.idp._serve_registration(self)

    def do_DELETE(self) -> None:
        self.server.idp._serve_registration(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


class TestIdp:
    """A local OpenID provider publishing an RSA key ``rsa-1`` and an EC P-256 key ``ec-1``."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self, *, include_alg: bool = True, registration: bool = False,
        initial_access_token: str | None = None,
    ) -> None:
        """``include_alg=False`` publishes JWKs without ``alg`` (clients derive the family).
        ``registration=True`` serves dynamic client registration; ``initial_access_token``, when
        given, must be presented as ``Authorization: Bearer …`` to register."""
        self._include_alg = include_alg
        self._registration = registration
        self.initial_access_token = initial_access_token
        self.registered: dict[str, dict[str, Any]] = {}
        """Clients currently registered: client_id → metadata (with the registration token)."""
        self.registration_requests: list[tuple[str, str, str | None]] = []
        """(method, path, Authorization header) of every registration request."""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._private: dict[str, Any] = {"rsa-1": rsa_private_key(0), "ec-1": ec_private_key()}
        self._published: list[str] = ["rsa-1", "ec-1"]
        self._extra_jwks: list[Any] = []
        self._rotations = 0
        self._failing: int | None = None
        self._delay = 0.0
        self._cache_control: str | None = None
        self._jwks_body: bytes | None = None
        self._discovery_overrides: dict[str, Any] = {}
        self._redirect: str | None = None
        self._send_length = True
        self._trickle: float | None = None
        self.jwks_hits = 0
        self.discovery_hits = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> TestIdp:
        """Start serving on an ephemeral loopback port; returns self."""
        if self._server is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.idp = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01},
            name="test-idp", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in set_delay
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> TestIdp:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def issuer(self) -> str:
        """The base URL ``http://127.0.0.1:PORT``, which is also the ``iss`` of its tokens."""
        if self._server is None:
            raise RuntimeError("the test IdP is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def registration_endpoint(self) -> str:
        """Where clients are registered (served only with ``registration=True``)."""
        return f"{self.issuer}/register"

    @property
    def jwks_uri(self) -> str:
        """Where the JWKS is served."""
        return f"{self.issuer}/jwks"

    # -- keys and tokens ------------------------------------------------------------------------

    def private_key(self, kid: str) -> Any:
        """The private key behind ``kid`` (also for retired kids)."""
        return self._private[kid]

    def public_pem(self, kid: str = "rsa-1") -> bytes:
        """The PEM of ``kid``'s public key: the "HMAC secret" of the alg-confusion attack."""
        return bytes(
            self._private[kid].public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def mint(
        self,
        claims: Mapping[str, Any] | None = None,
        *,
        kid: str | None = "rsa-1",
        alg: str | None = None,
        headers: Mapping[str, Any] | None = None,
        ttl: int = 300,
        sign_with: Any = None,
    ) -> str:
        """A compact JWS signed by ``kid``'s key (or ``sign_with``).

        ``iss``, ``iat`` and ``exp`` are filled in unless ``claims`` gives them; a claim or
        header given as None is left out (e.g. ``{"exp": None}``). ``kid=None`` leaves the kid
        out of the header but still signs with ``rsa-1``. ``alg`` defaults to the key's (RS256
        or ES256); ``"none"`` gives an empty signature and ``HS*`` needs ``sign_with`` (bytes or
        str, e.g. :meth:`public_pem`). ``sign_with`` may also be any private key object.
        """
        key = sign_with if sign_with is not None else self._private[kid or "rsa-1"]
        if alg is None:
            alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
        now = int(time.time())
        payload: dict[str, Any] = {"iss": self.issuer, "iat": now, "exp": now + ttl}
        payload.update(claims or {})
        header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
        if kid is not None:
            header["kid"] = kid
        header.update(headers or {})
        signing_input = ".".join(
            _b64(_json({k: v for k, v in part.items() if v is not None}))
            for part in (header, payload)
        ).encode("ascii")
        return f"{signing_input.decode()}.{_b64(self._sign(alg, signing_input, key))}"

    @staticmethod
    def _sign(alg: str, signing_input: bytes, key: Any) -> bytes:
        if alg.lower() in ("none", ""):  # unsecured JWS, in any spelling an attacker may try
            return b""
        if alg in _HMAC_HASHES:
            if not isinstance(key, bytes | str):
                raise TypeError(f"{alg} needs sign_with=<bytes or str secret>")
            secret = key.encode() if isinstance(key, str) else key
            return hmac.new(secret, signing_input, _HMAC_HASHES[alg]).digest()
        return bytes(get_default_algorithms()[alg].sign(signing_input, key))

    def rotate(self) -> str:
        """Add and publish a new RSA key; returns its kid (``rsa-2``, ``rsa-3``, ...)."""
        with self._lock:
            self._rotations += 1
            kid = f"rsa-{self._rotations + 1}"
            self._private[kid] = rsa_private_key(self._rotations)
            self._published.append(kid)
        return kid

    def retire(self, kid: str) -> None:
        """Stop publishing ``kid`` (it can still sign, to build tokens with an unknown kid)."""
        with self._lock:
            self._published.remove(kid)

    def add_jwk(self, jwk: Any) -> None:
        """Publish an extra member of ``keys`` as is: odd, broken, hostile, or not even a JWK."""
        with self._lock:
            self._extra_jwks.append(copy.deepcopy(jwk))

    def jwks(self) -> dict[str, Any]:
        """The JWK Set currently published."""
        with self._lock:
            keys = [self._public_jwk(kid) for kid in self._published]
            return {"keys": keys + copy.deepcopy(self._extra_jwks)}

    def _public_jwk(self, kid: str) -> dict[str, Any]:
        public = self._private[kid].public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk, alg = RSAAlgorithm.to_jwk(public, as_dict=True), "RS256"
        else:
            jwk, alg = ECAlgorithm.to_jwk(public, as_dict=True), "ES256"
        jwk.update({"kid": kid, "use": "sig"})
        if self._include_alg:
            jwk["alg"] = alg
        return jwk

    # -- behaviour ------------------------------------------------------------------------------

    def set_failing(self, status: int | None) -> None:
        """Answer every request with ``status`` (e.g. 500), or behave again with None."""
        with self._lock:
            self._failing = status

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering each request (cut short by :meth:`stop`)."""
        with self._lock:
            self._delay = seconds

    def set_cache_control(self, value: str | None) -> None:
        """The ``Cache-Control`` header of JWKS answers (none by default)."""
        with self._lock:
            self._cache_control = value

    def set_jwks_body(self, body: bytes | None) -> None:
        """Answer ``/jwks`` with these raw bytes (status 200), or normally again with None."""
        with self._lock:
            self._jwks_body = body

    def set_discovery(self, overrides: Mapping[str, Any] | None) -> None:
        """Override members of the discovery document (e.g. a wrong ``issuer``)."""
        with self._lock:
            self._discovery_overrides = dict(overrides or {})

    def set_jwks_redirect(self, location: str | None) -> None:
        """Answer ``/jwks`` with a 302 to ``location`` (``/jwks-moved`` serves the real JWKS)."""
        with self._lock:
            self._redirect = location

    def set_content_length(self, enabled: bool) -> None:
        """Send ``Content-Length`` (default) or end bodies by closing the connection."""
        with self._lock:
            self._send_length = enabled

    def set_trickle(self, interval: float | None) -> None:
        """Send bodies 64 bytes at a time, ``interval`` seconds apart (a slow-drip server)."""
        with self._lock:
            self._trickle = interval

    def reset_counters(self) -> None:
        """Set ``jwks_hits`` and ``discovery_hits`` back to zero."""
        with self._lock:
            self.jwks_hits = self.discovery_hits = 0

    # -- serving (runs in the server's threads) -------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        path = handler.path.split("?", 1)[0]
        with self._lock:
            if path == "/jwks":
                self.jwks_hits += 1
            elif path == "/.well-known/openid-configuration":
                self.discovery_hits += 1
            failing, delay, redirect = self._failing, self._delay, self._redirect
            cache_control, jwks_body = self._cache_control, self._jwks_body
            overrides = dict(self._discovery_overrides)
            handler.send_length, handler.trickle = self._send_length, self._trickle
        if delay and self._stopping.wait(delay):
            return
        if failing is not None:
            self._answer(handler, failing, _json({"error": "server_error"}))
        elif path == "/.well-known/openid-configuration":
            document = {
                "issuer": self.issuer,
                "jwks_uri": self.jwks_uri,
                "token_endpoint": f"{self.issuer}/token",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }
            if self._registration:
                document["registration_endpoint"] = self.registration_endpoint
            document.update(overrides)
            self._answer(handler, 200, _json(document))
        elif path == "/jwks" and redirect is not None:
            self._answer(handler, 302, b"", {"location": redirect})
        elif path == "/jwks" and jwks_body is not None:
            self._answer(handler, 200, jwks_body, cache_control=cache_control)
        elif path in ("/jwks", "/jwks-moved"):
            self._answer(handler, 200, _json(self.jwks()), cache_control=cache_control)
        else:
            self._answer(handler, 404, _json({"error": "not_found"}))

    def _serve_registration(self, handler: _Handler) -> None:
        path = handler.path.split("?", 1)[0]
        authorization = handler.headers.get("authorization")
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self.registration_requests.append((handler.command, path, authorization))
            failing, handler.send_length, handler.trickle = self._failing, True, None
        if not self._registration:
            self._answer(handler, 404, _json({"error": "not_found"}))
        elif failing is not None:
            self._answer(handler, failing, _json({"error": "server_error"}))
        elif handler.command == "POST" and path == "/register":
            self._register(handler, authorization, body)
        elif handler.command == "DELETE" and path.startswith("/register/"):
            client_id = path.removeprefix("/register/")
            with self._lock:
                client = self.registered.get(client_id)
                token = None if client is None else client["registration_access_token"]
                allowed = token is not None and authorization == f"Bearer {token}"
                if allowed:
                    del self.registered[client_id]
            if allowed:
                self._answer(handler, 204, b"")
            else:
                self._answer(handler, 401, _json({"error": "invalid_token"}))
        else:
            self._answer(handler, 405, _json({"error": "method_not_allowed"}))

    def _register(self, handler: _Handler, authorization: str | None, body: bytes) -> None:
        expected = self.initial_access_token
        if expected is not None and authorization != f"Bearer {expected}":
            self._answer(handler, 401, _json({"error": "invalid_token",
                                              "error_description": "bad initial access token"}))
            return
        try:
            metadata = json.loads(body or b"{}")
        except ValueError:
            metadata = None
        if not isinstance(metadata, dict):
            self._answer(handler, 400, _json({"error": "invalid_client_metadata"}))
            return
        client_id = f"client-{secrets.token_hex(6)}"
        answer = {
            **metadata, "client_id": client_id, "client_secret": secrets.token_urlsafe(24),
            "registration_access_token": secrets.token_urlsafe(24),
            "registration_client_uri": f"{self.registration_endpoint}/{client_id}",
        }
        with self._lock:
            self.registered[client_id] = answer
        self._answer(handler, 201, _json(answer))

    def _answer(
        self,
        handler: _Handler,
        status: int,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        cache_control: str | None = None,
    ) -> None:
        try:
            handler.send_response(status)
            handler.send_header("content-type", "application/json")
            if handler.send_length:
                handler.send_header("content-length", str(len(body)))
            if cache_control is not None:
                handler.send_header("cache-control", cache_control)
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            if handler.trickle is None:
                handler.wfile.write(body)
                return
            for start in range(0, len(body), 64):
                handler.wfile.write(body[start : start + 64])
                handler.wfile.flush()
                if self._stopping.wait(handler.trickle):
                    return
        except OSError:
            pass  # the client went away (e.g. it timed out first)
