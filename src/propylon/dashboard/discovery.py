"""The admin API's outbound checks of an identity provider: discovery, its JWKS, and a dry-run
registration, on top of the DCR engine in ``propylon.idp``.

The URLs come from an admin, so every request follows ``idp.outbound``'s rules (the SSRF guard
passed in, from ``DashboardContext.outbound``; no redirects, caps, one deadline of
:data:`TIMEOUT_SECONDS` per request). Failures are :class:`OutboundError` with a stable code
(``idp_unreachable``, ``idp_bad_response``, ``issuer_mismatch``, which the admin API answers as
502, or ``address_refused``, 422). Only the dry-run registration sends the IdP's initial access
token, and no message built here contains it (IdP error answers are reduced to their status and
``error`` code, so they cannot echo it).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from propylon.idp import discovery as idp_discovery
from propylon.idp.client_management import DeleteOutcome
from propylon.idp.discovery import DISCOVERED_FIELDS, OutboundError, ProviderMetadata, usable_keys
from propylon.idp.protocol import RegistrationError
from propylon.idp.registration import ClientRequest, DcrClient, StoredClient
from propylon.outbound.guard import OutboundGuard

__all__ = [
    "DISCOVERED_FIELDS", "TIMEOUT_SECONDS", "DryRun", "OutboundError", "ProviderMetadata",
    "discover", "dry_run_registration", "fetch_json", "usable_keys",
]

TIMEOUT_SECONDS = 5.0
"""Longest time one outbound request may take, connection to last byte (read at each call)."""


async def fetch_json(url: str, what: str, guard: OutboundGuard) -> dict[str, Any]:
    """GET ``url`` and return its JSON object, or raise :class:`OutboundError`."""
    return await idp_discovery.fetch_json(url, what, time_limit=TIMEOUT_SECONDS, guard=guard)


async def discover(discovery_url: str, expected_issuer: str, guard: OutboundGuard) -> ProviderMetadata:
    """Fetch the discovery document and check that its ``issuer`` is exactly ``expected_issuer``."""
    return await idp_discovery.discover(discovery_url, expected_issuer, time_limit=TIMEOUT_SECONDS,
                                        guard=guard)


@dataclass(frozen=True)
class DryRun:
    """The outcome of registering a throwaway client and deleting it again."""

    passed: bool
    message: str


def _reason(exc: RegistrationError) -> str:
    if exc.status is not None:
        return f"HTTP {exc.status} ({exc.error})"
    return f"{exc.error}: {exc.description}"


async def dry_run_registration(
    registration_endpoint: str, initial_access_token: str | None, kind: str, guard: OutboundGuard
) -> DryRun:
    """Register a client_credentials client (RFC 7591) with the initial access token through the
    IdP's adapter, then delete it (RFC 7592, or the vendor's API).

    Neither the token nor anything the IdP returns besides the client id goes into the result:
    the message says what happened and what is left to clean up by hand, if anything.
    """
    dcr = DcrClient(kind, registration_endpoint, initial_access_token, guard=guard,
                    time_limit=TIMEOUT_SECONDS)
    request = ClientRequest(client_name=f"propylon-connection-test-{secrets.token_hex(4)}")
    try:
        registered = await dcr.register(request)
    except RegistrationError as exc:
        return DryRun(False, f"registration refused: {_reason(exc)}")
    client_id = registered.client_id
    stored = registered.stored
    if stored.registration_client_uri is None or dcr.adapter.management_authorization(
        stored.registration_access_token, initial_access_token
    ) is None:
        return DryRun(False, f"registered client {client_id!r} but the IdP gave no way to manage it "
                             "(registration_client_uri and registration_access_token): delete it at the "
                             "IdP by hand")
    try:
        outcome = await dcr.delete(StoredClient(client_id, stored.registration_client_uri,
                                                stored.registration_access_token))
    except RegistrationError as exc:
        return DryRun(False, f"registered client {client_id!r} but could not delete it "
                             f"({_reason(exc)}): delete it at the IdP by hand")
    gone = "deleted it again" if outcome is DeleteOutcome.DELETED else "it was already gone"
    return DryRun(True, f"registered client {client_id!r} and {gone}")
