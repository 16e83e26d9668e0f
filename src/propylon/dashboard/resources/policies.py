"""``/api/v1/policies``: rate limits, quotas, access rights and key expiry.

Gateways receive the ``domain.config.Policy`` fields; ``name``, ``description`` and
``key_expires_in_seconds`` stay in the dashboard. A policy whose access rights name an unknown API
is refused (422); deleting a policy that an API, catalogue entry or OAuth client still uses is
refused (409).
"""

from __future__ import annotations

from fastapi import APIRouter

from propylon.dashboard.admin_auth import AdminActor
from propylon.dashboard.resources.deps import Context, IdPath
from propylon.dashboard.resources.store import (
    POLICIES,
    ResourceRow,
    check_path_id,
    delete,
    list_rows,
    read_row,
    save,
    view_data,
)
from propylon.domain.resources import PolicySpec, PolicyUpdate, PolicyView

router = APIRouter(prefix="/policies", tags=["policies"])


def _view(row: ResourceRow) -> PolicyView:
    return PolicyView.model_validate(view_data(row))


@router.get("", summary="List policies")
async def list_policies(context: Context, _actor: AdminActor) -> list[PolicyView]:
    """Every policy, by id."""
    return [_view(row) for row in await list_rows(context, POLICIES)]


@router.post("", status_code=201, summary="Create a policy")
async def create_policy(body: PolicySpec, context: Context, actor: AdminActor) -> PolicyView:
    """Store a new policy (409 if the id exists)."""
    return _view(await save(context, actor, POLICIES, body.id, body, creating=True))


@router.get("/{ident}", summary="Get a policy")
async def get_policy(ident: IdPath, context: Context, _actor: AdminActor) -> PolicyView:
    """One policy."""
    return _view(await read_row(context, POLICIES, ident))


@router.put("/{ident}", summary="Replace a policy")
async def replace_policy(
    ident: IdPath, body: PolicyUpdate, context: Context, actor: AdminActor
) -> PolicyView:
    """Replace the whole document."""
    check_path_id(ident, body.id)
    spec = PolicySpec.model_validate({**body.model_dump(), "id": ident})
    return _view(await save(context, actor, POLICIES, ident, spec, creating=False))


@router.delete("/{ident}", status_code=204, summary="Delete a policy")
async def delete_policy(ident: IdPath, context: Context, actor: AdminActor) -> None:
    """Delete it unless an API, catalogue entry or OAuth client still uses it (409)."""
    await delete(context, actor, POLICIES, ident)
