"""The catalogue pages: the published entries, and one entry's documentation.

:func:`~propylon.portal.catalogue.published_catalogue` gives the same entries as the JSON API's
``GET /portal/api/v1/catalogue``, plus what only pages show: the OpenAPI link and the documentation
text. The catalogue is public: publishing an entry means showing it, also to visitors who have not
signed up yet.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from propylon.dashboard.errors import not_found
from propylon.portal.catalogue import published_catalogue
from propylon.portal.web.routing import CurrentVisit


def add_catalogue_pages(router: APIRouter) -> None:
    """Add the catalogue pages to ``router``."""

    @router.get("/catalogue")
    async def catalogue(visit: CurrentVisit) -> Response:
        listings = await published_catalogue(visit.context)
        return visit.page("catalogue.html", "API catalogue", listings=listings)

    @router.get("/catalogue/{entry_id}")
    async def entry(entry_id: str, visit: CurrentVisit) -> Response:
        for listing in await published_catalogue(visit.context):
            if listing.item.id == entry_id:
                return visit.page("catalogue_entry.html", listing.item.name, listing=listing)
        raise not_found("catalogue entry", entry_id[:128])
