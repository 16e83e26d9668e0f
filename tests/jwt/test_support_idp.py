"""The TestIdp itself: what other suites rely on when they import ``tests.support.idp``."""

from __future__ import annotations

import httpx
import pytest
from jwt.api_jws import PyJWS
from jwt.api_jwt import PyJWT

from tests.support.idp import TestIdp


def test_start_stop_and_discovery() -> None:
    idp = TestIdp().start()
    try:
        assert idp.issuer.startswith("http://127.0.0.1:")
        with httpx.Client(trust_env=False) as http:
            discovery = http.get(f"{idp.issuer}/.well-known/openid-configuration").json()
            jwks = http.get(idp.jwks_uri).json()
        assert discovery["issuer"] == idp.issuer
        assert discovery["jwks_uri"] == f"{idp.issuer}/jwks"
        assert [(k["kid"], k["alg"], k["use"]) for k in jwks["keys"]] == [
            ("rsa-1", "RS256", "sig"),
            ("ec-1", "ES256", "sig"),
        ]
        assert (idp.discovery_hits, idp.jwks_hits) == (1, 1)
    finally:
        idp.stop()
    idp.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = idp.issuer


def test_minted_tokens_verify_with_the_published_keys() -> None:
    with TestIdp() as idp:
        decoder = PyJWT()
        rsa_token = idp.mint({"sub": "alice", "aud": "api"})
        claims = decoder.decode(
            rsa_token, idp.private_key("rsa-1").public_key(), algorithms=["RS256"],
            audience="api", issuer=idp.issuer,
        )
        assert claims["sub"] == "alice"
        assert claims["exp"] - claims["iat"] == 300
        ec_token = idp.mint({"sub": "bob"}, kid="ec-1", ttl=60)
        claims = decoder.decode(
            ec_token, idp.private_key("ec-1").public_key(), algorithms=["ES256"]
        )
        assert claims["exp"] - claims["iat"] == 60


def test_mint_can_drop_claims_and_headers() -> None:
    with TestIdp() as idp:
        token = idp.mint({"exp": None, "iss": None}, headers={"typ": None, "x": 1})
        header = PyJWS().get_unverified_header(token)
        assert header == {"alg": "RS256", "kid": "rsa-1", "x": 1}
        payload = PyJWT().decode(token, options={"verify_signature": False})
        assert set(payload) == {"iat"}


def test_rotate_retire_and_failures() -> None:
    with TestIdp() as idp, httpx.Client(trust_env=False) as http:
        kid = idp.rotate()
        assert kid == "rsa-2"
        idp.retire("rsa-1")
        assert [k["kid"] for k in http.get(idp.jwks_uri).json()["keys"]] == ["ec-1", "rsa-2"]
        idp.set_failing(503)
        assert http.get(idp.jwks_uri).status_code == 503
        idp.set_failing(None)
        idp.set_cache_control("max-age=42")
        assert http.get(idp.jwks_uri).headers["cache-control"] == "max-age=42"
        assert idp.jwks_hits == 3
        idp.reset_counters()
        assert idp.jwks_hits == 0


def test_keys_are_shared_between_instances() -> None:
    with TestIdp() as first, TestIdp() as second:
        assert first.private_key("rsa-1") is second.private_key("rsa-1")
        assert first.issuer != second.issuer
