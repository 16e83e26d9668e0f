"""OpenID Connect discovery and JWKS checks of an identity provider.

:func:`discover` fetches ``/.well-known/openid-configuration``, insists that its ``issuer`` is
exactly the configured one (OpenID Connect Discovery 1.0 §4.3: anything else would let one provider
speak for another) and returns the metadata the DCR engine uses (:class:`ProviderMetadata`):
the registration, token and JWKS endpoints and the supported grant types and token endpoint
authentication methods, with the specification's defaults when the document leaves them out.
:func:`usable_keys` says which keys of a JWK Set the gateway could verify tokens with.

Failures are :class:`OutboundError` with a stable code: ``idp_unreachable`` (no answer in time),
``idp_bad_response`` (an error status, a redirect, not a JSON object, too large),
``issuer_mismatch``, or ``address_refused`` (the SSRF guard refused the host's address).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from propylon.domain.config import ASYMMETRIC_ALGORITHMS
from propylon.idp.outbound import DEFAULT_TIMEOUT, OutboundFailure, send
from propylon.outbound.guard import OutboundGuard

MAX_DOCUMENT_BYTES = 1024 * 1024
"""Largest discovery document or JWKS read (real ones are a few kilobytes)."""
DISCOVERED_FIELDS = (
    "jwks_uri", "registration_endpoint", "token_endpoint", "authorization_endpoint",
    "introspection_endpoint",
)
"""Members of the discovery document that fill the identity provider's fields of the same name."""
_ASYMMETRIC_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})
# OpenID Connect Discovery 1.0 §3: the values an IdP means when it omits these members.
_DEFAULT_GRANT_TYPES = ("authorization_code", "implicit")
_DEFAULT_AUTH_METHODS = ("client_secret_basic",)


class OutboundError(Exception):
    """A discovery or JWKS fetch failed; ``code`` is ``idp_unreachable``, ``idp_bad_response``,
    ``issuer_mismatch`` or ``address_refused``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def discovery_url(issuer: str) -> str:
    """The standard discovery URL of ``issuer`` (OpenID Connect Discovery 1.0 §4)."""
    return f"{issuer.rstrip('/')}/.well-known/openid-configuration"


async def fetch_json(url: str, what: str, *, time_limit: float = DEFAULT_TIMEOUT,
                     guard: OutboundGuard | None = None) -> dict[str, Any]:
    """GET ``url`` (200, JSON object, at most :data:`MAX_DOCUMENT_BYTES`) or :class:`OutboundError`;
    ``guard`` is the SSRF guard (None: public addresses only)."""
    try:
        reply = await send("GET", url, what, max_bytes=MAX_DOCUMENT_BYTES, time_limit=time_limit,
                           guard=guard)
    except OutboundFailure as exc:
        code = {"too_large": "idp_bad_response", "refused": "address_refused"}.get(
            exc.reason, "idp_unreachable")
        raise OutboundError(code, exc.message) from exc
    if reply.redirect:
        raise OutboundError("idp_bad_response", f"{what} at {url} answered with a redirect "
                            f"(HTTP {reply.status}), which is not followed")
    if reply.status != 200:
        raise OutboundError("idp_bad_response", f"{what} at {url} answered HTTP {reply.status}"
                            f"{_error_summary(reply.body)}")
    if not reply.body:
        raise OutboundError("idp_bad_response", f"{what} at {url} is empty")
    if not reply.is_json:
        raise OutboundError("idp_bad_response", f"{what} at {url} is not JSON "
                            f"(content type {reply.content_type or 'missing'!r})")
    try:
        document = orjson.loads(reply.body)
    except orjson.JSONDecodeError as exc:
        raise OutboundError("idp_bad_response", f"{what} at {url} is not valid JSON") from exc
    if not isinstance(document, dict):
        raise OutboundError("idp_bad_response", f"{what} at {url} is not a JSON object")
    return document


def _error_summary(body: bytes) -> str:
    """An OAuth error answer's ``error`` code, short and without free text that might echo what
    was sent."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    code = document.get("error") if isinstance(document, dict) else None
    if isinstance(code, str) and code.isascii() and len(code) <= 64:
        return f" ({code})"
    return ""


@dataclass(frozen=True)
class ProviderMetadata:
    """What an IdP's discovery document says about the fields Propylon uses."""

    issuer: str
    endpoints: dict[str, str]
    """Members of :data:`DISCOVERED_FIELDS` present in the document (non-empty strings only)."""
    grant_types_supported: tuple[str, ...] = _DEFAULT_GRANT_TYPES
    token_endpoint_auth_methods_supported: tuple[str, ...] = _DEFAULT_AUTH_METHODS
    document: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def registration_endpoint(self) -> str | None:
        """Where clients are registered (RFC 7591), if the IdP says."""
        return self.endpoints.get("registration_endpoint")

    @property
    def token_endpoint(self) -> str | None:
        """Where clients get tokens."""
        return self.endpoints.get("token_endpoint")

    @property
    def jwks_uri(self) -> str | None:
        """Where the IdP publishes its signing keys."""
        return self.endpoints.get("jwks_uri")

    def unsupported(self, grant_types: tuple[str, ...], auth_method: str) -> list[str]:
        """What a client with these grant types and token endpoint auth method would need that the
        IdP does not announce (an empty list when it announces all of it)."""
        missing = [f"grant type {grant!r}" for grant in grant_types
                   if grant not in self.grant_types_supported]
        if auth_method not in self.token_endpoint_auth_methods_supported:
            missing.append(f"token endpoint auth method {auth_method!r}")
        return missing


def parse_metadata(document: Mapping[str, Any], expected_issuer: str, source: str) -> ProviderMetadata:
    """Check and extract a discovery document (pure; ``source`` names it in errors)."""
    issuer = document.get("issuer")
    if not isinstance(issuer, str):
        raise OutboundError("idp_bad_response", f"the discovery document at {source} has no issuer")
    if issuer != expected_issuer:
        raise OutboundError("issuer_mismatch", f"the discovery document's issuer {issuer!r} is not the "
                                               f"configured issuer {expected_issuer!r} (they must be "
                                               "identical, including any trailing slash)")
    endpoints = {name: value for name in DISCOVERED_FIELDS
                 if isinstance(value := document.get(name), str) and value}
    return ProviderMetadata(
        issuer=issuer, endpoints=endpoints,
        grant_types_supported=_strings(document.get("grant_types_supported"), _DEFAULT_GRANT_TYPES),
        token_endpoint_auth_methods_supported=_strings(
            document.get("token_endpoint_auth_methods_supported"), _DEFAULT_AUTH_METHODS),
        document=dict(document),
    )


def _strings(value: Any, default: tuple[str, ...]) -> tuple[str, ...]:
    if not isinstance(value, list):
        return default
    return tuple(item for item in value if isinstance(item, str))


async def discover(url: str, expected_issuer: str, *, time_limit: float = DEFAULT_TIMEOUT,
                   guard: OutboundGuard | None = None) -> ProviderMetadata:
    """Fetch the discovery document at ``url`` and check its issuer (see :func:`parse_metadata`)."""
    document = await fetch_json(url, "the discovery document", time_limit=time_limit, guard=guard)
    return parse_metadata(document, expected_issuer, url)


def usable_keys(jwks: Mapping[str, Any], algorithms: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The usable signing keys of a JWK Set (by kid, or ``#index``) and the reasons others are not."""
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        return [], ["the JWKS has no 'keys' array"]
    usable: list[str] = []
    skipped: list[str] = []
    for index, key in enumerate(keys):
        name = f"#{index}"
        if not isinstance(key, dict):
            skipped.append(f"{name}: not an object")
            continue
        kid = key.get("kid")
        name = str(kid) if isinstance(kid, str) and kid else name
        alg = key.get("alg")
        if key.get("kty") not in _ASYMMETRIC_KEY_TYPES:
            skipped.append(f"{name}: key type {key.get('kty')!r} is not asymmetric")
        elif key.get("use", "sig") != "sig":
            skipped.append(f"{name}: meant for {key.get('use')!r}, not signatures")
        elif alg is not None and (alg not in ASYMMETRIC_ALGORITHMS or alg not in algorithms):
            skipped.append(f"{name}: algorithm {alg!r} is not accepted")
        else:
            try:
                PyJWK(key)
            except (PyJWTError, ValueError, TypeError, KeyError) as exc:
                skipped.append(f"{name}: unusable key material ({exc})")
            else:
                usable.append(name)
    return usable, skipped
