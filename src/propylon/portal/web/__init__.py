"""The developer portal's server-rendered pages under ``/portal`` (served by the dashboard app).

Plain HTML forms, no JavaScript: sign-up and sign-in (``account_pages``), the catalogue
(``catalogue``), OAuth clients with the registration wizard (``client_pages``) and developer API
tokens (``token_pages``). Server-side sessions (``sessions``), CSRF tokens on every form (``csrf``),
form reading (``forms``) and the per-request :class:`~propylon.portal.web.visit.Visit` are shared;
``routing.PageRoute`` makes every error an HTML page. ``docs/portal.md`` describes the design.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.responses import Response

from propylon.portal.web.account_pages import add_account_pages
from propylon.portal.web.catalogue import add_catalogue_pages
from propylon.portal.web.client_pages import add_client_pages
from propylon.portal.web.rendering import secure
from propylon.portal.web.routing import CurrentVisit, PageRoute
from propylon.portal.web.token_pages import add_token_pages

__all__ = ["portal_web_router"]


def portal_web_router() -> APIRouter:
    """The portal pages, their stylesheet, and an HTML 404 for any other path under ``/portal/``
    (include it after the JSON API's router, which it must not shadow)."""
    router = APIRouter(prefix="/portal", route_class=PageRoute, include_in_schema=False,
                       default_response_class=HTMLResponse)
    stylesheet = (files("propylon.portal") / "static" / "portal.css").read_bytes()

    @router.get("/static/portal.css")
    async def css() -> Response:
        response = Response(stylesheet, media_type="text/css",
                            headers={"Cache-Control": "public, max-age=3600"})
        return secure(response, no_store=False)

    add_account_pages(router)
    add_catalogue_pages(router)
    add_client_pages(router)
    add_token_pages(router)

    @router.api_route("/{path:path}", methods=["GET", "POST", "HEAD"])
    async def missing(path: str, visit: CurrentVisit) -> Response:
        if path.startswith("api/"):
            # The JSON API's own unknown paths keep the dashboard's JSON shape.
            return JSONResponse({"error": "not_found", "message": "Not Found"}, status_code=404)
        return visit.error(404, "There is no such page.")

    return router
