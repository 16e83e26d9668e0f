"""Garbage at every endpoint gets a precise OAuth-style 4xx, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.provider.conftest import RunningIdp, client_token, pkce_pair, register

pytestmark = pytest.mark.slow

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _oauth_error(response: httpx.Response, status: int | tuple[int, ...], error: str | None = None) -> None:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body["error"], str)
    assert isinstance(body["error_description"], str)
    if error is not None:
        assert body["error"] == error


@pytest.mark.parametrize(("body", "error"), [
    (b"{not json", "invalid_request"),
    (b"", "invalid_request"),
    (b"[1, 2]", "invalid_client_metadata"),
    (b'"a string"', "invalid_client_metadata"),
    (b'{"client_name": "a\\u0000b"}', "invalid_client_metadata"),
    (b'{"client_name": "x", "grant_types": [null]}', "invalid_client_metadata"),
    (b'{"client_name": "x", "grant_types": ["client_credentials"], "redirect_uris": [1]}',
     "invalid_client_metadata"),
    (b'{"grant_types": ["client_credentials"], "jwks": "x"}', "invalid_client_metadata"),
    (b'{"grant_types": {"a": 1}}', "invalid_client_metadata"),
    (b"\xff\xfe{}", "invalid_request"),
])
def test_registration_garbage(idp: RunningIdp, http: httpx.Client, body: bytes, error: str) -> None:
    response = http.post(f"{idp.issuer}/register", content=body,
                         headers={**JSON, "Authorization": f"Bearer {idp.iat()}"})
    _oauth_error(response, 400, error)


def test_registration_needs_json(idp: RunningIdp, http: httpx.Client) -> None:
    response = http.post(f"{idp.issuer}/register", data={"client_name": "x"},
                         headers={"Authorization": f"Bearer {idp.iat()}"})
    _oauth_error(response, 400, "invalid_request")


def test_huge_bodies_get_413(idp: RunningIdp, http: httpx.Client) -> None:
    huge = b'{"client_name": "' + b"x" * (200 * 1024) + b'"}'
    response = http.post(f"{idp.issuer}/register", content=huge,
                         headers={**JSON, "Authorization": f"Bearer {idp.iat()}"})
    _oauth_error(response, 413)

    def chunks() -> Any:
        for _ in range(100):
            yield b"a" * 4096

    streamed = http.post(f"{idp.issuer}/token", content=chunks(), headers=FORM)
    _oauth_error(streamed, 413)


@pytest.mark.parametrize("body", [
    b"grant_type=client_credentials&grant_type=client_credentials",
    b"grant_type=client_%00credentials",
    b"grant_type=%ff%fe",
    b"&".join(b"a%d=1" % i for i in range(200)),
    b"grant_type=client_credentials&scope=%22quoted%5C",
    b"grant_type=%22%5C",
])
def test_token_endpoint_garbage(idp: RunningIdp, http: httpx.Client, body: bytes) -> None:
    client = register(http, idp)
    response = http.post(f"{idp.issuer}/token", content=body, headers=FORM,
                         auth=(client["client_id"], client["client_secret"]))
    _oauth_error(response, (400, 401))


@pytest.mark.parametrize("authorization", [
    "Basic !!!not-base64", "Basic " + "//79", "Basic", "Bearer x", "Basic " + "QQ==" * 300,
])
def test_broken_client_authentication_is_invalid_client(
    idp: RunningIdp, http: httpx.Client, authorization: str
) -> None:
    response = http.post(f"{idp.issuer}/token", data={"grant_type": "client_credentials"},
                         headers={"Authorization": authorization})
    _oauth_error(response, (400, 401))


def test_token_endpoint_needs_a_form(idp: RunningIdp, http: httpx.Client) -> None:
    client = register(http, idp)
    response = http.post(f"{idp.issuer}/token", json={"grant_type": "client_credentials"},
                         auth=(client["client_id"], client["client_secret"]))
    _oauth_error(response, 400, "invalid_request")
    assert client_token(http, idp, client).status_code == 200


def test_unknown_routes_and_methods_are_json(idp: RunningIdp, http: httpx.Client) -> None:
    _oauth_error(http.get(f"{idp.issuer}/nope"), 404)
    _oauth_error(http.get(f"{idp.issuer}/token"), 405)
    _oauth_error(http.delete(f"{idp.issuer}/register"), 405)


def test_rfc7592_garbage(idp: RunningIdp, http: httpx.Client) -> None:
    client = register(http, idp)
    auth = {"Authorization": f"Bearer {client['registration_access_token']}"}
    uri = client["registration_client_uri"]
    _oauth_error(http.put(uri, content=b"{oops", headers={**auth, **JSON}), 400, "invalid_request")
    _oauth_error(http.put(uri, content=b"[]", headers={**auth, **JSON}), 400)
    _oauth_error(http.put(uri, json={"client_id": client["client_id"], "grant_types": 3}, headers=auth), 400,
                 "invalid_client_metadata")
    _oauth_error(http.get(f"{idp.issuer}/register/" + "x" * 300, headers=auth), 401, "invalid_token")
    _oauth_error(http.get(f"{idp.issuer}/register/%00", headers=auth), 401, "invalid_token")
    assert http.get(uri, headers=auth).status_code == 200


@pytest.mark.parametrize("query", [
    {"response_type": 'co"de'},
    {"response_type": "token"},
    {"client_id": "a\\b"},
    {"client_id": "x" * 5000},
    {"redirect_uri": "%00"},
    {"state": 'quote"back\\slash'},
])
def test_authorization_endpoint_garbage_never_500(
    idp: RunningIdp, http: httpx.Client, query: dict[str, str]
) -> None:
    client = register(http, idp, grant_types=["authorization_code"],
                      redirect_uris=["http://127.0.0.1:9/cb"])
    _, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": client["client_id"], "code_challenge": challenge,
              "code_challenge_method": "S256", **query}
    response = http.get(f"{idp.issuer}/authorize", params=params)
    # A quote in the opaque state is no problem: it is escaped in the page and encoded in URLs.
    assert response.status_code in (200, 302, 400), response.text
    nul = http.get(f"{idp.issuer}/authorize?client_id=%00")
    assert nul.status_code == 400
