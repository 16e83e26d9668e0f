"""The published catalogue as developers see it, for the JSON API and the pages alike.

:func:`published_catalogue` reads the published entries with their APIs, the policy's limits in
words, the grant types offered (the entry's or the portal settings') and, for the pages, the
OpenAPI link and the documentation text.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from propylon.dashboard.context import DashboardContext
from propylon.dashboard.resources.portal_settings import load_portal_settings
from propylon.dashboard.resources.store import load_state
from propylon.portal.wording import limits_in_words


class ApiRef(BaseModel):
    """An API of a catalogue entry."""

    id: str
    name: str
    listen_path: str


class CatalogueItem(BaseModel):
    """A published catalogue entry as developers see it."""

    id: str
    name: str
    description: str
    apis: list[ApiRef]
    limits: list[str] = Field(description="The policy's limits in words.")
    registration_enabled: bool
    grant_types: list[str]
    redirect_uris_required: bool


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
