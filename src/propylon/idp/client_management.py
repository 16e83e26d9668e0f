"""RFC 7592 client management: read, update and delete a registered client at its IdP.

Each call goes to the client's configuration endpoint (``registration_client_uri``) with the
credential its IdP's adapter names: ``Bearer <registration access token>`` by default, Okta's
``SSWS`` API token for Okta (``idp.adapters``). Outbound rules are those of ``idp.outbound``
(the SSRF ``guard``, no redirects, one deadline of :data:`DEFAULT_TIMEOUT`, bodies capped at
:data:`MAX_RESPONSE_BYTES`); failures are :class:`RegistrationError` (``idp.protocol``).

An IdP may answer a read or an update with a new registration access token, the old one then
being void (Keycloak on update, Curity on both; IDP-VENDORS.md). The caller must store it before it
reports success, so :func:`read_client` and :func:`update_client` take a ``store_token`` callback
and await it before they return: if storing fails, the call fails.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import httpx

from propylon.idp.adapters import GenericAdapter, IdpAdapter, SecretRotation
from propylon.idp.outbound import DEFAULT_TIMEOUT
from propylon.idp.protocol import (
    MAX_RESPONSE_BYTES,
    SECRET_FIELDS,
    RegistrationError,
    call,
    check_uri,
    json_object,
    public_metadata,
)
from propylon.outbound.guard import OutboundGuard

__all__ = [
    "DEFAULT_TIMEOUT", "MAX_RESPONSE_BYTES", "SECRET_FIELDS", "ClientConfiguration", "DeleteOutcome",
    "RegistrationError", "StoreToken", "check_uri", "delete_client", "public_metadata", "read_client",
    "rotate_secret", "update_client",
]

StoreToken = Callable[[str], Awaitable[None]]
"""Persists a rotated registration access token (encrypted) before the call reports success."""

_GENERIC = GenericAdapter()


class DeleteOutcome(Enum):
    """What an RFC 7592 delete found."""

    DELETED = "deleted"
    """The IdP deleted the client (204)."""
    ALREADY_GONE = "already_gone"
    """The IdP does not know the client any more (404, or the adapter's equivalent)."""


@dataclass(frozen=True, slots=True)
class ClientConfiguration:
    """A client's registration as the IdP returned it (RFC 7592 read or update)."""

    metadata: dict[str, Any] = field(repr=False)
    """Every field the IdP sent, including any new secret: strip with :func:`public_metadata`."""

    @property
    def rotated_registration_access_token(self) -> str | None:
        """A new registration access token, if the IdP issued one (the old one is then void)."""
        value = self.metadata.get("registration_access_token")
        return value if isinstance(value, str) and value else None

    @property
    def client_secret(self) -> str | None:
        """The client secret, if the answer carried one (Curity rotates it on every call)."""
        value = self.metadata.get("client_secret")
        return value if isinstance(value, str) and value else None


async def read_client(
    registration_client_uri: str,
    registration_access_token: str | None,
    *,
    adapter: IdpAdapter = _GENERIC,
    initial_access_token: str | None = None,
    store_token: StoreToken | None = None,
    time_limit: float = DEFAULT_TIMEOUT,
    guard: OutboundGuard | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ClientConfiguration:
    """The client's current registration (RFC 7592 §2.1, ``GET``). A rotated registration access
    token is handed to ``store_token`` (awaited) before this returns."""
    status, body = await _manage("GET", registration_client_uri, adapter, registration_access_token,
                                 initial_access_token, time_limit=time_limit, guard=guard,
                                 transport=transport)
    return await _configuration(status, body, registration_access_token, store_token)


async def update_client(
    registration_client_uri: str,
    registration_access_token: str | None,
    current: Mapping[str, Any],
    changes: Mapping[str, Any],
    *,
    client_id: str,
    adapter: IdpAdapter = _GENERIC,
    initial_access_token: str | None = None,
    store_token: StoreToken | None = None,
    time_limit: float = DEFAULT_TIMEOUT,
    guard: OutboundGuard | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ClientConfiguration:
    """Replace the client's metadata (RFC 7592 §2.2, ``PUT``): ``current`` (as last read) with
    ``changes`` applied, shaped by the adapter (``client_id`` in, read-only fields out). A rotated
    registration access token is handed to ``store_token`` (awaited) before this returns."""
    status, body = await _manage("PUT", registration_client_uri, adapter, registration_access_token,
                                 initial_access_token, json_body=adapter.update_metadata(
                                     current, changes, client_id),
                                 time_limit=time_limit, guard=guard, transport=transport)
    return await _configuration(status, body, registration_access_token, store_token)


async def rotate_secret(
    rotation: SecretRotation,
    registration_access_token: str | None,
    *,
    adapter: IdpAdapter = _GENERIC,
    initial_access_token: str | None = None,
    store_token: StoreToken | None = None,
    time_limit: float = DEFAULT_TIMEOUT,
    guard: OutboundGuard | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ClientConfiguration:
    """Have the IdP issue a new client secret in place (the adapter's :class:`SecretRotation`).
    The answer must carry the new secret (``invalid_response`` otherwise); a rotated registration
    access token is handed to ``store_token`` (awaited) before this returns."""
    status, body = await _manage(rotation.method, rotation.uri, adapter, registration_access_token,
                                 initial_access_token, time_limit=time_limit, guard=guard,
                                 transport=transport)
    configuration = ClientConfiguration(json_object(status, body))
    if configuration.client_secret is None:
        raise RegistrationError("invalid_response", "the IdP's answer to the secret rotation has no "
                                "client_secret", status=status)
    return await _configuration(status, body, registration_access_token, store_token)


async def delete_client(
    registration_client_uri: str,
    registration_access_token: str | None,
    *,
    adapter: IdpAdapter = _GENERIC,
    initial_access_token: str | None = None,
    time_limit: float = DEFAULT_TIMEOUT,
    guard: OutboundGuard | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> DeleteOutcome:
    """Delete the client at the IdP (RFC 7592 §2.3, ``DELETE``).

    204 (and 200, which some IdPs send) is a deletion; what means "already gone" is the adapter's
    call (404 everywhere; Okta's 401 ``invalid_client`` too). A plain 401 is an error: it equally
    means a wrong or expired token, and the caller decides (it may force the local removal).
    """
    authorization = adapter.management_authorization(registration_access_token, initial_access_token)
    status, body = await call("DELETE", registration_client_uri, "the client configuration endpoint",
                              authorization=authorization, time_limit=time_limit, guard=guard,
                              transport=transport)
    if status in (200, 204):
        return DeleteOutcome.DELETED
    error = adapter.error(status, body)
    if adapter.client_gone(error):
        return DeleteOutcome.ALREADY_GONE
    raise error


async def _manage(method: str, uri: str, adapter: IdpAdapter, registration_access_token: str | None,
                  initial_access_token: str | None, *, json_body: dict[str, Any] | None = None,
                  time_limit: float, guard: OutboundGuard | None,
                  transport: httpx.AsyncBaseTransport | None) -> tuple[int, bytes]:
    """One authorised call to the client configuration endpoint; anything but 200 is the
    adapter's :class:`RegistrationError`."""
    authorization = adapter.management_authorization(registration_access_token, initial_access_token)
    status, body = await call(method, uri, "the client configuration endpoint",
                              authorization=authorization, json_body=json_body,
                              time_limit=time_limit, guard=guard, transport=transport)
    if status != 200:
        raise adapter.error(status, body)
    return status, body


async def _configuration(status: int, body: bytes, sent_token: str | None,
                         store_token: StoreToken | None) -> ClientConfiguration:
    configuration = ClientConfiguration(json_object(status, body))
    rotated = configuration.rotated_registration_access_token
    if rotated is not None and rotated != sent_token and store_token is not None:
        await store_token(rotated)
    return configuration
