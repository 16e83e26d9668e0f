"""What each kind of identity provider does differently in dynamic client registration.

The DCR engine (``idp.registration``) speaks RFC 7591/7592 and asks the IdP's adapter, chosen by
the identity provider's ``kind`` (:func:`adapter_for`), for everything vendors disagree on: the
credential scheme, where a client is managed, how metadata is shaped, and what an error answer
means. Every adapter method is pure (no I/O), so each vendor's request shaping is unit-tested.

The facts and their sources are in ``docs/idp-vendors.md`` (condensed from the research notes
``IDP-VENDORS.md``); the bracketed tags below ([KC7], [OK1]...) are that document's sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from propylon.idp.protocol import (
    ClientRequest,
    RegistrationError,
    error_document,
    standard_error,
    writable_metadata,
)


@dataclass(frozen=True, slots=True)
class SecretRotation:
    """How an IdP issues a client a new secret in place: one request, answered 200 with the
    client's metadata carrying the new ``client_secret`` (and maybe a new registration access
    token)."""

    method: Literal["GET", "POST"]
    uri: str


class IdpAdapter(Protocol):
    """The vendor-specific half of dynamic client registration."""

    kind: str
    read_rotates_credentials: bool
    """Whether an RFC 7592 read replaces the registration access token (and maybe the secret)."""

    def secret_rotation(self, client_uri: str) -> SecretRotation | None:
        """The request that rotates the secret of the client managed at ``client_uri``; None when
        the IdP cannot rotate a secret through DCR, so the client must be replaced by a new one."""

    def default_registration_endpoint(self, issuer: str) -> str | None:
        """Where clients are registered when discovery does not say."""

    def registration_authorization(self, initial_access_token: str | None) -> str | None:
        """The ``Authorization`` header value of a registration request."""

    def registration_metadata(self, request: ClientRequest) -> dict[str, Any]:
        """The RFC 7591 request body for ``request``."""

    def client_uri(self, registration_endpoint: str, client_id: str,
                   answer: Mapping[str, Any]) -> str | None:
        """The client's configuration endpoint, from the registration answer."""

    def management_authorization(self, registration_access_token: str | None,
                                 initial_access_token: str | None) -> str | None:
        """The ``Authorization`` header value of a read, update or delete."""

    def update_metadata(self, current: Mapping[str, Any], changes: Mapping[str, Any],
                        client_id: str) -> dict[str, Any]:
        """The update (``PUT``) body: the whole current registration with ``changes`` applied."""

    def error(self, status: int, body: bytes) -> RegistrationError:
        """What an error answer means."""

    def client_gone(self, error: RegistrationError) -> bool:
        """Whether ``error`` (from a read or delete) means the IdP no longer knows the client."""


class GenericAdapter:
    """Standards only: RFC 7591 with ``Authorization: Bearer <IAT>``, RFC 7592 with the client's
    registration access token at its ``registration_client_uri``."""

    kind = "generic"
    read_rotates_credentials = False

    def secret_rotation(self, client_uri: str) -> SecretRotation | None:
        """None: RFC 7591/7592 have no secret rotation (Keycloak has it in its admin REST API only,
        Gluu not at all; IDP-VENDORS.md), so the client is replaced."""
        return None

    def default_registration_endpoint(self, issuer: str) -> str | None:
        """None: a standard IdP announces ``registration_endpoint`` in its discovery document."""
        return None

    def registration_authorization(self, initial_access_token: str | None) -> str | None:
        """``Bearer <IAT>`` (RFC 7591 §3 leaves the scheme open; RFC 6750 is the common choice)."""
        return None if initial_access_token is None else f"Bearer {initial_access_token}"

    def registration_metadata(self, request: ClientRequest) -> dict[str, Any]:
        """The request's metadata. ``response_types`` is always sent: RFC 7591 §2 defaults it to
        ``["code"]``, which a client_credentials-only client must not get, so such a client
        sends ``[]`` (oidc-provider refuses ``code`` without ``authorization_code``)."""
        body: dict[str, Any] = dict(request.extra)
        body.update({
            "client_name": request.client_name,
            "grant_types": list(request.grant_types),
            "response_types": request.response_types,
            "token_endpoint_auth_method": request.token_endpoint_auth_method,
        })
        if request.redirect_uris:
            body["redirect_uris"] = list(request.redirect_uris)
        if request.scope:
            body["scope"] = request.scope
        return body

    def client_uri(self, registration_endpoint: str, client_id: str,
                   answer: Mapping[str, Any]) -> str | None:
        """``registration_client_uri`` as the IdP returned it (a path or a query: Gluu uses
        ``?client_id=`` [GL1]); None without one."""
        value = answer.get("registration_client_uri")
        return value if isinstance(value, str) and value else None

    def management_authorization(self, registration_access_token: str | None,
                                 initial_access_token: str | None) -> str | None:
        """``Bearer <registration access token>`` (RFC 7592 §2)."""
        if registration_access_token is None:
            return None
        return f"Bearer {registration_access_token}"

    def update_metadata(self, current: Mapping[str, Any], changes: Mapping[str, Any],
                        client_id: str) -> dict[str, Any]:
        """RFC 7592 §2.2: every field (an omitted one may be reset or deleted; Gluu resets
        ``token_endpoint_auth_method`` [GL1], Okta replaces the whole client [OK1]), ``client_id``
        included (Keycloak requires it and refuses a different one [KC2]), the read-only fields
        left out."""
        body = writable_metadata(current)
        body.update(writable_metadata(changes))
        body["client_id"] = client_id
        return body

    def error(self, status: int, body: bytes) -> RegistrationError:
        """The RFC 7591 §3.2.2 / RFC 6750 error, whatever the status (400 or 401 both occur)."""
        return standard_error(status, body)

    def client_gone(self, error: RegistrationError) -> bool:
        """404. RFC 7592 also allows 401 for an unknown client, but 401 equally means a wrong or
        rotated-away token, so it is not taken as gone."""
        return error.status == 404


class KeycloakAdapter(GenericAdapter):
    """Keycloak: the realm's registration path, IATs that expire and count clients [KC1-KC8]."""

    kind = "keycloak"

    def default_registration_endpoint(self, issuer: str) -> str | None:
        """``{issuer}/clients-registrations/openid-connect`` (the issuer is the realm URL) [KC7]."""
        return f"{issuer.rstrip('/')}/clients-registrations/openid-connect"

    def error(self, status: int, body: bytes) -> RegistrationError:
        """Keycloak answers every IAT problem with 401 [KC1]: a used-up client count, an expired
        IAT ("Expired initial access token", or "Failed decode token" since the IAT JWT's ``exp``
        is checked first [KC3]). Keycloak 26.6.2-26.6.4 answered 500 instead (#49909) [KC11]."""
        found = standard_error(status, body)
        text = found.description.lower()
        if status == 401 and "remaining count" in text:
            return RegistrationError("invalid_token", "the initial access token has no registrations "
                                     "left (Keycloak counts the clients an IAT may create): issue a "
                                     "new one", status=status)
        if status == 401 and ("expired" in text or "failed decode token" in text):
            return RegistrationError("invalid_token", "the token is invalid or has expired (Keycloak "
                                     "initial access tokens expire)", status=status)
        if status >= 500:
            return RegistrationError(found.error, f"{found.description} (Keycloak 26.6.2-26.6.4 "
                                     "answer 500 for an invalid or expired token)", status=status)
        return found


class OktaAdapter(GenericAdapter):
    """Okta: the Dynamic Client Registration API under ``/oauth2/v1/clients``, authorised with an
    ``SSWS`` API token, with no registration access token [OK1][OK2]."""

    kind = "okta"

    def default_registration_endpoint(self, issuer: str) -> str | None:
        """``https://{org}/oauth2/v1/clients``: at the org, not under the authorization server
        named by the issuer (``https://{org}/oauth2/{as}``) [OK1][T-OK]."""
        base = issuer.rstrip("/")
        marker = base.find("/oauth2/")
        org = base[:marker] if marker >= 0 else base
        return f"{org}/oauth2/v1/clients"

    def registration_authorization(self, initial_access_token: str | None) -> str | None:
        """``SSWS <API token>`` [OK1]."""
        return None if initial_access_token is None else f"SSWS {initial_access_token}"

    def registration_metadata(self, request: ClientRequest) -> dict[str, Any]:
        """``application_type``: ``web`` (what Tyk sends [T-OK]) when the client uses the
        authorization code flow, else ``service``, the only type that allows a
        client_credentials-only client (``web`` must include ``authorization_code``) [OK1].
        ``response_types`` is left out when empty: Okta needs none for client_credentials [OK1]."""
        body = super().registration_metadata(request)
        body["application_type"] = "web" if request.response_types else "service"
        if not body["response_types"]:
            del body["response_types"]
        return body

    def client_uri(self, registration_endpoint: str, client_id: str,
                   answer: Mapping[str, Any]) -> str | None:
        """``{registration endpoint}/{client_id}``: Okta returns no ``registration_client_uri``."""
        return f"{registration_endpoint.rstrip('/')}/{client_id}"

    def management_authorization(self, registration_access_token: str | None,
                                 initial_access_token: str | None) -> str | None:
        """The API token again (``SSWS``): Okta has no registration access tokens [OK1]."""
        return self.registration_authorization(initial_access_token)

    def secret_rotation(self, client_uri: str) -> SecretRotation | None:
        """``POST {client}/lifecycle/newSecret``, answered 200 with the client and its new secret
        (the reference's header says ``put``; its example, and the API, use POST) [OK1]."""
        return SecretRotation("POST", f"{client_uri.rstrip('/')}/lifecycle/newSecret")

    def error(self, status: int, body: bytes) -> RegistrationError:
        """Okta's management errors have their own shape (``errorCode``/``errorSummary``): a bad
        API token is 401 ``E0000011`` [OK3], an unknown resource 404 ``E0000007`` [OK1]."""
        document = error_document(body)
        code = document.get("errorCode")
        if isinstance(code, str) and "error" not in document:
            summary = document.get("errorSummary")
            description = f"{code}: {summary[:300]}" if isinstance(summary, str) else code
            error = {"E0000011": "invalid_token", "E0000007": "not_found"}.get(code, "idp_error")
            return RegistrationError(error, description, status=status)
        return standard_error(status, body)

    def client_gone(self, error: RegistrationError) -> bool:
        """Also 401 ``invalid_client``: Okta's answer for an unknown client id on read and delete
        [OK1] (a bad API token is ``invalid_token`` instead)."""
        return error.status == 404 or (error.status == 401 and error.error == "invalid_client")


class GluuAdapter(GenericAdapter):
    """Gluu Server 4.x (oxAuth) and Janssen [GL1-GL4]."""

    kind = "gluu"

    def registration_metadata(self, request: ClientRequest) -> dict[str, Any]:
        """``access_token_as_jwt: true``: Gluu issues opaque access tokens unless the client asks
        for JWTs [GL1][GL2], and the gateway validates JWTs. (Gluu 4.x ignores the
        ``Authorization`` header on create; sending the IAT is harmless [GL1].)"""
        body = super().registration_metadata(request)
        body["access_token_as_jwt"] = True
        return body


class CurityAdapter(GenericAdapter):
    """Curity Identity Server [CU1-CU4]: the registration credential is a one-time access token
    with the ``dcr`` scope (the IAT field holds it), and every RFC 7592 read or update replaces the
    registration access token and the client secret [CU2]."""

    kind = "curity"
    read_rotates_credentials = True

    def secret_rotation(self, client_uri: str) -> SecretRotation | None:
        """An RFC 7592 read: Curity answers it with a new client secret and a new registration
        access token, the old ones void [CU2]."""
        return SecretRotation("GET", client_uri)


_ADAPTERS: dict[str, IdpAdapter] = {
    adapter.kind: adapter
    for adapter in (GenericAdapter(), KeycloakAdapter(), OktaAdapter(), GluuAdapter(), CurityAdapter())
}
KINDS = tuple(_ADAPTERS)
"""The identity provider kinds there is an adapter for."""


def adapter_for(kind: str) -> IdpAdapter:
    """The adapter of an identity provider ``kind`` (:data:`KINDS`); ``ValueError`` otherwise."""
    try:
        return _ADAPTERS[kind]
    except KeyError:
        raise ValueError(f"no adapter for identity provider kind {kind!r}") from None
