"""Cross-site request forgery protection of the portal's forms.

Every form carries a hidden ``csrf_token``; a POST whose token does not match is refused with 403
before anything else happens. The token is a synchroniser token:

- **signed in**: the session's own random secret, stored with the session (a new session, so a new
  token, at every sign-in);
- **not signed in** (sign-up, sign-in): a random value in the ``propylon_portal_csrf`` cookie
  (HttpOnly, SameSite=Lax), which the form must repeat (double submit). This keeps a forged
  cross-site sign-in (logging a victim into the attacker's account) out, without writing a
  session row for every visitor.

A request the browser marks ``Sec-Fetch-Site: cross-site`` is refused as well (defence in depth);
``SameSite=Lax`` already keeps the session cookie off cross-site POSTs in current browsers.
"""

from __future__ import annotations

import hmac
import re
import secrets

from starlette.requests import Request

CSRF_COOKIE = "propylon_portal_csrf"
CSRF_FIELD = "csrf_token"
_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")


def new_secret() -> str:
    """A fresh CSRF secret (256 random bits)."""
    return secrets.token_urlsafe(32)


def usable_secret(value: str | None) -> bool:
    """Whether a cookie's value can be a CSRF secret (as :func:`new_secret` makes them)."""
    return value is not None and _SECRET.match(value) is not None


def token_matches(expected: str, given: object) -> bool:
    """Whether the form's ``given`` token is ``expected`` (constant time; anything not a string,
    or an empty expectation, never matches)."""
    if not isinstance(given, str) or not expected or not given.isascii():
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def cross_site(request: Request) -> bool:
    """Whether the browser says the request comes from another site (Fetch Metadata)."""
    return request.headers.get("sec-fetch-site", "").lower() == "cross-site"
