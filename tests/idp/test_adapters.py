"""Each IdP adapter's request shaping and error reading: pure functions, no I/O."""

from __future__ import annotations

import json

import pytest

from propylon.idp.adapters import KINDS, adapter_for
from propylon.idp.protocol import ClientRequest, RegistrationError, response_types_for

CC_ONLY = ClientRequest(client_name="orders-app")
WEB = ClientRequest(client_name="web-app", grant_types=("authorization_code", "client_credentials"),
                    redirect_uris=("https://app.example/cb",), scope="orders:read",
                    extra={"contacts": ["dev@example.com"], "client_name": "ignored"})
CURRENT = {
    "client_id": "c1", "client_name": "orders-app", "grant_types": ["client_credentials"],
    "response_types": [], "token_endpoint_auth_method": "client_secret_basic",
    "client_secret": "s3cret", "client_secret_expires_at": 0, "client_id_issued_at": 1700000000,
    "registration_access_token": "rat", "registration_client_uri": "https://idp.example/reg/c1",
    "registration_access_token_expires_in": 31536000,
}


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_every_kind_has_an_adapter_and_unknown_kinds_are_refused() -> None:
    assert set(KINDS) == {"generic", "keycloak", "okta", "gluu", "curity"}
    assert all(adapter_for(kind).kind == kind for kind in KINDS)
    with pytest.raises(ValueError, match="'ping'"):
        adapter_for("ping")


@pytest.mark.parametrize("kind", ["generic", "keycloak", "gluu", "curity"])
def test_standard_kinds_send_the_iat_and_the_rat_as_bearer(kind: str) -> None:
    adapter = adapter_for(kind)
    assert adapter.registration_authorization("iat") == "Bearer iat"
    assert adapter.registration_authorization(None) is None
    assert adapter.management_authorization("rat", "iat") == "Bearer rat"
    assert adapter.client_uri("https://idp/reg", "c1", {"registration_client_uri": "https://idp/reg/c1"}
                              ) == "https://idp/reg/c1"
    assert adapter.client_uri("https://idp/reg", "c1", {}) is None


def test_generic_client_credentials_only_client_sends_empty_response_types() -> None:
    shaped = adapter_for("generic").registration_metadata(CC_ONLY)
    assert shaped == {"client_name": "orders-app", "grant_types": ["client_credentials"],
                      "response_types": [], "token_endpoint_auth_method": "client_secret_basic"}


def test_generic_web_client_gets_code_redirects_scope_and_extra_metadata() -> None:
    shaped = adapter_for("generic").registration_metadata(WEB)
    assert shaped["response_types"] == ["code"]
    assert shaped["redirect_uris"] == ["https://app.example/cb"]
    assert shaped["scope"] == "orders:read"
    assert shaped["contacts"] == ["dev@example.com"]
    assert shaped["client_name"] == "web-app"  # the request's own fields win over extra


@pytest.mark.parametrize("kind", KINDS)
def test_update_sends_client_id_and_every_field_but_the_read_only_ones(kind: str) -> None:
    shaped = adapter_for(kind).update_metadata(CURRENT, {"client_name": "v2", "client_id": "forged",
                                                         "client_secret": "x"}, "c1")
    assert shaped == {"client_id": "c1", "client_name": "v2", "grant_types": ["client_credentials"],
                      "response_types": [], "token_endpoint_auth_method": "client_secret_basic"}


def test_keycloak_registration_path_and_iat_errors() -> None:
    keycloak = adapter_for("keycloak")
    assert keycloak.default_registration_endpoint("https://kc.example/realms/shop") == (
        "https://kc.example/realms/shop/clients-registrations/openid-connect")
    exhausted = keycloak.error(401, body(error="invalid_token",
                                         error_description="No remaining count on initial access token"))
    assert (exhausted.error, exhausted.status) == ("invalid_token", 401)
    assert "no registrations left" in exhausted.description
    for text in ("Failed decode token", "Expired initial access token"):
        expired = keycloak.error(401, body(error="invalid_token", error_description=text))
        assert "expired" in expired.description
    crashed = keycloak.error(500, b"<html>oops</html>")
    assert crashed.retriable
    assert "26.6" in crashed.description
    policy = keycloak.error(403, body(error="insufficient_scope", error_description="Host not trusted."))
    assert (policy.error, policy.description) == ("insufficient_scope", "Host not trusted.")


def test_okta_uses_ssws_its_clients_api_and_application_types() -> None:
    okta = adapter_for("okta")
    assert okta.default_registration_endpoint("https://acme.okta.com/oauth2/default") == (
        "https://acme.okta.com/oauth2/v1/clients")
    assert okta.default_registration_endpoint("https://acme.okta.com") == (
        "https://acme.okta.com/oauth2/v1/clients")
    assert okta.registration_authorization("api-token") == "SSWS api-token"
    assert okta.management_authorization(None, "api-token") == "SSWS api-token"
    assert okta.client_uri("https://acme.okta.com/oauth2/v1/clients/", "0oa1", {}) == (
        "https://acme.okta.com/oauth2/v1/clients/0oa1")
    service = okta.registration_metadata(CC_ONLY)
    assert service["application_type"] == "service"
    assert "response_types" not in service
    web = okta.registration_metadata(WEB)
    assert (web["application_type"], web["response_types"]) == ("web", ["code"])


def test_okta_errors_and_unknown_clients() -> None:
    okta = adapter_for("okta")
    bad_token = okta.error(401, body(errorCode="E0000011", errorSummary="Invalid token provided",
                                     errorLink="E0000011", errorId="oae1", errorCauses=[]))
    assert (bad_token.error, bad_token.status) == ("invalid_token", 401)
    assert not okta.client_gone(bad_token)
    unknown = okta.error(401, body(error="invalid_client",
                                   error_description="Invalid value for 'client_id' parameter."))
    assert okta.client_gone(unknown)
    duplicate = okta.error(400, body(error="invalid_client_metadata",
                                     error_description="client_name: An object with this field "
                                     "already exists in the current organization"))
    assert duplicate.error == "invalid_client_metadata"
    assert okta.error(404, body(errorCode="E0000007", errorSummary="Not found")).error == "not_found"


@pytest.mark.parametrize("kind", ["generic", "keycloak", "gluu", "curity"])
def test_a_401_is_not_taken_for_a_deleted_client(kind: str) -> None:
    adapter = adapter_for(kind)
    assert adapter.client_gone(RegistrationError("not_found", "", status=404))
    assert not adapter.client_gone(adapter.error(401, body(error="invalid_client")))


def test_gluu_asks_for_jwt_access_tokens() -> None:
    shaped = adapter_for("gluu").registration_metadata(CC_ONLY)
    assert shaped["access_token_as_jwt"] is True
    assert shaped["grant_types"] == ["client_credentials"]


def test_only_curity_rotates_credentials_on_read() -> None:
    assert [kind for kind in KINDS if adapter_for(kind).read_rotates_credentials] == ["curity"]


@pytest.mark.parametrize(("status", "answer", "error"), [
    (400, body(error="invalid_redirect_uri", error_description="bad"), "invalid_redirect_uri"),
    (400, b"", "invalid_request"),
    (401, b"not json", "invalid_token"),
    (403, body(message="nope"), "insufficient_scope"),
    (500, body(error=["not", "a", "string"]), "idp_error"),
])
def test_standard_errors_whatever_the_status(status: int, answer: bytes, error: str) -> None:
    found = adapter_for("generic").error(status, answer)
    assert (found.error, found.status) == (error, status)


def test_redirect_uri_refusals_in_either_form() -> None:
    assert RegistrationError("invalid_redirect_uri", "x", status=400).redirect_uri_refused
    assert RegistrationError("invalid_client_metadata", "redirect_uris: fragments", status=400
                             ).redirect_uri_refused
    assert not RegistrationError("invalid_client_metadata", "client_name taken", status=400
                                 ).redirect_uri_refused


def test_configured_response_types_are_sent_when_the_grant_types_allow_them() -> None:
    both = ("authorization_code", "client_credentials")
    assert response_types_for(both, ("code", "none")) == ["code", "none"]
    # A hybrid response type needs the implicit grant too (OpenID Connect Registration §2).
    assert response_types_for(both, ("code id_token",)) == ["code"]
    assert response_types_for(("authorization_code", "implicit"), ("code id_token",)) == ["code id_token"]
    # What the chosen grant types cannot use is left out; with nothing left, their own need.
    assert response_types_for(("client_credentials",), ("code",)) == []
    assert response_types_for(both, ("token",)) == ["code"]
    assert response_types_for(both, ()) == ["code"]
    assert response_types_for(("client_credentials",), ("none",)) == []
    hybrid = ClientRequest(client_name="w", grant_types=("authorization_code", "implicit"),
                           configured_response_types=("code id_token",))
    assert adapter_for("generic").registration_metadata(hybrid)["response_types"] == ["code id_token"]
    okta_cc = ClientRequest(client_name="s", configured_response_types=("code",))
    assert "response_types" not in adapter_for("okta").registration_metadata(okta_cc)
