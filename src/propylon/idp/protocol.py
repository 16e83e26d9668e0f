"""What RFC 7591 (registration) and RFC 7592 (management) exchanges share: the error type, the one
JSON call, and which metadata fields are secret or read-only.

Every failure is a :class:`RegistrationError` carrying the IdP's ``error`` and
``error_description`` when it sent them (RFC 7591 §3.2.2, RFC 6750 §3.1), a code derived from the
status when it did not (401 ``invalid_token``, 403 ``insufficient_scope``, 400
``invalid_request``), or a local code when no usable answer came (``unreachable``, ``timeout``,
``response_too_large``, ``invalid_response``, ``invalid_uri``, ``address_refused`` by the SSRF
guard). Credentials travel in the
``Authorization`` header only, so they never appear in an error or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from propylon.idp.outbound import OutboundFailure, send, url_problem
from propylon.outbound.guard import OutboundGuard

MAX_RESPONSE_BYTES = 256 * 1024
"""Largest response body read from a registration endpoint; client metadata is a few kilobytes."""

SECRET_FIELDS = frozenset({"client_secret", "registration_access_token"})
"""Metadata fields that are secrets: never stored in clear, never shown."""
READ_ONLY_FIELDS = frozenset({
    "client_secret", "client_secret_expires_at", "client_id_issued_at",
    "registration_access_token", "registration_client_uri",
    "registration_access_token_expires_in",
})
"""Fields an RFC 7592 update must not send (§2.2), plus ``client_secret``: the RFC allows sending
it back, but Okta omits it on read and a rotated one would not match, so it is always left out."""

_STATUS_ERRORS = {400: "invalid_request", 401: "invalid_token", 403: "insufficient_scope"}


class RegistrationError(Exception):
    """An RFC 7591/7592 exchange failed.

    ``error`` is the IdP's ``error`` code when it sent one, else a derived or local code;
    ``status`` is the HTTP status the IdP answered (``None`` when no answer came).
    """

    def __init__(self, error: str, description: str, *, status: int | None = None) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status

    @property
    def retriable(self) -> bool:
        """Whether trying again later may succeed (no answer, or a server-side failure)."""
        if self.error in ("address_refused", "invalid_uri"):
            return False
        return self.status is None or self.status >= 500 or self.status == 429

    @property
    def credential_refused(self) -> bool:
        """Whether the IdP refused the credential (missing, wrong or expired token)."""
        return self.error in ("invalid_token", "insufficient_scope") or self.status == 401

    @property
    def redirect_uri_refused(self) -> bool:
        """Whether the IdP refused the redirect URIs. IdPs differ on the code: RFC 7591's
        ``invalid_redirect_uri``, or ``invalid_client_metadata`` naming the redirect URIs."""
        if self.error == "invalid_redirect_uri":
            return True
        return self.error == "invalid_client_metadata" and "redirect" in self.description.lower()


def public_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` without its secret fields."""
    return {key: value for key, value in metadata.items() if key not in SECRET_FIELDS}


def writable_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` without the fields an update must not send (:data:`READ_ONLY_FIELDS`)."""
    return {key: value for key, value in metadata.items() if key not in READ_ONLY_FIELDS}


def check_uri(uri: str, what: str = "the registration client URI") -> None:
    """Refuse a URI that is not absolute ``http(s)`` or carries credentials (``invalid_uri``)."""
    problem = url_problem(uri)
    if problem is not None:
        raise RegistrationError("invalid_uri", f"{what} {problem}")


async def call(
    method: str,
    uri: str,
    what: str,
    *,
    authorization: str | None,
    json_body: dict[str, Any] | None = None,
    time_limit: float,
    guard: OutboundGuard | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[int, bytes]:
    """One request to a registration or client configuration endpoint: its status and body."""
    check_uri(uri, what)
    headers = {} if authorization is None else {"Authorization": authorization}
    try:
        reply = await send(method, uri, what, max_bytes=MAX_RESPONSE_BYTES, time_limit=time_limit,
                           headers=headers, json_body=json_body, guard=guard, transport=transport)
    except OutboundFailure as exc:
        code = {"timeout": "timeout", "unreachable": "unreachable", "refused": "address_refused"
                }.get(exc.reason, "response_too_large")
        raise RegistrationError(code, exc.message, status=exc.status) from exc
    return reply.status, reply.body


def json_object(status: int, body: bytes) -> dict[str, Any]:
    """The JSON object of a success answer, else ``invalid_response``."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        raise RegistrationError("invalid_response", "the IdP's answer is not a JSON object",
                                status=status)
    return document


def error_document(body: bytes) -> dict[str, Any]:
    """An error answer's JSON object, or an empty one."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def standard_error(status: int, body: bytes) -> RegistrationError:
    """The IdP's own ``error``/``error_description`` when it sent them (RFC 7591 §3.2.2)."""
    document = error_document(body)
    raw_error = document.get("error")
    raw_description = document.get("error_description")
    error = raw_error[:100] if isinstance(raw_error, str) else ""
    description = raw_description[:500] if isinstance(raw_description, str) else ""
    if not error:
        error = _STATUS_ERRORS.get(status, "idp_error")
    if not description:
        if 300 <= status < 400:
            description = f"the IdP answered a redirect ({status}), which is not followed"
        else:
            description = f"the IdP answered HTTP {status}"
    return RegistrationError(error, description, status=status)


REDIRECT_GRANTS = {"authorization_code": "code", "implicit": "token"}
"""Grant types that use the authorization endpoint, and the response type each needs."""
_RESPONSE_TYPE_GRANTS = {"code": "authorization_code", "token": "implicit", "id_token": "implicit"}
"""The grant type each word of a response type needs (OpenID Connect Registration §2)."""


def response_types_for(grant_types: tuple[str, ...], configured: tuple[str, ...] = ()) -> list[str]:
    """The response types a client with ``grant_types`` registers with: the ``configured`` ones
    (an admin's choice, e.g. ``code id_token``) that these grant types allow, or, when none is
    left, those the grant types need (``code`` for ``authorization_code``). A
    client_credentials-only client gets none: a ``code`` response type without the
    ``authorization_code`` grant is refused by IdPs (oidc-provider) and would open a front channel
    the client does not use. (``none`` too is an authorization endpoint answer: it needs a
    redirecting grant, and IdPs then insist on redirect URIs.)"""
    needed = [REDIRECT_GRANTS[grant] for grant in grant_types if grant in REDIRECT_GRANTS]
    if not needed:
        return []
    allowed = [value for value in dict.fromkeys(configured)
               if all(_RESPONSE_TYPE_GRANTS.get(word, "") in grant_types or word == "none"
                      for word in value.split())]
    return allowed or needed


@dataclass(frozen=True)
class ClientRequest:
    """The client a developer asks for, before any vendor shaping (see ``idp.adapters``)."""

    client_name: str
    grant_types: tuple[str, ...] = ("client_credentials",)
    redirect_uris: tuple[str, ...] = ()
    token_endpoint_auth_method: str = "client_secret_basic"  # noqa: S105 (a method name)
    scope: str | None = None
    configured_response_types: tuple[str, ...] = ()
    """The response types an admin configured (catalogue entry, else portal settings); narrowed
    to what the grant types allow by :attr:`response_types`."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Further RFC 7591 metadata (``contacts``, ``client_uri``...); the fields above win."""

    @property
    def response_types(self) -> list[str]:
        """The response types sent (:func:`response_types_for`): none for a client_credentials-only
        client."""
        return response_types_for(self.grant_types, self.configured_response_types)
