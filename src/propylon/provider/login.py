"""The provider's sign-in page for the authorization code flow (server-rendered, no JavaScript).

The page carries the authorization request's parameters in hidden fields and a CSRF token that
must match the ``propylon_idp_csrf`` cookie (double submit), so that another site cannot sign a
browser in. Every value is HTML-escaped. There is no consent step: the embedded provider's clients
are registered by Propylon itself.
"""

from __future__ import annotations

import hmac
import secrets
from html import escape

from starlette.responses import HTMLResponse

CSRF_COOKIE = "propylon_idp_csrf"
CSRF_FIELD = "csrf_token"
AUTHORIZATION_FIELDS = ("response_type", "client_id", "redirect_uri", "scope", "state",
                        "code_challenge", "code_challenge_method", "nonce")
"""Authorization request parameters the form carries over to the POST."""
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}"
          "label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=password]"
          "{width:100%;padding:.4rem}button{margin-top:1rem;padding:.5rem 1.2rem}"
          "#errors{color:#a00}")


def new_csrf_token() -> str:
    """A fresh CSRF token (for the cookie and the hidden field)."""
    return secrets.token_urlsafe(24)


def csrf_matches(cookie: str | None, field: str | None) -> bool:
    """Whether the form's CSRF token is the cookie's (constant time)."""
    if not cookie or not field:
        return False
    return hmac.compare_digest(cookie.encode(), field.encode())


def _page(title: str, body: str, status: int) -> HTMLResponse:
    html = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<meta name=viewport content='width=device-width'><style>{_STYLE}</style></head>"
            f"<body><h1>{escape(title)}</h1>{body}</body></html>")
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def login_page(params: dict[str, str], client_name: str, csrf_token: str, *, error: str | None = None,
               username: str = "", status: int = 200, secure_cookie: bool = False) -> HTMLResponse:
    """The sign-in form for an authorization request (``params``), setting the CSRF cookie."""
    hidden = "".join(
        f"<input type=hidden name='{name}' value='{escape(params[name])}'>"
        for name in AUTHORIZATION_FIELDS if name in params
    )
    errors = f"<ul id=errors><li>{escape(error)}</li></ul>" if error else ""
    body = (
        f"<p>Sign in to continue to <strong>{escape(client_name)}</strong>.</p>{errors}"
        "<form method=post action=authorize>"
        f"<input type=hidden name={CSRF_FIELD} value='{escape(csrf_token)}'>{hidden}"
        "<label for=username>Username</label>"
        f"<input type=text id=username name=username autocomplete=username required "
        f"value='{escape(username)}'>"
        "<label for=password>Password</label>"
        "<input type=password id=password name=password autocomplete=current-password required>"
        "<button type=submit id=sign-in>Sign in</button></form>"
    )
    response = _page("Sign in", body, status)
    response.set_cookie(CSRF_COOKIE, csrf_token, httponly=True, samesite="strict",
                        secure=secure_cookie, path="/")
    return response


def error_page(message: str, status: int = 400) -> HTMLResponse:
    """A readable page for an authorization request that cannot be answered by redirecting back
    to the client (unknown client, unregistered redirect URI...)."""
    return _page("Cannot sign in", f"<ul id=errors><li>{escape(message)}</li></ul>", status)
