"""``/api/v1/catalogue``: APIs published in the developer portal, with the policy their clients get
and the options of dynamic client registration.

An entry must name existing APIs, policy and identity provider; its APIs' JWT auth must trust one
identity provider (the entry's, when it names one), and the policy must grant access to each API.
Catalogue entries do not change what gateways serve, so writes are audited without a new
configuration version.
"""

from __future__ import annotations

from fastapi import APIRouter

from propylon.dashboard.admin_auth import AdminActor
from propylon.dashboard.context import DashboardContext
from propylon.dashboard.resources.deps import Context, IdPath
from propylon.dashboard.resources.store import (
    CATALOGUE,
    ResourceRow,
    check_path_id,
    delete,
    list_rows,
    load_state,
    read_row,
    save,
    view_data,
)
from propylon.domain.config import Api
from propylon.domain.resources import (
    CatalogueEntrySpec,
    CatalogueEntryUpdate,
    CatalogueEntryView,
    effective_identity_provider,
)

router = APIRouter(prefix="/catalogue", tags=["catalogue"])


async def _apis(context: DashboardContext) -> dict[str, Api]:
    async with context.database.sessions() as session:
        return (await load_state(session, with_clients=False)).apis


def _view(row: ResourceRow, apis: dict[str, Api]) -> CatalogueEntryView:
    spec = CatalogueEntrySpec.model_validate(row.spec)
    return CatalogueEntryView.model_validate(
        {**view_data(row), "effective_identity_provider_id": effective_identity_provider(spec, apis)}
    )


@router.get("", summary="List catalogue entries")
async def list_catalogue(context: Context, _actor: AdminActor) -> list[CatalogueEntryView]:
    """Every catalogue entry, by id."""
    rows = await list_rows(context, CATALOGUE)
    apis = await _apis(context)
    return [_view(row, apis) for row in rows]


@router.post("", status_code=201, summary="Create a catalogue entry")
async def create_catalogue_entry(
    body: CatalogueEntrySpec, context: Context, actor: AdminActor
) -> CatalogueEntryView:
    """Store a new catalogue entry (409 if the id exists)."""
    row = await save(context, actor, CATALOGUE, body.id, body, creating=True)
    return _view(row, await _apis(context))


@router.get("/{ident}", summary="Get a catalogue entry")
async def get_catalogue_entry(ident: IdPath, context: Context, _actor: AdminActor) -> CatalogueEntryView:
    """One catalogue entry."""
    row = await read_row(context, CATALOGUE, ident)
    return _view(row, await _apis(context))


@router.put("/{ident}", summary="Replace a catalogue entry")
async def replace_catalogue_entry(
    ident: IdPath, body: CatalogueEntryUpdate, context: Context, actor: AdminActor
) -> CatalogueEntryView:
    """Replace the whole document."""
    check_path_id(ident, body.id)
    spec = CatalogueEntrySpec.model_validate({**body.model_dump(), "id": ident})
    row = await save(context, actor, CATALOGUE, ident, spec, creating=False)
    return _view(row, await _apis(context))


@router.delete("/{ident}", status_code=204, summary="Delete a catalogue entry")
async def delete_catalogue_entry(ident: IdPath, context: Context, actor: AdminActor) -> None:
    """Delete the entry (OAuth clients registered through it keep working)."""
    await delete(context, actor, CATALOGUE, ident)
