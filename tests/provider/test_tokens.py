"""Client credentials tokens (RFC 9068 JWTs checked with PyJWT against the served JWKS),
introspection (RFC 7662) and revocation (RFC 7009)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest

from tests.provider.conftest import RunningIdp, client_token, register

pytestmark = pytest.mark.slow

AUDIENCE = "urn:propylon:api"


def verify(idp: RunningIdp, http: httpx.Client, token: str) -> dict[str, Any]:
    """The token's claims, verified with PyJWT against the keys the provider serves now."""
    header = jwt.get_unverified_header(token)
    keys = {key["kid"]: key for key in http.get(f"{idp.issuer}/jwks").json()["keys"]}
    key = jwt.PyJWK(keys[header["kid"]])
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=[header["alg"]], audience=AUDIENCE,
                                        issuer=idp.issuer, options={"require": ["exp", "iat", "jti"]})
    return claims


def test_client_credentials_token_is_an_rfc9068_jwt(idp: RunningIdp, http: httpx.Client) -> None:
    client = register(http, idp, scope="orders:read orders:write", pol="gold")
    response = client_token(http, idp, client, scope="orders:read")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    answer = response.json()
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 3600
    assert answer["scope"] == "orders:read"
    assert "refresh_token" not in answer
    token = answer["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert header["kid"]
    claims = verify(idp, http, token)
    assert claims["iss"] == idp.issuer
    assert claims["sub"] == claims["client_id"] == client["client_id"]
    assert claims["aud"] == AUDIENCE
    assert claims["scope"] == "orders:read"
    assert claims["pol"] == "gold"
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 30
    second = verify(idp, http, client_token(http, idp, client).json()["access_token"])
    assert second["jti"] != claims["jti"]
    assert second["scope"] == "orders:read orders:write"  # no scope asked: every registered one


def test_client_secret_post_and_scope_rules(idp: RunningIdp, http: httpx.Client) -> None:
    client = register(http, idp, token_endpoint_auth_method="client_secret_post", scope="read")
    form = {"grant_type": "client_credentials", "client_id": client["client_id"],
            "client_secret": client["client_secret"]}
    assert http.post(f"{idp.issuer}/token", data=form).status_code == 200
    basic = client_token(http, idp, client)  # registered for client_secret_post only
    assert basic.status_code == 401
    assert basic.json()["error"] == "invalid_client"
    bad_scope = http.post(f"{idp.issuer}/token", data={**form, "scope": "read admin"})
    assert bad_scope.status_code == 400
    assert bad_scope.json()["error"] == "invalid_scope"
    no_scope_client = register(http, idp)
    refused = client_token(http, idp, no_scope_client, scope="read")
    assert refused.json()["error"] == "invalid_scope"
    claims = verify(idp, http, client_token(http, idp, no_scope_client).json()["access_token"])
    assert claims["scope"] == ""
    assert "pol" not in claims


def test_token_endpoint_refuses_wrong_credentials_and_grants(idp: RunningIdp, http: httpx.Client) -> None:
    client = register(http, idp)
    wrong = http.post(f"{idp.issuer}/token", data={"grant_type": "client_credentials"},
                      auth=(client["client_id"], "wrong secret"))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    unknown = http.post(f"{idp.issuer}/token", data={"grant_type": "client_credentials"},
                        auth=("no-such-client", "secret"))
    assert unknown.status_code == 401
    assert unknown.json()["error"] == "invalid_client"
    anonymous = http.post(f"{idp.issuer}/token", data={"grant_type": "client_credentials"})
    assert anonymous.status_code in (400, 401)
    assert anonymous.json()["error"] == "invalid_client"
    password = client_token(http, idp, client, grant_type="password")
    assert password.status_code == 400
    assert password.json()["error"] == "unsupported_grant_type"
    code_grant = client_token(http, idp, client, grant_type="authorization_code", code="x")
    assert code_grant.status_code == 400
    assert code_grant.json()["error"] == "unauthorized_client"


def _introspect(http: httpx.Client, idp: RunningIdp, client: dict[str, Any], token: str) -> httpx.Response:
    return http.post(f"{idp.issuer}/introspect", data={"token": token},
                     auth=(client["client_id"], client["client_secret"]))


def test_introspection_and_revocation(idp: RunningIdp, http: httpx.Client) -> None:
    client = register(http, idp, scope="read", pol="silver")
    token = client_token(http, idp, client).json()["access_token"]
    claims = verify(idp, http, token)
    active = _introspect(http, idp, client, token)
    assert active.status_code == 200
    answer = active.json()
    assert answer["active"] is True
    assert answer["client_id"] == client["client_id"]
    assert answer["scope"] == "read"
    assert answer["jti"] == claims["jti"]
    assert answer["pol"] == "silver"
    assert answer["exp"] == claims["exp"]
    assert answer["aud"] == AUDIENCE
    assert answer["iss"] == idp.issuer

    other = register(http, idp)
    assert _introspect(http, idp, other, token).json() == {"active": False}
    not_his = http.post(f"{idp.issuer}/revoke", data={"token": token},
                        auth=(other["client_id"], other["client_secret"]))
    assert not_his.status_code == 400
    assert not_his.json()["error"] == "invalid_grant"
    assert _introspect(http, idp, client, token).json()["active"] is True

    revoked = http.post(f"{idp.issuer}/revoke", data={"token": token, "token_type_hint": "access_token"},
                        auth=(client["client_id"], client["client_secret"]))
    assert revoked.status_code == 200
    assert _introspect(http, idp, client, token).json() == {"active": False}
    again = http.post(f"{idp.issuer}/revoke", data={"token": token},
                      auth=(client["client_id"], client["client_secret"]))
    assert again.status_code == 200  # RFC 7009 §2.2: revoking twice is fine
    fresh = client_token(http, idp, client).json()["access_token"]
    assert _introspect(http, idp, client, fresh).json()["active"] is True


def test_introspection_needs_client_authentication_and_knows_garbage(
    idp: RunningIdp, http: httpx.Client
) -> None:
    client = register(http, idp)
    token = client_token(http, idp, client).json()["access_token"]
    anonymous = http.post(f"{idp.issuer}/introspect", data={"token": token})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "invalid_client"
    for garbage in ("not-a-token", token[:-4] + "AAAA", "a.b.c", "x" * 9000):
        response = _introspect(http, idp, client, garbage)
        assert response.status_code == 200
        assert response.json() == {"active": False}
    missing = http.post(
        f"{idp.issuer}/introspect", data={}, auth=(client["client_id"], client["client_secret"]))
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
    hint = http.post(f"{idp.issuer}/introspect", data={"token": token, "token_type_hint": "id_token"},
                     auth=(client["client_id"], client["client_secret"]))
    # Authlib answers 401 here (RFC 7009 §2.2.1 names the code, not the status).
    assert hint.status_code in (400, 401)
    assert hint.json()["error"] == "unsupported_token_type"


def test_deleting_a_client_makes_its_tokens_inactive(idp: RunningIdp, http: httpx.Client) -> None:
    client = register(http, idp)
    token = client_token(http, idp, client).json()["access_token"]
    watcher = register(http, idp)
    assert _introspect(http, idp, client, token).json()["active"] is True
    http.delete(client["registration_client_uri"],
                headers={"Authorization": f"Bearer {client['registration_access_token']}"})
    assert _introspect(http, idp, client, token).status_code == 401  # the client is gone
    assert _introspect(http, idp, watcher, token).json() == {"active": False}
