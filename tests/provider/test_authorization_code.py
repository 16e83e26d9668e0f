"""The authorization code grant with PKCE (S256), through the provider's sign-in page."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from tests.provider.conftest import (
    PASSWORD,
    REDIRECT_URI,
    USER,
    RunningIdp,
    errors_text,
    form_fields,
    pkce_pair,
    register,
)
from tests.provider.test_tokens import verify

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def web_client(idp: RunningIdp) -> dict[str, Any]:
    with httpx.Client(trust_env=False) as http:
        return register(http, idp, client_name="Orders <web>", grant_types=["authorization_code"],
                        redirect_uris=[REDIRECT_URI, "https://app.example/cb"], scope="openid orders:read")


def _authorize(http: httpx.Client, idp: RunningIdp, client: dict[str, Any], challenge: str | None,
               **params: str) -> httpx.Response:
    query = {"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT_URI,
             "scope": "orders:read", "state": "st-123", **params}
    if challenge is not None:
        query.update(code_challenge=challenge, code_challenge_method="S256")
    return http.get(f"{idp.issuer}/authorize", params=query)


def _sign_in(http: httpx.Client, idp: RunningIdp, page: httpx.Response, password: str = PASSWORD,
             **overrides: str) -> httpx.Response:
    fields = form_fields(page.text)
    fields.update({"username": USER, "password": password, **overrides})
    return http.post(f"{idp.issuer}/authorize", data=fields)


def _code_from(response: httpx.Response) -> str:
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    query = parse_qs(location.query)
    assert query["state"] == ["st-123"]
    return query["code"][0]


def _redeem(http: httpx.Client, idp: RunningIdp, client: dict[str, Any], code: str, verifier: str
            ) -> httpx.Response:
    return http.post(f"{idp.issuer}/token", auth=(client["client_id"], client["client_secret"]), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier})


def test_sign_in_and_pkce_give_a_user_token(
    idp: RunningIdp, http: httpx.Client, web_client: dict[str, Any]
) -> None:
    verifier, challenge = pkce_pair()
    page = _authorize(http, idp, web_client, challenge)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "Orders &lt;web&gt;" in page.text  # the client's name, escaped
    assert "propylon_idp_csrf" in page.headers["set-cookie"]
    assert "httponly" in page.headers["set-cookie"].lower()
    code = _code_from(_sign_in(http, idp, page))
    response = _redeem(http, idp, web_client, code, verifier)
    assert response.status_code == 200, response.text
    claims = verify(idp, http, response.json()["access_token"])
    users = idp.cli("add-user", USER, "--password-stdin", stdin=PASSWORD + "\n")
    assert "already exists" in users.stderr
    assert claims["sub"] != web_client["client_id"]
    assert len(claims["sub"]) == 36
    assert claims["client_id"] == web_client["client_id"]
    assert claims["scope"] == "orders:read"
    assert jwt.get_unverified_header(response.json()["access_token"])["typ"] == "at+jwt"
    replay = _redeem(http, idp, web_client, code, verifier)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"


def test_a_wrong_pkce_verifier_is_refused_and_burns_the_code(
    idp: RunningIdp, http: httpx.Client, web_client: dict[str, Any]
) -> None:
    verifier, challenge = pkce_pair()
    code = _code_from(_sign_in(http, idp, _authorize(http, idp, web_client, challenge)))
    other_verifier, _ = pkce_pair()
    wrong = _redeem(http, idp, web_client, code, other_verifier)
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert _redeem(http, idp, web_client, code, verifier).json()["error"] == "invalid_grant"
    code = _code_from(_sign_in(http, idp, _authorize(http, idp, web_client, challenge)))
    no_verifier = http.post(
        f"{idp.issuer}/token", auth=(web_client["client_id"], web_client["client_secret"]),
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI})
    assert no_verifier.status_code == 400
    assert no_verifier.json()["error"] == "invalid_request"


def test_redirect_uri_must_match_at_the_token_endpoint(
    idp: RunningIdp, http: httpx.Client, web_client: dict[str, Any]
) -> None:
    verifier, challenge = pkce_pair()
    code = _code_from(_sign_in(http, idp, _authorize(http, idp, web_client, challenge)))
    response = http.post(f"{idp.issuer}/token", auth=(web_client["client_id"], web_client["client_secret"]),
                         data={"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                               "redirect_uri": "https://app.example/cb"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_public_client_uses_pkce_without_a_secret(idp: RunningIdp, http: httpx.Client) -> None:
    client = register(http, idp, grant_types=["authorization_code"], redirect_uris=[REDIRECT_URI],
                      token_endpoint_auth_method="none")
    assert "client_secret" not in client
    verifier, challenge = pkce_pair()
    code = _code_from(_sign_in(http, idp, _authorize(http, idp, client, challenge, scope="")))
    response = http.post(f"{idp.issuer}/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "client_id": client["client_id"], "code_verifier": verifier})
    assert response.status_code == 200, response.text


def test_pkce_is_required_and_s256_only(
    idp: RunningIdp, http: httpx.Client, web_client: dict[str, Any]
) -> None:
    missing = _authorize(http, idp, web_client, None)
    assert missing.status_code == 302
    error = parse_qs(urlsplit(missing.headers["location"]).query)
    assert error["error"] == ["invalid_request"]
    assert error["state"] == ["st-123"]
    _, challenge = pkce_pair()
    plain = _authorize(http, idp, web_client, None, code_challenge=challenge, code_challenge_method="plain")
    assert parse_qs(urlsplit(plain.headers["location"]).query)["error"] == ["invalid_request"]


def test_wrong_password_shows_the_form_again(
    idp: RunningIdp, http: httpx.Client, web_client: dict[str, Any]
) -> None:
    _, challenge = pkce_pair()
    page = _authorize(http, idp, web_client, challenge)
    refused = _sign_in(http, idp, page, password="not the password")
    assert refused.status_code == 401
    assert "Wrong username or password." in errors_text(refused.text)
    assert form_fields(refused.text)["code_challenge"] == challenge
    unknown_user = _sign_in(http, idp, page, username="mallory")
    assert unknown_user.status_code == 401


def test_sign_in_needs_the_csrf_cookie(idp: RunningIdp, web_client: dict[str, Any]) -> None:
    _, challenge = pkce_pair()
    with httpx.Client(trust_env=False) as first:
        page = _authorize(first, idp, web_client, challenge)
    with httpx.Client(trust_env=False) as other_browser:
        response = other_browser.post(f"{idp.issuer}/authorize",
                                      data={**form_fields(page.text), "username": USER, "password": PASSWORD})
    assert response.status_code == 400
    assert "sign-in form expired" in response.text


@pytest.mark.parametrize("params", [
    {"client_id": "no-such-client"},
    {"redirect_uri": "https://evil.example/cb"},
    {"client_id": ""},
])
def test_requests_that_cannot_go_back_to_the_client_get_an_error_page(
    idp: RunningIdp, http: httpx.Client, web_client: dict[str, Any], params: dict[str, str]
) -> None:
    _, challenge = pkce_pair()
    response = _authorize(http, idp, web_client, challenge, **params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert errors_text(response.text)
    assert "location" not in response.headers


def test_client_credentials_client_cannot_use_the_login_page(idp: RunningIdp, http: httpx.Client) -> None:
    machine = register(http, idp, redirect_uris=[REDIRECT_URI])
    _, challenge = pkce_pair()
    response = _authorize(http, idp, machine, challenge)
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["location"]).query)["error"] == ["unauthorized_client"]
