"""The portal pages' route class: every error a page raises becomes an HTML page.

Pages raise :class:`~propylon.portal.web.visit.PageError`, the dashboard's
:class:`~propylon.dashboard.errors.ApiError` (from the registration saga, throttling, lookups) or
:class:`~propylon.portal.web.visit.SignInRequired`; :class:`PageRoute` turns each into a readable
page with the right status (or a redirect to sign in), so that the dashboard's JSON error handlers
never answer a browser. Anything unexpected is logged and gets a generic 500 page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from html import escape
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response

from propylon.dashboard.context import get_context
from propylon.dashboard.errors import ApiError
from propylon.portal.web.rendering import ERROR_TITLES, secure
from propylon.portal.web.settings import PortalWebSettings
from propylon.portal.web.visit import PageError, SignInRequired, Visit

log = logging.getLogger(__name__)

_HTTP_MESSAGES = {
    400: "The form could not be read.",
    404: "There is no such page.",
    405: "This page cannot be used that way.",
    413: "What was sent is too large.",
}


async def current_visit(request: Request) -> Visit:
    """FastAPI dependency: this request's :class:`Visit` (also kept for the error pages)."""
    context = get_context(request)
    current = await Visit.begin(request, context, PortalWebSettings.from_dashboard(context.settings))
    request.state.portal_visit = current
    return current


CurrentVisit = Annotated[Visit, Depends(current_visit)]


class PageRoute(APIRoute):
    """An :class:`APIRoute` whose errors are HTML pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handle(request)
            except Exception as exc:  # every failure becomes a page; see _failure
                return await _failure(request, exc)

        return guarded


async def _failure(request: Request, exc: Exception) -> Response:
    visit: Visit | None = getattr(request.state, "portal_visit", None)
    if isinstance(exc, SignInRequired):
        target = "/portal/login"
        if request.method == "GET":
            target += "?next=" + quote(request.url.path, safe="/")
        if visit is not None:
            return visit.redirect(target)
        return secure(Response(status_code=303, headers={"Location": target}))
    if isinstance(exc, PageError | ApiError):
        status, message, problems, headers = exc.status, exc.message, exc.problems, exc.headers
    elif isinstance(exc, HTTPException):
        status, problems, headers = exc.status_code, (), {}
        message = _HTTP_MESSAGES.get(status, "The request cannot be served.")
    elif isinstance(exc, RequestValidationError):
        status, message, problems, headers = 404, _HTTP_MESSAGES[404], (), {}
    elif isinstance(exc, DBAPIError) and ("0x00" in str(exc.orig)
                                          or type(exc.orig).__name__ == "CharacterNotInRepertoireError"):
        # The backstop for a NUL character no check caught (PostgreSQL cannot store it).
        status, message, problems, headers = 422, "NUL characters are not accepted.", (), {}
    else:
        log.error("unhandled error on portal page %s %s", request.method, request.url.path, exc_info=exc)
        status, message, problems, headers = 500, "Something went wrong on our side; the details " \
            "are in the dashboard log.", (), {}
    if visit is not None:
        try:
            return visit.error(status, message, problems, headers)
        except Exception as render_failure:  # the page itself failed: fall back to plain HTML
            log.error("the portal error page failed", exc_info=render_failure)
    title = ERROR_TITLES.get(status, "Error")
    body = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}"
            f"</title></head><body><main><h1>{escape(title)}</h1><p>{escape(message)}</p>"
            "<p><a href=\"/portal/\">Portal home</a></p></main></body></html>")
    return secure(HTMLResponse(body, status_code=status, headers=headers))
