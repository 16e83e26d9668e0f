"""``/api/v1/apis``: the APIs gateways proxy (a document is exactly ``domain.config.Api``).

A write is refused (422) when the API names an unknown identity provider or policy, or takes a
listen path another API routes on; deleting an API that a policy's access rights or a catalogue
entry still names is refused (409).
"""

from __future__ import annotations

from fastapi import APIRouter

from propylon.dashboard.admin_auth import AdminActor
from propylon.dashboard.resources.deps import Context, IdPath
from propylon.dashboard.resources.store import (
    APIS,
    ResourceRow,
    check_path_id,
    delete,
    list_rows,
    read_row,
    save,
    view_data,
)
from propylon.domain.resources import ApiSpec, ApiUpdate, ApiView

router = APIRouter(prefix="/apis", tags=["APIs"])


def _view(row: ResourceRow) -> ApiView:
    return ApiView.model_validate(view_data(row))


@router.get("", summary="List APIs")
async def list_apis(context: Context, _actor: AdminActor) -> list[ApiView]:
    """Every API, by id."""
    return [_view(row) for row in await list_rows(context, APIS)]


@router.post("", status_code=201, summary="Create an API")
async def create_api(body: ApiSpec, context: Context, actor: AdminActor) -> ApiView:
    """Store a new API (409 if the id exists)."""
    return _view(await save(context, actor, APIS, body.id, body, creating=True))


@router.get("/{ident}", summary="Get an API")
async def get_api(ident: IdPath, context: Context, _actor: AdminActor) -> ApiView:
    """One API."""
    return _view(await read_row(context, APIS, ident))


@router.put("/{ident}", summary="Replace an API")
async def replace_api(ident: IdPath, body: ApiUpdate, context: Context, actor: AdminActor) -> ApiView:
    """Replace the whole document."""
    check_path_id(ident, body.id)
    spec = ApiSpec.model_validate({**body.model_dump(), "id": ident})
    return _view(await save(context, actor, APIS, ident, spec, creating=False))


@router.delete("/{ident}", status_code=204, summary="Delete an API")
async def delete_api(ident: IdPath, context: Context, actor: AdminActor) -> None:
    """Delete it unless a policy or catalogue entry still names it (409)."""
    await delete(context, actor, APIS, ident)
