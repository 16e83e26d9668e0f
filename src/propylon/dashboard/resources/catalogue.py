"""``/api/v1/catalogue``: APIs published in the developer portal, with the policy their clients get
and the options of dynamic client registration.

An entry must name existing APIs, policy and identity provider; its APIs' JWT auth must trust one
identity provider (the entry's, when it names one), and the policy must grant access to each API.
Writes are audited and, like every configuration write, get a new configuration version.
"""

from __future__ import annotations

from collections.abc import Sequence

from propylon.dashboard.context import DashboardContext
from propylon.dashboard.resources.crud import DocumentRoutes, document_router
from propylon.dashboard.resources.store import CATALOGUE, ResourceRow, load_state, view_data
from propylon.domain.resources import (
    CatalogueEntrySpec,
    CatalogueEntryUpdate,
    CatalogueEntryView,
    effective_identity_provider,
)


async def _views(context: DashboardContext, rows: Sequence[ResourceRow]) -> list[CatalogueEntryView]:
    """Entries with the identity provider their clients are registered at, which depends on the
    APIs they publish."""
    async with context.database.sessions() as session:
        apis = (await load_state(session, with_clients=False)).apis
    views = []
    for row in rows:
        spec = CatalogueEntrySpec.model_validate(row.spec)
        views.append(CatalogueEntryView.model_validate(
            {**view_data(row), "effective_identity_provider_id": effective_identity_provider(spec, apis)}
        ))
    return views


router = document_router(
    DocumentRoutes(
        CATALOGUE, CatalogueEntrySpec, CatalogueEntryUpdate, CatalogueEntryView,
        plural="catalogue entries",
        delete_rule="Delete the entry (OAuth clients registered through it keep working).",
        views=_views,
    ),
    prefix="/catalogue", tag="catalogue",
)
