"""Errors of the data plane, and the one place that turns them into HTTP responses.

Hierarchy::

    GatewayError(status, code, message, headers)   -- anything refused or failed on a request
      ├── BadRequest            400  malformed request (framing, path, headers)
      ├── Unauthorized          401  missing/invalid credentials; one generic body, reason logged
      ├── Forbidden             403  authenticated but not allowed
      ├── NotFound              404  no API at this path
      ├── PayloadTooLarge       413
      ├── TooManyRequests       429  rate limit or quota, with Retry-After and RateLimit headers
      ├── HeadersTooLarge       431
      ├── BadGateway            502  upstream refused or broke the protocol
      ├── ServiceUnavailable    503  overload or a dependency down, with Retry-After
      └── GatewayTimeout        504  upstream too slow

``reason`` is for logs and analytics only: it never reaches the client, so that an attacker learns
nothing from the difference between, say, an expired and a forged token.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from http import HTTPStatus

Header = tuple[bytes, bytes]


class GatewayError(Exception):
    """A request the gateway answers itself, with ``status`` and a JSON ``{error, message}`` body."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        headers: Sequence[Header] = (),
        status: int | None = None,
        code: str | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.message = message
        self.reason = reason or message
        self.headers = tuple(headers)
        self.close = close


class BadRequest(GatewayError):
    """The request is malformed; the connection is closed after the answer."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str = "Malformed request", *, reason: str = "") -> None:
        super().__init__(message, reason=reason, close=True)


UNAUTHORIZED_HEADERS: tuple[Header, ...] = ((b"www-authenticate", b'Bearer error="invalid_token"'),)


class Unauthorized(GatewayError):
    """Credentials missing or invalid. The public message never says which."""

    status = 401
    code = "unauthorized"

    def __init__(self, reason: str) -> None:
        super().__init__(
            "Missing or invalid access token", reason=reason, headers=UNAUTHORIZED_HEADERS
        )


class Forbidden(GatewayError):
    """Authenticated, but no policy grants this request."""

    status = 403
    code = "forbidden"

    def __init__(self, message: str = "Access to this resource is not allowed", *, reason: str = "") -> None:
        super().__init__(message, reason=reason)


class NotFound(GatewayError):
    """No API is published at this path."""

    status = 404
    code = "not_found"

    def __init__(self) -> None:
        super().__init__("No API is published at this path", reason="no_route")


class PayloadTooLarge(GatewayError):
    """The request body is over the configured limit."""

    status = 413
    code = "payload_too_large"

    def __init__(self) -> None:
        super().__init__("Request body is too large", close=True)


class TooManyRequests(GatewayError):
    """A rate limit or quota is exhausted; headers say when to retry."""

    status = 429
    code = "rate_limited"


class HeadersTooLarge(GatewayError):
    """The request line or headers are over the configured limit."""

    status = 431
    code = "headers_too_large"

    def __init__(self) -> None:
        super().__init__("Request headers are too large", close=True)


class BadGateway(GatewayError):
    """The upstream refused the connection or broke HTTP."""

    status = 502
    code = "bad_gateway"

    def __init__(self, reason: str) -> None:
        super().__init__("The upstream service is unavailable", reason=reason)


class ServiceUnavailable(GatewayError):
    """The gateway or a dependency is overloaded or down."""

    status = 503
    code = "service_unavailable"

    def __init__(self, reason: str, *, retry_after: int = 1) -> None:
        super().__init__(
            "The service is temporarily unavailable",
            reason=reason,
            headers=((b"retry-after", str(retry_after).encode()),),
        )


class GatewayTimeout(GatewayError):
    """The upstream did not answer in time."""

    status = 504
    code = "gateway_timeout"

    def __init__(self, reason: str) -> None:
        super().__init__("The upstream service did not answer in time", reason=reason)


def render_error(error: GatewayError, *, keep_alive: bool, extra: Sequence[Header] = ()) -> bytes:
    """Serialise ``error`` as a complete HTTP/1.1 response (head and JSON body)."""
    body = json.dumps({"error": error.code, "message": error.message}).encode()
    phrase = _phrase(error.status)
    lines = [
        f"HTTP/1.1 {error.status} {phrase}\r\n".encode("latin-1"),
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        b"cache-control: no-store\r\n",
    ]
    lines.extend(name + b": " + value + b"\r\n" for name, value in (*error.headers, *extra))
    lines.append(b"\r\n" if keep_alive and not error.close else b"connection: close\r\n\r\n")
    return b"".join(lines) + body


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
