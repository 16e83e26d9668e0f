"""RFC 7592 client management: read and delete a registered client at its IdP.

Each call goes to the client's ``registration_client_uri`` with ``Authorization: Bearer
<registration access token>``. Outbound rules: ``http``/``https`` only, redirects are never
followed (a redirect would carry the token elsewhere), one deadline bounds the whole exchange
(:data:`DEFAULT_TIMEOUT`), and response bodies are capped (:data:`MAX_RESPONSE_BYTES`).

Every failure is a :class:`RegistrationError` carrying the IdP's ``error`` and
``error_description`` when it sent them, or a local code (``unreachable``, ``timeout``,
``invalid_response``...) otherwise. The token never appears in an error or a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
"""Seconds for one whole management request (connect, send, read)."""
MAX_RESPONSE_BYTES = 256 * 1024
"""Largest response body read from an IdP; client metadata is a few kilobytes."""

SECRET_FIELDS = frozenset({"client_secret", "registration_access_token"})
"""Metadata fields that are secrets: never stored in clear, never shown."""


class RegistrationError(Exception):
    """An RFC 7591/7592 exchange failed.

    ``error`` is the IdP's ``error`` code when it sent one, else a local code; ``status`` is the
    HTTP status the IdP answered (``None`` when no answer came).
    """

    def __init__(self, error: str, description: str, *, status: int | None = None) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status

    @property
    def retriable(self) -> bool:
        """Whether trying again later may succeed (no answer, or a server-side failure)."""
        return self.status is None or self.status >= 500 or self.status == 429


class DeleteOutcome(Enum):
    """What an RFC 7592 delete found."""

    DELETED = "deleted"
    """The IdP deleted the client (204)."""
    ALREADY_GONE = "already_gone"
    """The IdP does not know the client any more (404)."""


@dataclass(frozen=True, slots=True)
class ClientConfiguration:
    """A client's registration as the IdP returned it (RFC 7592 read)."""

    metadata: dict[str, Any]
    """Every field the IdP sent, including any new secret: strip with :func:`public_metadata`."""

    @property
    def rotated_registration_access_token(self) -> str | None:
        """A new registration access token, if the IdP issued one (the old one is then void)."""
        value = self.metadata.get("registration_access_token")
        return value if isinstance(value, str) and value else None


def public_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` without its secret fields."""
    return {key: value for key, value in metadata.items() if key not in SECRET_FIELDS}


async def read_client(
    registration_client_uri: str,
    registration_access_token: str,
    *,
    time_limit: float = DEFAULT_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ClientConfiguration:
    """The client's current registration (RFC 7592 §2.1, ``GET``)."""
    status, body = await _exchange("GET", registration_client_uri, registration_access_token,
                                   time_limit=time_limit, transport=transport)
    if status != 200:
        raise _idp_error(status, body)
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise RegistrationError("invalid_response", "the IdP's answer is not a JSON object",
                                status=status)
    return ClientConfiguration(document)


async def delete_client(
    registration_client_uri: str,
    registration_access_token: str,
    *,
    time_limit: float = DEFAULT_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> DeleteOutcome:
    """Delete the client at the IdP (RFC 7592 §2.3, ``DELETE``).

    204 (and 200, which some IdPs send) is a deletion; 404 means the client is already gone.
    RFC 7592 lets an IdP answer 401 for an unknown client too, but 401 equally means a wrong or
    expired token, so it is an error here: the caller decides (it may force the local removal).
    """
    status, body = await _exchange("DELETE", registration_client_uri, registration_access_token,
                                   time_limit=time_limit, transport=transport)
    if status in (200, 204):
        return DeleteOutcome.DELETED
    if status == 404:
        return DeleteOutcome.ALREADY_GONE
    raise _idp_error(status, body)


def check_uri(uri: str) -> None:
    """Refuse a management URI that is not absolute ``http(s)`` (:class:`RegistrationError`)."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise RegistrationError("invalid_uri", "the registration client URI is not an absolute "
                                "http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise RegistrationError("invalid_uri", "the registration client URI carries credentials")


async def _exchange(
    method: str,
    uri: str,
    token: str,
    *,
    time_limit: float,
    transport: httpx.AsyncBaseTransport | None,
) -> tuple[int, bytes]:
    check_uri(uri)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    try:
        # One deadline for the whole exchange: httpx's timeouts are per operation, so a server
        # trickling one byte at a time would otherwise hold the request open indefinitely.
        async with asyncio.timeout(time_limit), httpx.AsyncClient(
            follow_redirects=False, timeout=time_limit, trust_env=False, transport=transport
        ) as client, client.stream(method, uri, headers=headers) as response:
            body = await _read_capped(response)
            return response.status_code, body
    except TimeoutError as exc:
        raise RegistrationError("timeout", f"the IdP did not answer within {time_limit:g} s") from exc
    except httpx.TimeoutException as exc:
        raise RegistrationError("timeout", f"the IdP did not answer within {time_limit:g} s") from exc
    except httpx.HTTPError as exc:
        # The exception text names the URL, never the headers: safe to pass on.
        raise RegistrationError("unreachable", f"cannot reach the IdP: {type(exc).__name__}: {exc}"
                                ) from exc


async def _read_capped(response: httpx.Response) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise RegistrationError("response_too_large", f"the IdP's answer is larger than "
                                f"{MAX_RESPONSE_BYTES} bytes", status=response.status_code)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise RegistrationError("response_too_large", f"the IdP's answer is larger than "
                                    f"{MAX_RESPONSE_BYTES} bytes", status=response.status_code)
        chunks.append(chunk)
    return b"".join(chunks)


def _idp_error(status: int, body: bytes) -> RegistrationError:
    """The IdP's own ``error``/``error_description`` when it sent them (RFC 7591 §3.2.2)."""
    error, description = "", ""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict):
        raw_error = document.get("error")
        raw_description = document.get("error_description")
        error = raw_error[:100] if isinstance(raw_error, str) else ""
        description = raw_description[:500] if isinstance(raw_description, str) else ""
    if not error:
        error = {401: "invalid_token", 403: "insufficient_scope"}.get(status, "idp_error")
    if not description:
        if 300 <= status < 400:
            description = f"the IdP answered a redirect ({status}), which is not followed"
        else:
            description = f"the IdP answered HTTP {status}"
    return RegistrationError(error, description, status=status)
