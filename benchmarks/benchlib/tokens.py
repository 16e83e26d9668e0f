"""The benchmark's identity provider: an RSA key, RS256 tokens and a tiny JWKS server.

One RSA-2048 key pair per run. Tokens are RS256 with ``kid: bench-1``, ``iss`` = the JWKS
server's base URL, ``aud`` = ``urn:bench``, ``exp`` one hour ahead and ``client_id``/``sub`` =
``client-<n>``. Signing costs about a millisecond per token, so large batches are signed in a
process pool (spawned, so no thread state is forked).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import get_context
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

AUDIENCE = "urn:bench"
KID = "bench-1"
TOKEN_LIFETIME_S = 3600
_CHUNK = 500


@dataclass(frozen=True)
class BenchKeys:
    """The run's signing key (PEM, so it can cross process boundaries) and its public half."""

    private_pem: bytes
    public_pem: bytes

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWK Set with ``kid``, ``use`` and ``alg``."""
        public_key = serialization.load_pem_public_key(self.public_pem)
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(public_key, as_dict=True)
        jwk.update({"kid": KID, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}


def generate_keys() -> BenchKeys:
    """A fresh RSA-2048 key pair."""
    return _keys_from(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def _keys_from(private_key: rsa.RSAPrivateKey) -> BenchKeys:
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return BenchKeys(private_pem=private_pem, public_pem=public_pem)


def claims_for(client: str, issuer: str, now: int) -> dict[str, Any]:
    """The claims of a valid benchmark token for ``client``."""
    return {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": client,
        "client_id": client,
        "iat": now,
        "exp": now + TOKEN_LIFETIME_S,
    }


def _sign(claims: dict[str, Any], private_pem: bytes, kid: str = KID) -> str:
    return jwt.encode(claims, private_pem, algorithm="RS256", headers={"kid": kid})


def _mint_chunk(private_pem: bytes, issuer: str, start: int, stop: int, now: int) -> list[str]:
    key = serialization.load_pem_private_key(private_pem, password=None)
    return [
        jwt.encode(
            claims_for(f"client-{n}", issuer, now), key, algorithm="RS256", headers={"kid": KID}
        )
        for n in range(start, stop)
    ]


def mint_tokens(keys: BenchKeys, issuer: str, start: int, count: int) -> list[str]:
    """Valid tokens for clients ``client-<start>`` … ``client-<start + count - 1>``."""
    now = int(time.time())
    bounds = [(s, min(s + _CHUNK, start + count)) for s in range(start, start + count, _CHUNK)]
    if len(bounds) <= 1:
        return [tok for s, e in bounds for tok in _mint_chunk(keys.private_pem, issuer, s, e, now)]
    workers = min(len(bounds), os.cpu_count() or 1)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_mint_chunk, keys.private_pem, issuer, s, e, now) for s, e in bounds]
        return [tok for future in futures for tok in future.result()]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def _flip_signature(token: str) -> str:
    head, _, signature = token.rpartition(".")
    middle = len(signature) // 2
    swapped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{signature[:middle]}{swapped}{signature[middle + 1 :]}"


def invalid_tokens(keys: BenchKeys, issuer: str) -> dict[str, str]:
    """Tokens a JWT-validating proxy must answer with 401, keyed by what is wrong with them."""
    now = int(time.time())
    good = claims_for("client-invalid", issuer, now)
    other_key = generate_keys().private_pem
    unsigned_hs = _unsigned({"alg": "HS256", "typ": "JWT", "kid": KID}, good)
    hs_signature = hmac.new(keys.public_pem, unsigned_hs.encode(), hashlib.sha256).digest()
    return {
        "bad signature": _flip_signature(_sign(good, keys.private_pem)),
        "signed by another key": _sign(good, other_key),
        "unknown kid": _sign(good, other_key, kid="not-a-bench-key"),
        "alg none": _unsigned({"alg": "none", "typ": "JWT", "kid": KID}, good) + ".",
        "HS256 keyed with the public key": f"{unsigned_hs}.{_b64(hs_signature)}",
        "expired": _sign({**good, "iat": now - 7200, "exp": now - 3600}, keys.private_pem),
        "wrong audience": _sign({**good, "aud": "urn:not-bench"}, keys.private_pem),
        "wrong issuer": _sign({**good, "iss": issuer + "/other"}, keys.private_pem),
    }


def _handler_for(documents: dict[str, bytes]) -> type[BaseHTTPRequestHandler]:
    class JwksHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = documents.get(self.path.split("?", 1)[0])
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "public, max-age=600")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: Any) -> None:
            return

    return JwksHandler


@contextmanager
def jwks_server(keys: BenchKeys) -> Iterator[str]:
    """Serve ``/jwks`` and ``/.well-known/openid-configuration`` on loopback; yield the issuer."""
    documents: dict[str, bytes] = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(documents))
    issuer = f"http://127.0.0.1:{server.server_address[1]}"
    documents["/jwks"] = json.dumps(keys.jwks()).encode()
    documents["/.well-known/openid-configuration"] = json.dumps(
        {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks",
            "id_token_signing_alg_values_supported": ["RS256"],
        }
    ).encode()
    thread = threading.Thread(target=server.serve_forever, name="jwks-server", daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
