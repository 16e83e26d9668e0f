"""Outbound checks of an identity provider: OpenID discovery, its JWKS, and a dry-run registration.

The URLs come from an admin, so every request is defensive: redirects are not followed (a redirect
could lead anywhere), each request has a time limit (:data:`TIMEOUT_SECONDS`, for the whole
exchange, not per read), bodies are capped at :data:`MAX_BODY_BYTES`, and only JSON objects are
accepted. Failures are :class:`OutboundError` with a stable code (``idp_unreachable``,
``idp_bad_response``, ``issuer_mismatch``) that the admin API answers as 502. Only the dry-run
registration sends the IdP's initial access token, and no message built here contains it (IdP error
answers are reduced to their ``error`` code, so they cannot echo it).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from propylon.domain.config import ASYMMETRIC_ALGORITHMS

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0
"""Longest time one outbound request may take, connection to last byte."""
MAX_BODY_BYTES = 1024 * 1024
DISCOVERED_FIELDS = (
    "jwks_uri", "registration_endpoint", "token_endpoint", "authorization_endpoint",
    "introspection_endpoint",
)
"""Members of the discovery document that fill the identity provider's fields of the same name."""
_ASYMMETRIC_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})


class OutboundError(Exception):
    """An outbound call failed; ``code`` is ``idp_unreachable``, ``idp_bad_response`` or
    ``issuer_mismatch``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def fetch_json(url: str, what: str) -> dict[str, Any]:
    """GET ``url`` and return its JSON object, or raise :class:`OutboundError`."""
    _status, document = await exchange("GET", url, what)
    if document is None:
        raise OutboundError("idp_bad_response", f"{what} at {url} is empty")
    return document


async def exchange(
    method: str,
    url: str,
    what: str,
    *,
    headers: dict[str, str] | None = None,
    json_body: dict[str, Any] | None = None,
    accept: tuple[int, ...] = (200,),
) -> tuple[int, dict[str, Any] | None]:
    """One outbound request under the rules above: the status (one of ``accept``) and the JSON
    object of the answer (``None`` when the body is empty)."""
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            status, body = await _send(method, url, what, headers or {}, json_body, accept)
    except TimeoutError as exc:
        raise OutboundError("idp_unreachable", f"{what} at {url} did not answer within "
                                               f"{TIMEOUT_SECONDS:g} s") from exc
    if not body:
        return status, None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OutboundError("idp_bad_response", f"{what} at {url} is not valid JSON") from exc
    if not isinstance(document, dict):
        raise OutboundError("idp_bad_response", f"{what} at {url} is not a JSON object")
    return status, document


async def _send(
    method: str, url: str, what: str, headers: dict[str, str], json_body: dict[str, Any] | None,
    accept: tuple[int, ...],
) -> tuple[int, bytes]:
    timeout = httpx.Timeout(TIMEOUT_SECONDS)
    # trust_env=False: a proxy from the environment must not see (or redirect) IdP traffic unasked.
    async with httpx.AsyncClient(follow_redirects=False, timeout=timeout, trust_env=False) as client:
        try:
            async with client.stream(method, url, json=json_body,
                                     headers={"Accept": "application/json", **headers}) as response:
                if response.is_redirect:
                    raise OutboundError("idp_bad_response", f"{what} at {url} answered with a redirect "
                                        f"(HTTP {response.status_code}), which is not followed")
                body = await _read_capped(response, what, url)
                if response.status_code not in accept:
                    raise OutboundError("idp_bad_response", f"{what} at {url} answered HTTP "
                                        f"{response.status_code}{_error_summary(body)}")
                content_type = response.headers.get("content-type", "")
                if body and not _is_json(content_type):
                    raise OutboundError("idp_bad_response", f"{what} at {url} is not JSON "
                                        f"(content type {content_type or 'missing'!r})")
                return response.status_code, bytes(body)
        except httpx.TimeoutException as exc:
            raise OutboundError("idp_unreachable", f"{what} at {url} timed out") from exc
        except (httpx.HTTPError, OSError) as exc:
            raise OutboundError("idp_unreachable", f"cannot reach {what} at {url}: "
                                f"{type(exc).__name__}: {exc}") from exc


async def _read_capped(response: httpx.Response, what: str, url: str) -> bytearray:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large(what, url)
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _too_large(what, url)
    return body


def _error_summary(body: bytes | bytearray) -> str:
    """An OAuth error answer's ``error`` code (RFC 7591 §3.2.2), short and without free text that
    might echo what was sent."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    code = document.get("error") if isinstance(document, dict) else None
    if isinstance(code, str) and code.isascii() and len(code) <= 64:
        return f" ({code})"
    return ""


def _too_large(what: str, url: str) -> OutboundError:
    return OutboundError("idp_bad_response", f"{what} at {url} is larger than {MAX_BODY_BYTES} bytes")


@dataclass(frozen=True)
class Discovery:
    """What an identity provider's discovery document says about the fields Propylon uses."""

    issuer: str
    endpoints: dict[str, str]
    """Members of :data:`DISCOVERED_FIELDS` present in the document (string values only)."""


async def discover(discovery_url: str, expected_issuer: str) -> Discovery:
    """Fetch the discovery document and check that its ``issuer`` is exactly ``expected_issuer``
    (OpenID Connect Discovery §4.3: anything else would let one provider speak for another)."""
    document = await fetch_json(discovery_url, "the discovery document")
    issuer = document.get("issuer")
    if not isinstance(issuer, str):
        raise OutboundError("idp_bad_response", f"the discovery document at {discovery_url} has no issuer")
    if issuer != expected_issuer:
        raise OutboundError("issuer_mismatch", f"the discovery document's issuer {issuer!r} is not the "
                                               f"configured issuer {expected_issuer!r} (they must be "
                                               "identical, including any trailing slash)")
    endpoints = {name: value for name in DISCOVERED_FIELDS
                 if isinstance(value := document.get(name), str) and value}
    return Discovery(issuer=issuer, endpoints=endpoints)


def usable_keys(jwks: dict[str, Any], algorithms: tuple[str, ...]) -> tuple[list[str], list[str]]:
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


@dataclass(frozen=True)
class DryRun:
    """The outcome of registering a throwaway client and deleting it again."""

    passed: bool
    message: str


def _authorization(kind: str, token: str) -> str:
    # Okta's registration API takes its API token in its own scheme; everyone else uses Bearer.
    return f"SSWS {token}" if kind == "okta" else f"Bearer {token}"


async def dry_run_registration(
    registration_endpoint: str, initial_access_token: str | None, kind: str
) -> DryRun:
    """Register a client (RFC 7591) with the initial access token, then delete it (RFC 7592).

    Neither the token nor anything the IdP returns besides the client id goes into the result:
    the message says what happened and what is left to clean up by hand, if anything.
    """
    headers = {} if initial_access_token is None else {
        "Authorization": _authorization(kind, initial_access_token)
    }
    metadata = {
        "client_name": f"propylon-connection-test-{secrets.token_hex(4)}",
        "grant_types": ["client_credentials"], "response_types": [],
        "token_endpoint_auth_method": "client_secret_basic",
    }
    try:
        _status, answer = await exchange("POST", registration_endpoint, "the registration endpoint",
                                         headers=headers, json_body=metadata, accept=(200, 201))
    except OutboundError as exc:
        return DryRun(False, f"registration refused: {exc.code}: {exc.message}")
    client_id = (answer or {}).get("client_id")
    if not isinstance(client_id, str) or not client_id:
        return DryRun(False, "the registration endpoint answered without a client_id")
    uri = (answer or {}).get("registration_client_uri")
    token = (answer or {}).get("registration_access_token")
    if kind == "okta":
        uri, token = f"{registration_endpoint.rstrip('/')}/{client_id}", initial_access_token
    if not isinstance(uri, str) or not isinstance(token, str):
        return DryRun(False, f"registered client {client_id!r} but the IdP gave no way to manage it "
                             "(registration_client_uri and registration_access_token): delete it at the "
                             "IdP by hand")
    try:
        check_url(uri)
        await exchange("DELETE", uri, "the client configuration endpoint",
                       headers={"Authorization": _authorization(kind, token)}, accept=(200, 202, 204))
    except (OutboundError, ValueError) as exc:
        reason = f"{exc.code}: {exc.message}" if isinstance(exc, OutboundError) else str(exc)
        return DryRun(False, f"registered client {client_id!r} but could not delete it ({reason}): "
                             "delete it at the IdP by hand")
    return DryRun(True, f"registered client {client_id!r} and deleted it again")


def check_url(url: str) -> None:
    """``ValueError`` unless ``url`` is an absolute http(s) URL without credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise ValueError(f"{url!r} is not an absolute http(s) URL")
