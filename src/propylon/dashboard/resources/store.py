"""Reading and writing the configuration resources, with cross-reference validation before any write.

Every write runs in one transaction that first locks the configuration-version row (so that two
admins' changes are checked and applied one after the other), loads the stored state, applies the
change to a copy, and validates the candidate as a whole: the gateway configuration through
:func:`propylon.domain.config.check_references` and every catalogue entry through
:func:`propylon.domain.resources.check_catalogue_entry`. Only problems the change *introduces* are
reported, so an inconsistency already in the database (written by an older version, say) never
blocks unrelated edits. Problems in the written document are a 422 located in its body; problems the
change causes elsewhere (an API still naming a deleted policy) are a 409 naming the referrers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from propylon.dashboard.changes import Actor, now, record_change
from propylon.dashboard.context import DashboardContext
from propylon.dashboard.errors import Problem, conflict, invalid, not_found
from propylon.domain.config import Api, Client, GatewayConfig, check_references
from propylon.domain.resources import (
    CatalogueEntrySpec,
    IdentityProviderSpec,
    PolicySpec,
    check_catalogue_entry,
)
from propylon.storage.sql.schema import (
    ApiRow,
    CatalogueEntryRow,
    ConfigState,
    IdentityProviderRow,
    OAuthClientRow,
    PolicyRow,
)

log = logging.getLogger(__name__)

KindName = Literal["identity-providers", "apis", "policies", "catalogue"]
ResourceRow = IdentityProviderRow | ApiRow | PolicyRow | CatalogueEntryRow
RowT = TypeVar("RowT", IdentityProviderRow, ApiRow, PolicyRow, CatalogueEntryRow)
SpecT = TypeVar("SpecT", bound=BaseModel)


@dataclass(frozen=True)
class Kind:
    """One resource type: its URL segment (also its audit ``resource_type``), row and spec."""

    name: KindName
    singular: str
    row: type[ResourceRow]
    spec: type[BaseModel]
    versioned: bool


IDENTITY_PROVIDERS = Kind("identity-providers", "identity provider", IdentityProviderRow,
                          IdentityProviderSpec, True)
APIS = Kind("apis", "API", ApiRow, Api, True)
POLICIES = Kind("policies", "policy", PolicyRow, PolicySpec, True)
# The catalogue is configuration (of the portal) like the rest: its writes get a version too, even
# though gateways serve the same snapshot before and after.
CATALOGUE = Kind("catalogue", "catalogue entry", CatalogueEntryRow, CatalogueEntrySpec, True)

# check_references names lists by their GatewayConfig field; problems are reported by URL segment.
_CONFIG_LISTS: dict[str, str] = {
    "identity_providers": "identity-providers", "apis": "apis", "policies": "policies",
    "clients": "oauth-clients",
}


@dataclass(frozen=True, slots=True)
class RefProblem:
    """A problem of one stored (or candidate) resource: ``kind/ident`` and a field inside it."""

    kind: str
    ident: str
    field: str
    message: str

    @property
    def resource(self) -> str:
        """``kind/ident``, how problems outside the written document are named."""
        return f"{self.kind}/{self.ident}"


@dataclass(frozen=True)
class State:
    """Every configuration resource, parsed; plus the OAuth clients that refer to them."""

    identity_providers: dict[str, IdentityProviderSpec]
    apis: dict[str, Api]
    policies: dict[str, PolicySpec]
    catalogue: dict[str, CatalogueEntrySpec]
    clients: list[Client] = field(default_factory=list)
    client_identity_providers: dict[str, str] = field(default_factory=dict)
    """OAuth client record id → identity provider id (every status: the row must go first)."""

    def documents(self, kind: Kind) -> dict[str, Any]:
        """The resources of ``kind`` by id."""
        if kind.name == "identity-providers":
            return dict(self.identity_providers)
        if kind.name == "apis":
            return dict(self.apis)
        if kind.name == "policies":
            return dict(self.policies)
        return dict(self.catalogue)

    def with_document(self, kind: Kind, ident: str, spec: BaseModel | None) -> State:
        """A copy with resource ``ident`` of ``kind`` replaced (or removed when ``spec`` is None)."""
        documents = dict(self.documents(kind))
        if spec is None:
            documents.pop(ident, None)
        else:
            documents[ident] = spec
        if kind.name == "identity-providers":
            return replace(self, identity_providers=documents)
        if kind.name == "apis":
            return replace(self, apis=documents)
        if kind.name == "policies":
            return replace(self, policies=documents)
        return replace(self, catalogue=documents)


def _parse(model: type[SpecT], rows: list[Any]) -> dict[str, SpecT]:
    parsed: dict[str, SpecT] = {}
    for row in rows:
        try:
            parsed[row.id] = model.model_validate(row.spec)
        except ValidationError:
            # Written by a version with other rules: left out rather than failing every request.
            log.error("stored %s %r does not validate any more; it is ignored", model.__name__, row.id)
    return parsed


async def load_state(session: AsyncSession, *, with_clients: bool = True) -> State:
    """Everything stored, read in ``session``'s transaction."""

    async def rows(row_type: type[RowT]) -> list[RowT]:
        return list((await session.scalars(select(row_type).order_by(row_type.id))).all())

    state = State(
        identity_providers=_parse(IdentityProviderSpec, await rows(IdentityProviderRow)),
        apis=_parse(Api, await rows(ApiRow)),
        policies=_parse(PolicySpec, await rows(PolicyRow)),
        catalogue=_parse(CatalogueEntrySpec, await rows(CatalogueEntryRow)),
    )
    if not with_clients:
        return state
    result = await session.execute(
        select(OAuthClientRow.id, OAuthClientRow.client_id, OAuthClientRow.status,
               OAuthClientRow.policy_ids, OAuthClientRow.identity_provider_id,
               OAuthClientRow.developer_id).order_by(OAuthClientRow.id)
    )
    for record_id, client_id, status, policy_ids, idp_id, developer_id in result.all():
        state.client_identity_providers[record_id] = idp_id
        if status == "active" and client_id:
            state.clients.append(Client.model_construct(
                client_id=client_id, policies=tuple(policy_ids or ()), developer_id=developer_id,
            ))
    return state


async def lock_config(session: AsyncSession) -> None:
    """Serialise configuration writers (PostgreSQL row lock; SQLite's BEGIN IMMEDIATE already does)."""
    await session.execute(select(ConfigState.id).where(ConfigState.id == 1).with_for_update())


def problems_of(state: State, focus: tuple[str, str] | None = None) -> list[RefProblem]:
    """Every cross-reference problem of ``state``. ``focus`` (kind, id) is placed last in its list
    so that a clash (same listen path) is blamed on the resource being written."""

    def ordered(kind: str, documents: Mapping[str, Any]) -> list[Any]:
        items = [doc for ident, doc in sorted(documents.items()) if (kind, ident) != focus]
        if focus is not None and focus[0] == kind and focus[1] in documents:
            items.append(documents[focus[1]])
        return items

    lists = {
        "identity_providers": ordered("identity-providers", state.identity_providers),
        "apis": ordered("apis", state.apis),
        "policies": ordered("policies", state.policies),
        "clients": list(state.clients),
    }
    config = GatewayConfig.model_construct(
        version=None, revoked_clients=(), identity_providers=tuple(lists["identity_providers"]),
        apis=tuple(lists["apis"]), policies=tuple(lists["policies"]), clients=tuple(lists["clients"]),
    )
    problems: list[RefProblem] = []
    for problem in check_references(config):
        list_name, _, rest = problem.location.partition(".")
        index_text, _, field_path = rest.partition(".")
        item = lists[list_name][int(index_text)]
        ident = item.client_id if list_name == "clients" else item.id
        problems.append(RefProblem(_CONFIG_LISTS[list_name], ident, field_path, problem.message))
    for ident, entry in sorted(state.catalogue.items()):
        for field_path, message in check_catalogue_entry(
            entry, state.apis, state.policies, state.identity_providers
        ):
            problems.append(RefProblem("catalogue", ident, field_path, message))
    for record_id, idp_id in sorted(state.client_identity_providers.items()):
        if idp_id not in state.identity_providers:
            problems.append(RefProblem("oauth-clients", record_id, "identity_provider_id",
                                       f"unknown identity provider {idp_id!r}"))
    return problems


def check_change(before: State, after: State, kind: Kind, ident: str, *, deleting: bool = False) -> None:
    """Raise 422/409 for every problem that going from ``before`` to ``after`` introduces."""
    existing = set(problems_of(before))
    new = [p for p in problems_of(after, (kind.name, ident)) if p not in existing]
    if not new:
        return
    own = [Problem(p.field, p.message) for p in new if (p.kind, p.ident) == (kind.name, ident)]
    others = [Problem(f"{p.resource}.{p.field}" if p.field else p.resource, p.message)
              for p in new if (p.kind, p.ident) != (kind.name, ident)]
    if own:
        raise invalid(own + others)
    referrers = ", ".join(sorted({p.location.split(".", 1)[0] for p in others}))
    if deleting:
        raise conflict(f"{kind.singular} {ident!r} is still referenced by: {referrers}", others)
    raise conflict(f"this change would break: {referrers}", others)


def check_path_id(path_id: str, body_id: str | None) -> None:
    """422 when a PUT body names another id than its path."""
    if body_id is not None and body_id != path_id:
        raise invalid([Problem("id", f"must equal the id in the path ({path_id!r})")])


def _row(value: object) -> ResourceRow:
    assert isinstance(value, IdentityProviderRow | ApiRow | PolicyRow | CatalogueEntryRow)
    return value


async def find_row(session: AsyncSession, kind: Kind, ident: str) -> ResourceRow | None:
    """The stored row of ``kind`` named ``ident``, if any."""
    found = await session.get(kind.row, ident)
    return None if found is None else _row(found)


async def get_row(session: AsyncSession, kind: Kind, ident: str) -> ResourceRow:
    """The stored row of ``kind`` named ``ident``, or 404."""
    row = await find_row(session, kind, ident)
    if row is None:
        raise not_found(kind.singular, ident)
    return row


async def list_rows(context: DashboardContext, kind: Kind) -> list[ResourceRow]:
    """Every row of ``kind``, by id."""
    async with context.database.sessions() as session:
        found = (await session.scalars(select(kind.row).order_by(kind.row.id))).all()
    return [_row(row) for row in found]


async def read_row(context: DashboardContext, kind: Kind, ident: str) -> ResourceRow:
    """One row of ``kind`` (404 if missing)."""
    async with context.database.sessions() as session:
        return await get_row(session, kind, ident)


Prepare = Callable[[AsyncSession, ResourceRow], Mapping[str, Any]]
"""Extra work on a row about to be stored (e.g. encrypting a secret); returns audit details."""


async def save(
    context: DashboardContext,
    actor: Actor,
    kind: Kind,
    ident: str,
    spec: BaseModel,
    *,
    creating: bool,
    action: str | None = None,
    prepare: Prepare | None = None,
) -> ResourceRow:
    """Create (``creating``) or replace resource ``ident`` after validating the candidate state."""
    try:
        async with context.database.transaction() as session:
            await lock_config(session)
            row = await find_row(session, kind, ident)
            if creating and row is not None:
                raise conflict(f"{kind.singular} {ident!r} already exists")
            if not creating and row is None:
                raise not_found(kind.singular, ident)
            before = await load_state(session)
            check_change(before, before.with_document(kind, ident, spec), kind, ident)
            current = now()
            if row is None:
                row = _row(kind.row(id=ident, created_at=current))
                session.add(row)
            row.spec = spec.model_dump(mode="json")
            row.updated_at = current
            if isinstance(row, ApiRow) and isinstance(spec, Api):
                row.listen_path = listen_path_key(spec.listen_path)
            details: dict[str, Any] = {"document": _public(spec)}
            if prepare is not None:
                details.update(prepare(session, row))
            await session.flush()
            version = await record_change(
                session, actor, action or ("create" if creating else "update"), kind.name, ident,
                details, versioned=kind.versioned,
            )
    except IntegrityError as exc:
        raise conflict(f"{kind.singular} {ident!r} clashes with a stored resource (concurrent "
                       "change?); retry") from exc
    await context.config_changed(version)
    return row


async def delete(context: DashboardContext, actor: Actor, kind: Kind, ident: str) -> None:
    """Delete resource ``ident`` unless something still refers to it (409 naming the referrers)."""
    try:
        async with context.database.transaction() as session:
            await lock_config(session)
            row = await get_row(session, kind, ident)
            before = await load_state(session)
            check_change(before, before.with_document(kind, ident, None), kind, ident, deleting=True)
            await session.delete(row)
            await session.flush()
            version = await record_change(
                session, actor, "delete", kind.name, ident, {}, versioned=kind.versioned
            )
    except IntegrityError as exc:
        raise conflict(f"{kind.singular} {ident!r} is still referenced") from exc
    await context.config_changed(version)


def listen_path_key(listen_path: str) -> str:
    """The form the unique ``apis.listen_path`` column holds: ``/a/`` and ``/a`` route alike."""
    return listen_path.rstrip("/") or "/"


def _public(spec: BaseModel) -> dict[str, Any]:
    # Specs never hold secrets (write-only fields live outside them); dumped for the audit log.
    return spec.model_dump(mode="json")


def view_data(row: ResourceRow) -> dict[str, Any]:
    """The stored document plus timestamps, ready for a ``…View`` model."""
    return {**row.spec, "created_at": row.created_at, "updated_at": row.updated_at}
