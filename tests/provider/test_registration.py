"""Discovery, JWKS, RFC 7591 registration with initial access tokens and RFC 7592 management."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.provider.conftest import REDIRECT_URI, RunningIdp, client_token, register

pytestmark = pytest.mark.slow


def test_discovery_documents_name_every_endpoint(idp: RunningIdp, http: httpx.Client) -> None:
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        response = http.get(idp.issuer + path)
        assert response.status_code == 200
        document = response.json()
        assert document["issuer"] == idp.issuer
        for name, suffix in [("token_endpoint", "/token"), ("jwks_uri", "/jwks"),
                             ("registration_endpoint", "/register"), ("authorization_endpoint", "/authorize"),
                             ("introspection_endpoint", "/introspect"), ("revocation_endpoint", "/revoke")]:
            assert document[name] == idp.issuer + suffix
        assert set(document["grant_types_supported"]) == {"authorization_code", "client_credentials"}
        assert document["code_challenge_methods_supported"] == ["S256"]


def test_jwks_publishes_public_keys_only(idp: RunningIdp, http: httpx.Client) -> None:
    keys = http.get(f"{idp.issuer}/jwks").json()["keys"]
    assert keys
    for key in keys:
        assert key["kty"] == "RSA"
        assert key["alg"] == "RS256"
        assert key["use"] == "sig"
        assert key["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


def test_registration_returns_credentials_once_and_stores_digests(
    idp: RunningIdp, http: httpx.Client
) -> None:
    client = register(http, idp, scope="orders:read", pol="gold", contacts=["ops@example.com"])
    assert client["client_secret"]
    assert client["registration_access_token"]
    assert client["registration_client_uri"] == f"{idp.issuer}/register/{client['client_id']}"
    assert client["grant_types"] == ["client_credentials"]
    assert client["response_types"] == []
    assert client["token_endpoint_auth_method"] == "client_secret_basic"
    assert client["pol"] == "gold"
    assert client["client_secret_expires_at"] == 0
    database = (idp.data_dir / "idp.db").read_bytes()
    assert client["client_secret"].encode() not in database
    assert client["registration_access_token"].encode() not in database


def test_registration_without_an_initial_access_token_is_refused(idp: RunningIdp, http: httpx.Client) -> None:
    response = http.post(f"{idp.issuer}/register", json={"client_name": "x"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert "initial access token" in response.json()["error_description"]
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("authorization", [
    "Bearer pidp_iat_not-a-real-token", "Bearer", "Basic dXNlcjpwYXNz", "pidp_iat_x",
])
def test_registration_with_a_wrong_initial_access_token_is_401(
    idp: RunningIdp, http: httpx.Client, authorization: str
) -> None:
    response = http.post(f"{idp.issuer}/register", json={"client_name": "x"},
                         headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_registration_with_an_expired_initial_access_token_is_401(
    idp: RunningIdp, http: httpx.Client
) -> None:
    expired = idp.iat(expires_in=-1)
    response = http.post(f"{idp.issuer}/register", json={"client_name": "x"},
                         headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token",
                               "error_description": "the initial access token has expired"}


def test_create_iat_command_makes_a_working_token(idp: RunningIdp, http: httpx.Client) -> None:
    made = idp.cli("create-iat", "--expires-in", "600")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("pidp_iat_")
    register(http, idp, token)
    assert token.encode() not in (idp.data_dir / "idp.db").read_bytes()


def test_development_demo_token_is_announced_and_works(idp: RunningIdp, http: httpx.Client) -> None:
    output = idp.output()
    assert "DEVELOPMENT DEFAULT" in output
    demo = output.split("development demo initial access token (valid until the next start): ")[1].split()[0]
    register(http, idp, demo)


BAD_METADATA: dict[str, tuple[dict[str, Any], str]] = {
    "grant-types-not-a-list": ({"grant_types": "client_credentials"}, "invalid_client_metadata"),
    "grant-types-number": ({"grant_types": 5}, "invalid_client_metadata"),
    "unknown-grant": ({"grant_types": ["password"]}, "invalid_client_metadata"),
    "name-not-string": ({"client_name": ["x"]}, "invalid_client_metadata"),
    "public-client-credentials": ({"token_endpoint_auth_method": "none"}, "invalid_client_metadata"),
    "unknown-auth-method": ({"token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
    "code-without-redirect": ({"grant_types": ["authorization_code"]}, "invalid_redirect_uri"),
    "redirect-with-fragment": ({"grant_types": ["authorization_code"],
                                "redirect_uris": ["https://app.example/cb#x"]}, "invalid_redirect_uri"),
    "redirect-not-http": ({"grant_types": ["authorization_code"],
                           "redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri"),
    "code-response-without-grant": ({"response_types": ["code"]}, "invalid_client_metadata"),
    "scope-with-quote": ({"scope": 'a"b'}, "invalid_client_metadata"),
    "blank-policy": ({"pol": "  "}, "invalid_client_metadata"),
    "too-many-uris": ({"grant_types": ["authorization_code"],
                       "redirect_uris": [f"https://a.example/{i}" for i in range(50)]},
                      "invalid_client_metadata"),
}


@pytest.mark.parametrize("case", BAD_METADATA, ids=list(BAD_METADATA))
def test_bad_metadata_is_refused_with_the_rfc_7591_error(
    idp: RunningIdp, http: httpx.Client, case: str
) -> None:
    changes, error = BAD_METADATA[case]
    body = {"client_name": "bad", "grant_types": ["client_credentials"], **changes}
    response = http.post(
        f"{idp.issuer}/register", json=body, headers={"Authorization": f"Bearer {idp.iat()}"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert response.json()["error_description"]


def _manage(http: httpx.Client, method: str, client: dict[str, Any], token: str | None = None,
            **kwargs: Any) -> httpx.Response:
    return http.request(method, client["registration_client_uri"], headers={
        "Authorization": f"Bearer {token or client['registration_access_token']}"}, **kwargs)


def test_rfc7592_read_update_delete(idp: RunningIdp, http: httpx.Client) -> None:
    client = register(http, idp, scope="a b")
    read = _manage(http, "GET", client)
    assert read.status_code == 200
    current = read.json()
    assert current["client_id"] == client["client_id"]
    assert current["scope"] == "a b"
    assert "client_secret" not in current  # stored as a digest: shown once only
    assert current["registration_access_token"] == client["registration_access_token"]

    update = {**current, "client_name": "renamed", "scope": "a"}  # read-only fields included: ignored
    updated = _manage(http, "PUT", client, json=update)
    assert updated.status_code == 200, updated.text
    assert updated.json()["client_name"] == "renamed"
    assert updated.json()["scope"] == "a"
    assert _manage(http, "GET", client).json()["client_name"] == "renamed"
    assert client_token(http, idp, client, scope="b").json()["error"] == "invalid_scope"

    deleted = _manage(http, "DELETE", client)
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = _manage(http, "GET", client)
    assert gone.status_code == 401
    assert gone.json()["error"] == "invalid_token"
    assert client_token(http, idp, client).status_code == 401


def test_rfc7592_update_needs_the_matching_client_id(idp: RunningIdp, http: httpx.Client) -> None:
    client = register(http, idp)
    current = _manage(http, "GET", client).json()
    without_id = {k: v for k, v in current.items() if k != "client_id"}
    for body in ({**current, "client_id": "someone-else"}, without_id):
        response = _manage(http, "PUT", client, json=body)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
    switch = _manage(http, "PUT", client, json={**current, "token_endpoint_auth_method": "none",
                                                 "grant_types": ["authorization_code"],
                                                 "redirect_uris": [REDIRECT_URI]})
    assert switch.status_code == 400
    assert switch.json()["error"] == "invalid_client_metadata"
    wrong_types = _manage(http, "PUT", client, json={**current, "redirect_uris": "x"})
    assert wrong_types.status_code == 400
    assert wrong_types.json()["error"] == "invalid_client_metadata"


def test_rfc7592_refuses_wrong_tokens_and_other_clients_tokens(idp: RunningIdp, http: httpx.Client) -> None:
    mine, other = register(http, idp), register(http, idp)
    for token in ("pidp_rat_wrong", other["registration_access_token"]):
        for method in ("GET", "DELETE"):
            response = _manage(http, method, mine, token)
            assert response.status_code == 401
            assert response.json()["error"] == "invalid_token"
    missing = http.get(mine["registration_client_uri"])
    assert missing.status_code == 401
    assert _manage(http, "GET", mine).status_code == 200  # still there
    unknown = {**mine, "registration_client_uri": f"{idp.issuer}/register/unknown-client"}
    assert _manage(http, "GET", unknown).status_code == 401
