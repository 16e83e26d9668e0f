"""The five routes every document resource has (list, create, get, replace, delete), built once.

APIs, policies and catalogue entries differ only in their models, names and how a stored row
becomes a response; the validation and writing rules are the same (``store.py``), so the routes
are too. Identity providers add their own routes next to these.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from propylon.dashboard.admin_auth import AdminActor
from propylon.dashboard.context import DashboardContext
from propylon.dashboard.resources.deps import Context, IdPath
from propylon.dashboard.resources.store import (
    Kind,
    ResourceRow,
    check_path_id,
    delete,
    list_rows,
    read_row,
    save,
    view_data,
)

Views = Callable[[DashboardContext, Sequence[ResourceRow]], Awaitable[list[Any]]]
"""Turns stored rows into response models (may read more state, e.g. the APIs an entry names)."""


@dataclass(frozen=True)
class DocumentRoutes:
    """What distinguishes one document resource's routes."""

    kind: Kind
    spec: type[BaseModel]
    """The create body (and stored document)."""
    update: type[BaseModel]
    """The replace body: the document with an optional ``id``."""
    view: type[BaseModel]
    plural: str
    """How summaries name the collection, e.g. ``APIs``."""
    delete_rule: str
    """The delete route's description: what keeps a resource from being deleted."""
    views: Views | None = None
    """Row → response conversion; default: the stored document plus timestamps."""


def document_router(routes: DocumentRoutes, *, prefix: str, tag: str) -> APIRouter:
    """The list/create/get/replace/delete routes of ``routes.kind`` under ``prefix``."""
    kind, noun = routes.kind, routes.kind.singular
    article = "an" if noun[0].lower() in "aeiou" or noun.startswith("API") else "a"
    router = APIRouter(prefix=prefix, tags=[tag])

    async def views(context: DashboardContext, rows: Sequence[ResourceRow]) -> list[Any]:
        if routes.views is not None:
            return await routes.views(context, rows)
        return [routes.view.model_validate(view_data(row)) for row in rows]

    async def list_all(context: Context, _actor: AdminActor) -> list[Any]:
        return await views(context, await list_rows(context, kind))

    async def create(body: Any, context: Context, actor: AdminActor) -> Any:
        row = await save(context, actor, kind, body.id, body, creating=True)
        return (await views(context, [row]))[0]

    async def get_one(ident: IdPath, context: Context, _actor: AdminActor) -> Any:
        return (await views(context, [await read_row(context, kind, ident)]))[0]

    async def replace(ident: IdPath, body: Any, context: Context, actor: AdminActor) -> Any:
        check_path_id(ident, body.id)
        spec = routes.spec.model_validate({**body.model_dump(), "id": ident})
        row = await save(context, actor, kind, ident, spec, creating=False)
        return (await views(context, [row]))[0]

    async def remove(ident: IdPath, context: Context, actor: AdminActor) -> None:
        await delete(context, actor, kind, ident)

    # FastAPI reads the body model from the annotation; it is only known here.
    create.__annotations__["body"] = routes.spec
    replace.__annotations__["body"] = routes.update
    list_all.__doc__ = f"Every {noun}, by id."
    create.__doc__ = f"Store a new {noun} (409 if the id exists)."
    get_one.__doc__ = f"One {noun}."
    replace.__doc__ = "Replace the whole document."
    remove.__doc__ = routes.delete_rule
    snake = kind.name.replace("-", "_")
    router.get("", summary=f"List {routes.plural}", response_model=list[routes.view],  # type: ignore[name-defined]
               operation_id=f"list_{snake}")(list_all)
    router.post("", status_code=201, summary=f"Create {article} {noun}", response_model=routes.view,
                operation_id=f"create_{snake}")(create)
    router.get("/{ident}", summary=f"Get {article} {noun}", response_model=routes.view,
               operation_id=f"get_{snake}")(get_one)
    router.put("/{ident}", summary=f"Replace {article} {noun}", response_model=routes.view,
               operation_id=f"replace_{snake}")(replace)
    router.delete("/{ident}", status_code=204, summary=f"Delete {article} {noun}",
                  operation_id=f"delete_{snake}")(remove)
    return router
