"""The one way Propylon sends a request to an identity provider.

IdP URLs come from admins and from the IdP's own answers, and some requests carry credentials
(initial access tokens, registration access tokens, Okta API tokens), so every request follows the
same rules: ``http``/``https`` URLs without userinfo only, the host's addresses pass the SSRF guard
(``outbound.guard``: public addresses, or networks an admin allowed; the connection goes to the checked
address), redirects are never followed (a redirect would carry the credential elsewhere, and past
the guard), proxies from the environment are ignored, one deadline bounds
the whole exchange (httpx's timeouts are per operation: a server trickling one byte at a time would
otherwise hold a request open indefinitely), and response bodies are capped. Failures are
:class:`OutboundFailure`; their messages name the URL, never a header, so no secret can leak
through them. Callers (discovery, registration) turn them into their own errors.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from propylon.outbound.guard import AddressRefused, OutboundGuard

DEFAULT_TIMEOUT = 5.0
"""Seconds for one whole request (connect, send, read the answer)."""

FailureReason = Literal["timeout", "unreachable", "too_large", "refused"]


class OutboundFailure(Exception):
    """No usable answer: ``timeout``, ``unreachable``, ``too_large`` (``status`` when it came), or
    ``refused`` by the SSRF guard before any connection."""

    def __init__(self, reason: FailureReason, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Reply:
    """An IdP's answer, read in full (within the cap)."""

    status: int
    content_type: str
    body: bytes
    redirect: bool
    """A 3xx with a ``Location``: reported, never followed."""

    @property
    def is_json(self) -> bool:
        """Whether the content type is JSON (``application/json`` or ``+json``)."""
        media = self.content_type.split(";", 1)[0].strip().lower()
        return media == "application/json" or media.endswith("+json")


def url_problem(url: str) -> str | None:
    """Why ``url`` may not be called (not absolute http(s), or carries credentials), else ``None``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "is not an absolute http(s) URL"
    if parts.username is not None or parts.password is not None:
        return "carries credentials"
    return None


async def send(
    method: str,
    url: str,
    what: str,
    *,
    max_bytes: int,
    time_limit: float = DEFAULT_TIMEOUT,
    headers: dict[str, str] | None = None,
    json_body: dict[str, Any] | None = None,
    guard: OutboundGuard | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Reply:
    """Send one request under the rules above. ``what`` names the endpoint in error messages.
    ``guard`` says which addresses may be reached (None: public ones only); a ``transport`` given
    replaces the guarded one (tests that watch or disturb the exchange)."""
    request_headers = {"Accept": "application/json", **(headers or {})}
    if transport is None:
        transport = (guard if guard is not None else OutboundGuard()).transport()
    try:
        async with asyncio.timeout(time_limit), httpx.AsyncClient(
            follow_redirects=False, timeout=time_limit, trust_env=False, transport=transport
        ) as client, client.stream(method, url, headers=request_headers, json=json_body) as response:
            body = await _read_capped(response, what, url, max_bytes)
            return Reply(response.status_code, response.headers.get("content-type", ""), body,
                         response.is_redirect)
    except AddressRefused as exc:
        raise OutboundFailure("refused", f"{what} at {url} was not called: {exc.message}") from exc
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise OutboundFailure("timeout", f"{what} at {url} did not answer within {time_limit:g} s"
                              ) from exc
    except (httpx.HTTPError, OSError) as exc:
        # httpx names the URL in its messages, never the headers: safe to pass on.
        raise OutboundFailure("unreachable", f"cannot reach {what} at {url}: "
                              f"{type(exc).__name__}: {exc}") from exc


async def _read_capped(response: httpx.Response, what: str, url: str, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(what, url, max_bytes, response.status_code)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(what, url, max_bytes, response.status_code)
    return bytes(body)


def _too_large(what: str, url: str, max_bytes: int, status: int) -> OutboundFailure:
    return OutboundFailure("too_large", f"{what} at {url} is larger than {max_bytes} bytes",
                           status=status)
