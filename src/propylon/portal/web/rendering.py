"""Turning templates into answers: the Jinja2 environment (autoescaping on), the security headers
every portal page carries, and the titles of error pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
from starlette.responses import Response

CONTENT_SECURITY_POLICY = ("default-src 'self'; base-uri 'none'; object-src 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")
"""No inline script or style, no framing, forms post only here."""

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}

ERROR_TITLES: Mapping[int, str] = {
    400: "Bad request",
    401: "Sign-in failed",
    403: "Forbidden",
    404: "Not found",
    405: "Not allowed",
    409: "Conflict",
    413: "Too large",
    422: "Please check your input",
    429: "Too many attempts",
    500: "Something went wrong",
    502: "Identity provider error",
    503: "Temporarily unavailable",
    504: "Identity provider timeout",
}


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The portal's template environment (loaded once; templates are package data)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("propylon.portal", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, values: Mapping[str, Any]) -> str:
    """``template`` rendered with ``values``."""
    return environment().get_template(template).render(values)


def secure(response: Response, *, no_store: bool = True) -> Response:
    """``response`` with the portal's security headers (and ``Cache-Control: no-store`` unless it
    is a public asset)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if no_store:
        response.headers["Cache-Control"] = "no-store"
    return response
