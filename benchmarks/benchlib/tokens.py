"""The benchmark's identity provider: an RSA key, RS256 tokens and a tiny JWKS server.

One RSA-2048 key pair per run. Tokens are RS256 with ``kid: bench-1``, ``iss`` = the JWKS
server's base URL, ``aud`` = ``urn:bench``, ``exp`` one hour ahead and ``client_id``/``sub`` =
``client-<n>``. They are signed with ``cryptography`` directly (RFC 7515 compact serialisation,
RFC 7518 §3.3 RSASSA-PKCS1-v1_5 with SHA-256), which also lets the correctness checks build the
malformed tokens no JWT library would produce. Signing costs about a millisecond per token, so
large batches are signed in a process pool (spawned, so no thread state is forked).
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

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

AUDIENCE = "urn:bench"
KID = "bench-1"
TOKEN_LIFETIME_S = 3600
_CHUNK = 500


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64_uint(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass(frozen=True)
class BenchKeys:
    """The run's signing key (PEM, so it can cross process boundaries) and its public half."""

    private_pem: bytes
    public_pem: bytes

    def private_key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(self.private_pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWK Set (RFC 7517/7518 §6.3) with ``kid``, ``use`` and ``alg``."""
        numbers = self.private_key().public_key().public_numbers()
        jwk = {"kty": "RSA", "n": _b64_uint(numbers.n), "e": _b64_uint(numbers.e)}
        return {"keys": [{**jwk, "kid": KID, "use": "sig", "alg": "RS256"}]}


def generate_keys() -> BenchKeys:
    """A fresh RSA-2048 key pair."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
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


def _json_b64(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """``base64url(header) "." base64url(claims)``, the JWS signing input."""
    return f"{_json_b64(header)}.{_json_b64(claims)}"


def sign_rs256(claims: dict[str, Any], key: rsa.RSAPrivateKey, kid: str = KID) -> str:
    """A compact RS256 JWS of ``claims`` with ``kid`` in its header."""
    signing_input = _unsigned({"alg": "RS256", "typ": "JWT", "kid": kid}, claims)
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def _mint_chunk(private_pem: bytes, issuer: str, start: int, stop: int, now: int) -> list[str]:
    key = BenchKeys(private_pem, b"").private_key()
    return [sign_rs256(claims_for(f"client-{n}", issuer, now), key) for n in range(start, stop)]


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


def _flip_signature(token: str) -> str:
    head, _, signature = token.rpartition(".")
    middle = len(signature) // 2
    swapped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{signature[:middle]}{swapped}{signature[middle + 1 :]}"


def invalid_tokens(keys: BenchKeys, issuer: str) -> dict[str, str]:
    """Tokens a JWT-validating proxy must answer with 401, keyed by what is wrong with them."""
    now = int(time.time())
    good = claims_for("client-invalid", issuer, now)
    key = keys.private_key()
    other_key = generate_keys().private_key()
    unsigned_hs = _unsigned({"alg": "HS256", "typ": "JWT", "kid": KID}, good)
    hs_signature = hmac.new(keys.public_pem, unsigned_hs.encode(), hashlib.sha256).digest()
    return {
        "bad signature": _flip_signature(sign_rs256(good, key)),
        "signed by another key": sign_rs256(good, other_key),
        "unknown kid": sign_rs256(good, other_key, kid="not-a-bench-key"),
        "alg none": _unsigned({"alg": "none", "typ": "JWT", "kid": KID}, good) + ".",
        "HS256 keyed with the public key": f"{unsigned_hs}.{_b64(hs_signature)}",
        "expired": sign_rs256({**good, "iat": now - 7200, "exp": now - 3600}, key),
        "wrong audience": sign_rs256({**good, "aud": "urn:not-bench"}, key),
        "wrong issuer": sign_rs256({**good, "iss": issuer + "/other"}, key),
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
