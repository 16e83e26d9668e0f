"""The catalogue pages: the published entries, and one entry's documentation.

:func:`published_catalogue` builds the same :class:`~propylon.portal.api.CatalogueItem` s as the
JSON API's ``GET /portal/api/v1/catalogue`` (whose route could call it instead of its own loop),
plus what only pages show: the OpenAPI link and the documentation text. The catalogue is public:
publishing an entry means showing it, also to visitors who have not signed up yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter
from starlette.responses import Response

from propylon.dashboard.context import DashboardContext
from propylon.dashboard.errors import not_found
from propylon.dashboard.resources.portal_settings import load_portal_settings
from propylon.dashboard.resources.store import load_state
from propylon.portal.api import ApiRef, CatalogueItem
from propylon.portal.web.routing import CurrentVisit
from propylon.portal.wording import limits_in_words


@dataclass(frozen=True, slots=True)
class Listing:
    """A published entry as the pages show it."""

    item: CatalogueItem
    openapi_url: str | None
    documentation: str | None


async def published_catalogue(context: DashboardContext) -> list[Listing]:
    """The published catalogue entries, in the stored order."""
    settings = await load_portal_settings(context)
    async with context.database.sessions() as session:
        state = await load_state(session, with_clients=False)
    listings = []
    for entry in state.catalogue.values():
        if not entry.published:
            continue
        apis = [ApiRef(id=api_id, name=state.apis[api_id].name or api_id,
                       listen_path=state.apis[api_id].listen_path)
                for api_id in entry.api_ids if api_id in state.apis]
        item = CatalogueItem(
            id=entry.id, name=entry.name, description=entry.description, apis=apis,
            limits=limits_in_words(state.policies.get(entry.policy_id)),
            registration_enabled=settings.dcr_enabled if entry.dcr_enabled is None else entry.dcr_enabled,
            grant_types=list(entry.grant_types or settings.grant_types),
            redirect_uris_required=entry.redirect_uris_required,
        )
        listings.append(Listing(item, entry.openapi_url, entry.documentation or None))
    return listings


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
