"""What one portal page request knows, and how its answer is made.

A :class:`Visit` is built per request (the ``visit`` dependency): the dashboard context, the portal
settings in force, the signed-in developer if the session cookie names a valid session, and the
CSRF secret of the forms. Its answers (:meth:`Visit.page`, :meth:`Visit.redirect`) carry the
cookies the request changed and the portal's security headers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from propylon.dashboard.context import DashboardContext
from propylon.dashboard.errors import Problem
from propylon.dashboard.resources.portal_settings import load_portal_settings
from propylon.domain.resources import PortalSettings
from propylon.portal.web.csrf import (
    CSRF_COOKIE,
    CSRF_FIELD,
    cross_site,
    new_secret,
    token_matches,
    usable_secret,
)
from propylon.portal.web.forms import Form, read_form
from propylon.portal.web.rendering import ERROR_TITLES, render, secure
from propylon.portal.web.sessions import SESSION_COOKIE, NewSession, SignedIn, find_session
from propylon.portal.web.settings import PortalWebSettings

COOKIE_PATH = "/portal"
FLASH_COOKIE = "propylon_portal_flash"
"""Carries the code of a message for the page a redirect leads to (read once, then deleted)."""
FLASH_SECONDS = 60

FLASHES: Mapping[str, str] = {
    "signed_out": "You are signed out.",
    "password_changed": "Your password is changed; your other sessions are signed out.",
    "updated": "The client is updated.",
    "deleted": "The client is deleted.",
    "deletion_pending": "The client is revoked: its tokens no longer work. Its deletion at the "
    "identity provider is not confirmed yet and will be retried.",
    "token_revoked": "The token is revoked.",
}
"""Messages a redirect can leave for the next page (only these codes travel, never text)."""

_LABELS: Mapping[str, str] = {
    "catalogue_entry_ids": "APIs", "name": "Name", "redirect_uris": "Redirect URIs",
    "grant_type": "Grant type", "email": "Email", "password": "Password",
    "current_password": "Current password", "new_password": "New password",
}


class PageError(Exception):
    """An error page: HTTP ``status``, a message, and the problems to list in ``#errors``."""

    def __init__(self, status: int, message: str, problems: Sequence[Problem] = (),
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = tuple(problems)
        self.headers = dict(headers or {})


class SignInRequired(Exception):
    """The page needs a signed-in developer; the visitor is sent to the sign-in page."""


def forged() -> PageError:
    """The 403 of a form without a valid CSRF token."""
    return PageError(403, "This form was not sent from this site's current page, or it expired. "
                     "Go back, reload the page and try again.")


def problem_lines(problems: Iterable[Problem]) -> list[str]:
    """Problems as sentences for ``#errors`` (``redirect_uris.1`` → "Redirect URIs (2): …")."""
    lines = []
    for problem in problems:
        head, _, index = problem.location.partition(".")
        label = _LABELS.get(head, "")
        if label and index.isdigit():
            label = f"{label} ({int(index) + 1})"
        if not label or problem.message.startswith(label):
            lines.append(problem.message)
        else:
            lines.append(f"{label}: {problem.message}")
    return lines


@dataclass
class Visit:
    """One request to a portal page."""

    request: Request
    context: DashboardContext
    settings: PortalWebSettings
    portal: PortalSettings
    signed_in: SignedIn | None
    csrf_secret: str
    _cookies: dict[str, str | None] = field(default_factory=dict)
    """Cookies to set on the answer (``None``: delete it)."""

    @classmethod
    async def begin(cls, request: Request, context: DashboardContext,
                    settings: PortalWebSettings) -> Visit:
        """Read the session and CSRF cookies of ``request``."""
        cookie = request.cookies.get(SESSION_COOKIE)
        signed_in = await find_session(context.database, settings, cookie)
        visit = cls(request, context, settings, await load_portal_settings(context), signed_in, "")
        if cookie is not None and signed_in is None:
            visit._cookies[SESSION_COOKIE] = None
        if signed_in is not None:
            visit.csrf_secret = signed_in.csrf_secret
        else:
            anonymous = request.cookies.get(CSRF_COOKIE)
            if usable_secret(anonymous):
                assert anonymous is not None
                visit.csrf_secret = anonymous
            else:
                visit.csrf_secret = new_secret()
                visit._cookies[CSRF_COOKIE] = visit.csrf_secret
        return visit

    def developer(self) -> SignedIn:
        """The signed-in developer (else the visitor is sent to sign in)."""
        if self.signed_in is None:
            raise SignInRequired
        return self.signed_in

    async def posted(self) -> Form:
        """The submitted form, once its CSRF token is checked (else 403, and nothing happens)."""
        form = await read_form(self.request)
        if cross_site(self.request) or not token_matches(self.csrf_secret, form.raw(CSRF_FIELD)):
            raise forged()
        return form

    def signed_in_now(self, new: NewSession) -> None:
        """Use ``new`` from now on (sign-in, password change): new cookie, new CSRF secret."""
        self.signed_in = new.signed_in
        self.csrf_secret = new.signed_in.csrf_secret
        self._cookies[SESSION_COOKIE] = new.session_id

    def signed_out_now(self) -> None:
        """Forget the session (its row is already deleted)."""
        self.signed_in = None
        self._cookies[SESSION_COOKIE] = None

    def flash(self) -> str | None:
        """The message the redirect that led here left (shown once)."""
        code = self.request.cookies.get(FLASH_COOKIE)
        if code is None:
            return None
        self._cookies.setdefault(FLASH_COOKIE, None)
        return FLASHES.get(code)

    def page(self, template: str, title: str, *, status: int = 200, flash: str | None = None,
             message: str | None = None, problems: Iterable[Problem] = (),
             headers: Mapping[str, str] | None = None, **values: Any) -> Response:
        """The page ``template`` (it extends ``base.html``)."""
        html = render(template, {
            "title": title, "portal_name": self.portal.portal_name, "signed_in": self.signed_in,
            "csrf_token": self.csrf_secret, "flash": flash, "message": message,
            "errors": problem_lines(problems), **values,
        })
        return self.finish(HTMLResponse(html, status_code=status, headers=headers))

    def redirect(self, url: str, *, flash: str | None = None) -> Response:
        """303 See Other to ``url`` (a local path), leaving the message ``flash`` (a code of
        :data:`FLASHES`) for that page."""
        if flash is not None:
            self._cookies[FLASH_COOKIE] = flash
        return self.finish(RedirectResponse(url, status_code=303))

    def error(self, status: int, message: str, problems: Iterable[Problem] = (),
              headers: Mapping[str, str] | None = None) -> Response:
        """The error page: ``message`` heads the problems (or is the only one) in ``#errors``."""
        listed = list(problems)
        return self.page("error.html", ERROR_TITLES.get(status, "Error"), status=status,
                         message=message if listed else None,
                         problems=listed or [Problem("", message)], headers=headers)

    def finish(self, response: Response) -> Response:
        """``response`` with this visit's cookies and the security headers."""
        secure_cookie = self.settings.cookie_secure
        if secure_cookie is None:
            secure_cookie = self.request.url.scheme == "https"
        for name, value in self._cookies.items():
            if value is None:
                response.delete_cookie(name, path=COOKIE_PATH, secure=secure_cookie, httponly=True,
                                       samesite="lax")
            else:
                max_age = {SESSION_COOKIE: self.settings.session_absolute_seconds,
                           FLASH_COOKIE: FLASH_SECONDS}.get(name)
                response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH,
                                    secure=secure_cookie, httponly=True, samesite="lax")
        return secure(response)
