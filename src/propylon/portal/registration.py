"""The registration saga of OAuth clients (DESIGN §5), and the developer's update and deletion.

:func:`register_client` runs in three steps, each committed before the next starts:

1. **Validate** the request against the catalogue and the portal settings (every problem at once,
   422) and write a ``pending`` record carrying the idempotency key (scoped to the developer).
2. **Register** the client at the catalogue entries' identity provider (RFC 7591, with the IdP's
   adapter and its decrypted initial access token). A refusal leaves the record ``failed`` with
   the IdP's error in ``last_error`` (admins read it); the developer gets a generic message.
3. **Store** the client id, its metadata (secrets removed), its management URI and encrypted
   registration access token and the entries' policies, status ``active``, with a config-version
   bump so gateways serve it. The client secret is returned once and never stored.

If step 3 fails after the IdP registered the client, the client is deleted at the IdP (RFC 7592);
if that fails too, the record stays ``failed`` with what is needed to delete it later (management
URI, encrypted token), and :func:`reconcile` deletes it once it is older than a threshold. If even
that record cannot be written, the client id and management URI are logged at ERROR level: nothing
is orphaned silently. A retry with the same idempotency key never registers twice: an ``active``
record is :class:`AlreadyRegistered`, a ``pending`` one is "in progress"; only a ``failed`` record
the IdP never accepted is tried again.

Known limit: when the IdP's answer is lost (timeout), the IdP may have created a client whose id is
unknown here; the record is ``failed`` with ``last_error`` ``timeout`` for an admin to check.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from propylon.dashboard.changes import SYSTEM, Actor, now, record_change
from propylon.dashboard.context import DashboardContext
from propylon.dashboard.errors import ApiError, Problem, conflict, invalid, not_found
from propylon.dashboard.oauth_clients import ClientDeletion, begin_delete, finish_delete, idp_management
from propylon.dashboard.resources.portal_settings import load_portal_settings
from propylon.dashboard.resources.store import load_state
from propylon.domain.resources import CatalogueEntrySpec, IdentityProviderSpec, effective_identity_provider
from propylon.idp.client_management import delete_client as idp_delete
from propylon.idp.protocol import REDIRECT_GRANTS, ClientRequest, RegistrationError, public_metadata
from propylon.idp.registration import DcrClient, RegisteredClient, StoredClient
from propylon.storage.secret_box import SecretKeyError
from propylon.storage.sql.schema import IdentityProviderRow, OAuthClientRow

log = logging.getLogger(__name__)

Text = Annotated[str, Field(max_length=2000, pattern=r"^[^\x00-\x1f\x7f]*$")]
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class RegistrationRequest(BaseModel):
    """What a developer asks for (the wizard's answers)."""

    catalogue_entry_ids: list[Annotated[str, Field(max_length=128)]] = Field(
        min_length=1, max_length=20, description="The catalogue entries (APIs) the client is for.")
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$",
                      description="The client's name.")
    redirect_uris: list[Text] = Field(default_factory=list, max_length=20,
                                      description="Redirect URIs (https, or http on loopback).")
    grant_type: str | None = Field(default=None, max_length=100, description="One of the entries' "
                                   "grant types; default: all of them.")


@dataclass(frozen=True)
class Plan:
    """A validated registration: where, what, and which policies the client gets."""

    identity_provider: IdentityProviderSpec
    entries: list[CatalogueEntrySpec]
    policy_ids: list[str]
    client: ClientRequest


@dataclass(frozen=True)
class NewClient:
    """A registered client, with its secret (shown once)."""

    record_id: str
    client_id: str
    client_secret: str | None
    client_secret_expires_at: int
    plan: Plan
    replaced: bool = False
    """Secret rotation only: the IdP cannot rotate secrets, so a new client (``client_id``)
    replaced the old one, which is revoked (``portal.rotation``)."""


class AlreadyRegistered(Exception):
    """The idempotency key already registered a client (``record_id``); its secret is gone."""

    def __init__(self, record_id: str) -> None:
        super().__init__(f"already registered as {record_id}")
        self.record_id = record_id


def redirect_uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be a redirect URI: https (http on loopback only), absolute, no fragment
    (RFC 6749 §3.1.2), no credentials."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute https URL"
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        return "must use https (http only for localhost)"
    if parts.fragment or uri.endswith("#"):
        return "must not contain a fragment"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    return None


def _redirect_problems(uris: list[str], required: bool, why: str) -> list[Problem]:
    problems = []
    if required and not uris:
        problems.append(Problem("redirect_uris", f"at least one redirect URI is required ({why})"))
    for index, uri in enumerate(uris):
        problem = redirect_uri_problem(uri)
        if problem is None and uri in uris[:index]:
            problem = "is listed twice"
        if problem is not None:
            problems.append(Problem(f"redirect_uris.{index}", f"{uri[:200]!r} {problem}"))
    return problems


async def plan_registration(context: DashboardContext, request: RegistrationRequest) -> Plan:
    """Validate ``request`` against the catalogue and portal settings: a :class:`Plan`, or a 422
    listing every problem."""
    async with context.database.sessions() as session:
        state = await load_state(session, with_clients=False)
    settings = await load_portal_settings(context)
    problems: list[Problem] = []
    entries: list[CatalogueEntrySpec] = []
    idp_ids: list[str] = []
    for index, entry_id in enumerate(request.catalogue_entry_ids):
        where = f"catalogue_entry_ids.{index}"
        entry = state.catalogue.get(entry_id)
        if entry is None or not entry.published:
            problems.append(Problem(where, f"no published catalogue entry {entry_id!r}"))
            continue
        if entry in entries:
            problems.append(Problem(where, f"catalogue entry {entry_id!r} is listed twice"))
            continue
        entries.append(entry)
        if not (settings.dcr_enabled if entry.dcr_enabled is None else entry.dcr_enabled):
            problems.append(Problem(where, f"catalogue entry {entry_id!r} does not offer client "
                                    "registration"))
        idp_id = effective_identity_provider(entry, state.apis)
        if idp_id is None:
            problems.append(Problem(where, f"catalogue entry {entry_id!r} has no identity provider "
                                    "to register clients at"))
        elif idp_id not in idp_ids:
            idp_ids.append(idp_id)
    if len(idp_ids) > 1:
        problems.append(Problem("catalogue_entry_ids", "the entries register clients at different "
                                "identity providers; choose entries of one"))
    idp = state.identity_providers.get(idp_ids[0]) if len(idp_ids) == 1 else None
    if len(idp_ids) == 1 and (idp is None or not idp.registration_endpoint):
        problems.append(Problem("catalogue_entry_ids", "the identity provider of these entries is not "
                                "set up for client registration; contact the administrator"))
    allowed: list[str] = []
    for position, entry in enumerate(entries):
        own: list[str] = list(entry.grant_types or settings.grant_types)
        allowed = own if position == 0 else [grant for grant in allowed if grant in own]
    grant_types = tuple(allowed)
    if request.grant_type is not None:
        if entries and request.grant_type not in allowed:
            problems.append(Problem("grant_type", f"must be one of: {', '.join(allowed) or 'none'}"))
        grant_types = (request.grant_type,)
    elif entries and not allowed:
        problems.append(Problem("catalogue_entry_ids", "the entries have no grant type in common"))
    redirect_grants = [grant for grant in grant_types if grant in REDIRECT_GRANTS]
    required = any(entry.redirect_uris_required for entry in entries) or bool(redirect_grants)
    problems += _redirect_problems(request.redirect_uris, required,
                                   "the grant type or the catalogue entry needs one")
    if problems or idp is None:
        raise invalid(problems or [Problem("catalogue_entry_ids", "no identity provider")],
                      "the registration request is invalid")
    scopes: list[str] = []
    for entry in entries:
        for token in (entry.scope or settings.scope or "").split():
            if token not in scopes:
                scopes.append(token)
    # Each entry's response types (else the portal's); the grant types chosen narrow them.
    response_types = tuple(dict.fromkeys(
        value for entry in entries
        for value in (entry.response_types if entry.response_types is not None
                      else settings.response_types)))
    client = ClientRequest(
        client_name=request.name, grant_types=grant_types, redirect_uris=tuple(request.redirect_uris),
        token_endpoint_auth_method=entries[0].token_endpoint_auth_method
        or settings.token_endpoint_auth_method,
        scope=" ".join(scopes) or None, configured_response_types=response_types,
    )
    policy_ids = list(dict.fromkeys(entry.policy_id for entry in entries))
    return Plan(idp, entries, policy_ids, client)


def scoped_key(developer_id: str, idempotency_key: str) -> str:
    """The stored idempotency key: per developer, so one developer's key never meets another's."""
    return hashlib.sha256(f"{developer_id}\x00{idempotency_key}".encode()).hexdigest()


async def _by_key(context: DashboardContext, key: str) -> OAuthClientRow | None:
    async with context.database.sessions() as session:
        found: OAuthClientRow | None = await session.scalar(
            select(OAuthClientRow).where(OAuthClientRow.idempotency_key == key))
        return found


def _replay(row: OAuthClientRow) -> Exception:
    """What a retry with the key of ``row`` gets."""
    if row.status == "active":
        return AlreadyRegistered(row.id)
    if row.status == "pending":
        return ApiError(409, "in_progress", "a registration with this Idempotency-Key is in progress; "
                        "try again in a moment")
    return conflict("a registration with this Idempotency-Key failed and is being cleaned up; use "
                    "a new Idempotency-Key")


def developer_error(exc: RegistrationError, record_id: str) -> ApiError:
    """What the developer sees of a failure at the IdP: clear, without the IdP's own words."""
    if exc.redirect_uri_refused:
        return invalid([Problem("redirect_uris", "the identity provider refused these redirect URIs")],
                       "the identity provider refused the registration")
    if exc.error == "timeout":
        return ApiError(504, "idp_timeout", "the identity provider did not answer in time; try "
                        "again later")
    return ApiError(502, "idp_error", "the identity provider could not register the client; an "
                    f"administrator can see why (reference {record_id})")


async def _mark_failed(context: DashboardContext, record_id: str, error: str) -> None:
    async with context.database.transaction() as session:
        row = await session.get(OAuthClientRow, record_id)
        if row is not None:
            row.status = "failed"
            row.last_error = error[:2000]
            row.updated_at = now()


async def _start(context: DashboardContext, actor: Actor, request: RegistrationRequest, plan: Plan,
                 key: str, existing: OAuthClientRow | None) -> str:
    """Step 1: the pending record (a new one, or the failed one of an earlier attempt)."""
    record_id = existing.id if existing is not None else str(uuid.uuid4())
    try:
        async with context.database.transaction() as session:
            if existing is None:
                session.add(OAuthClientRow(
                    id=record_id, client_id=None, developer_id=actor.id,
                    identity_provider_id=plan.identity_provider.id, name=request.name,
                    status="pending", catalogue_entry_ids=[entry.id for entry in plan.entries],
                    policy_ids=plan.policy_ids, metadata_={}, registration_client_uri=None,
                    registration_access_token_enc=None, idempotency_key=key, last_error=None,
                    created_at=now(), updated_at=now(),
                ))
                await session.flush()
            else:
                # Conditional: of two concurrent retries only one takes the failed record over.
                taken = await session.execute(
                    update(OAuthClientRow)
                    .where(OAuthClientRow.id == record_id, OAuthClientRow.status == "failed",
                           OAuthClientRow.client_id.is_(None))
                    .values(status="pending", name=request.name, updated_at=now(),
                            identity_provider_id=plan.identity_provider.id,
                            catalogue_entry_ids=[entry.id for entry in plan.entries],
                            policy_ids=plan.policy_ids)
                )
                if getattr(taken, "rowcount", 0) != 1:
                    raise IntegrityError("retry", None, ValueError("taken over"))
            await record_change(session, actor, "register_started", "oauth_client", record_id,
                                {"catalogue_entry_ids": [entry.id for entry in plan.entries]},
                                versioned=False)
    except IntegrityError as exc:
        current = await _by_key(context, key)
        if current is None:
            raise ApiError(409, "in_progress", "a registration with this Idempotency-Key is in "
                           "progress; try again in a moment") from exc
        raise _replay(current) from exc
    return record_id


async def _store(context: DashboardContext, actor: Actor, record_id: str,
                 registered: RegisteredClient, plan: Plan) -> int | None:
    """Step 3: the registered client, active and in the gateways' configuration."""
    token = registered.stored.registration_access_token
    async with context.database.transaction() as session:
        row = await session.get(OAuthClientRow, record_id)
        if row is None or row.status != "pending":
            raise LookupError(f"the pending record {record_id} is gone")
        row.client_id = registered.client_id
        row.metadata_ = public_metadata(registered.metadata)
        row.registration_client_uri = registered.stored.registration_client_uri
        row.registration_access_token_enc = context.secrets.encrypt(token) if token else None
        row.policy_ids = plan.policy_ids
        row.status = "active"
        row.last_error = None
        row.updated_at = now()
        await session.flush()
        return await record_change(session, actor, "register", "oauth_client", record_id, {
            "client_id": registered.client_id, "policy_ids": plan.policy_ids,
            "catalogue_entry_ids": [entry.id for entry in plan.entries]})


async def _compensate(context: DashboardContext, dcr: DcrClient, record_id: str,
                      registered: RegisteredClient, cause: BaseException) -> None:
    """The store failed after the IdP registered the client: delete it there, else journal it."""
    try:
        await dcr.delete(registered.stored)
    except RegistrationError as exc:
        error = (f"storing the registration failed ({type(cause).__name__}) and deleting the client "
                 f"at the IdP failed too ({exc.error}: {exc.description}); awaiting reconciliation")
        token = registered.stored.registration_access_token
        try:
            async with context.database.transaction() as session:
                row = await session.get(OAuthClientRow, record_id)
                if row is None:
                    raise LookupError(record_id) from None
                row.status, row.client_id, row.last_error = "failed", registered.client_id, error
                row.registration_client_uri = registered.stored.registration_client_uri
                row.registration_access_token_enc = context.secrets.encrypt(token) if token else None
                row.updated_at = now()
        except (SQLAlchemyError, LookupError):
            # The database refuses even this: the log is the journal of last resort.
            log.error("ORPHANED OAuth client %s at %s (record %s): stored nowhere, delete it at the "
                      "IdP", registered.client_id, registered.stored.registration_client_uri, record_id)
        else:
            log.warning("OAuth client %s (record %s) kept as failed for reconciliation: %s",
                        registered.client_id, record_id, error)
        return
    log.warning("storing OAuth client %s (record %s) failed (%s); deleted at the IdP again",
                registered.client_id, record_id, type(cause).__name__)
    try:
        async with context.database.transaction() as session:
            await session.execute(delete(OAuthClientRow).where(OAuthClientRow.id == record_id))
    except SQLAlchemyError:
        log.warning("the pending record %s stays for the reconciler", record_id)


async def identity_provider(context: DashboardContext,
                            idp_id: str) -> tuple[IdentityProviderSpec, str | None]:
    """The identity provider ``idp_id`` and its decrypted initial access token (409 ``idp_gone``
    when it no longer exists; ``SecretKeyError`` when the token cannot be decrypted)."""
    async with context.database.sessions() as session:
        row = await session.get(IdentityProviderRow, idp_id)
    if row is None:
        raise ApiError(409, "idp_gone", "the identity provider of this client no longer exists")
    spec = IdentityProviderSpec.model_validate(row.spec)
    token = context.secrets.decrypt(row.initial_access_token_enc) if row.initial_access_token_enc else None
    return spec, token


async def register_client(context: DashboardContext, developer: Actor, request: RegistrationRequest,
                          idempotency_key: str, *,
                          transport: httpx.AsyncBaseTransport | None = None) -> NewClient:
    """Run the saga for ``developer`` (an ``Actor`` of kind ``developer`` whose ``id`` is the
    developer's). ``transport`` is for tests that watch or disturb the IdP exchange."""
    key = scoped_key(developer.id, idempotency_key)
    existing = await _by_key(context, key)
    if existing is not None and (existing.status != "failed" or existing.client_id is not None):
        raise _replay(existing)
    plan = await plan_registration(context, request)
    record_id = await _start(context, developer, request, plan, key, existing)
    try:
        _, initial_token = await identity_provider(context, plan.identity_provider.id)
    except SecretKeyError as exc:
        await _mark_failed(context, record_id, "undecryptable: the initial access token cannot be "
                           "decrypted with the configured secret key(s)")
        raise ApiError(503, "idp_unavailable", "client registration is unavailable; an "
                       f"administrator can see why (reference {record_id})") from exc
    assert plan.identity_provider.registration_endpoint is not None  # checked by the plan
    dcr = DcrClient(plan.identity_provider.kind, plan.identity_provider.registration_endpoint,
                    initial_token, guard=context.outbound, transport=transport)
    try:
        registered = await dcr.register(plan.client)
    except RegistrationError as exc:
        await _mark_failed(context, record_id, f"{exc.error}: {exc.description}")
        log.warning("registration %s refused by IdP %s: %s", record_id, plan.identity_provider.id, exc)
        raise developer_error(exc, record_id) from exc
    try:
        version = await _store(context, developer, record_id, registered, plan)
    except Exception as exc:  # whatever broke the store, the IdP's client must not be left behind
        await _compensate(context, dcr, record_id, registered, exc)
        raise ApiError(503, "store_failed", "the client could not be saved, so it was not kept; try "
                       "again") from exc
    await context.config_changed(version)
    return NewClient(record_id, registered.client_id, registered.client_secret,
                     registered.client_secret_expires_at, plan)


async def own_client(context: DashboardContext, developer_id: str, record_id: str) -> OAuthClientRow:
    """The developer's client ``record_id``; 404 for anyone else's (no hint that it exists)."""
    async with context.database.sessions() as session:
        row = await session.get(OAuthClientRow, record_id)
    if row is None or row.developer_id != developer_id:
        raise not_found("OAuth client", record_id)
    return row


async def update_client(context: DashboardContext, developer: Actor, record_id: str, *,
                        name: str | None = None, redirect_uris: list[str] | None = None,
                        transport: httpx.AsyncBaseTransport | None = None) -> OAuthClientRow:
    """Rename the client or replace its redirect URIs, at the IdP (RFC 7592) and here. A rotated
    registration access token is stored before anything is reported."""
    row = await own_client(context, developer.id, record_id)
    if row.status != "active" or row.client_id is None:
        raise conflict(f"OAuth client {record_id!r} is {row.status}: only active clients can change")
    grants = row.metadata_.get("grant_types") or []
    if redirect_uris is not None:
        problems = _redirect_problems(redirect_uris, any(g in REDIRECT_GRANTS for g in grants),
                                      "the client's grant type needs one")
        if problems:
            raise invalid(problems)
    changes: dict[str, Any] = {}
    if name is not None:
        changes["client_name"] = name
    if redirect_uris is not None:
        changes["redirect_uris"] = redirect_uris
    if not changes:
        return row
    try:
        spec, initial_token = await identity_provider(context, row.identity_provider_id)
        token = context.secrets.decrypt(row.registration_access_token_enc) \
            if row.registration_access_token_enc else None
    except SecretKeyError as exc:
        raise ApiError(503, "idp_unavailable", "client management is unavailable; an administrator "
                       f"can see why (reference {record_id})") from exc
    dcr = DcrClient(spec.kind, spec.registration_endpoint or "", initial_token, guard=context.outbound,
                    transport=transport)

    async def store_token(new_token: str) -> None:
        async with context.database.transaction() as session:
            current = await session.get(OAuthClientRow, record_id)
            if current is None:
                raise LookupError(record_id)
            current.registration_access_token_enc = context.secrets.encrypt(new_token)
            current.updated_at = now()
            await record_change(session, developer, "rotate_registration_access_token",
                                "oauth_client", record_id, {"client_id": row.client_id},
                                versioned=False)

    try:
        updated = await dcr.update(StoredClient(row.client_id, row.registration_client_uri, token),
                                   changes, store_token=store_token)
    except RegistrationError as exc:
        async with context.database.transaction() as session:
            current = await session.get(OAuthClientRow, record_id)
            if current is not None:
                current.last_error = f"update: {exc.error}: {exc.description}"[:2000]
        raise developer_error(exc, record_id) from exc
    except (SQLAlchemyError, LookupError) as exc:
        raise ApiError(503, "store_failed", "the change could not be saved; try again") from exc
    async with context.database.transaction() as session:
        current = await session.get(OAuthClientRow, record_id)
        if current is None:
            raise not_found("OAuth client", record_id)
        current.metadata_ = updated.metadata
        current.name = name if name is not None else current.name
        current.last_error = None
        current.updated_at = now()
        await record_change(session, developer, "update", "oauth_client", record_id,
                            {"client_id": row.client_id, "changed": sorted(changes)}, versioned=False)
        await session.flush()
        return current


async def delete_client(context: DashboardContext, developer: Actor, record_id: str) -> ClientDeletion:
    """The dashboard's two-step deletion: tombstone (gateways refuse its tokens at once), then
    RFC 7592 delete at the IdP (``dashboard.oauth_clients``)."""
    row = await own_client(context, developer.id, record_id)
    if row.status == "pending":
        raise ApiError(409, "in_progress", "this client's registration is still in progress")
    if row.status != "deleting":
        async with context.database.transaction() as session:
            current = await session.get(OAuthClientRow, record_id)
            if current is None:
                raise not_found("OAuth client", record_id)
            version = await begin_delete(session, developer, current)
        await context.config_changed(version)
    return await finish_delete(context, developer, record_id)


@dataclass(frozen=True)
class Reconciled:
    """What :func:`reconcile` did with one stale record."""

    record_id: str
    client_id: str | None
    outcome: str
    """``removed`` (nothing at the IdP), ``deleted`` / ``already_gone`` (at the IdP, then here),
    or ``kept`` (the IdP delete failed: ``error`` says why; tried again next time)."""
    error: str | None = None


async def reconcile(context: DashboardContext, older_than: timedelta, *,
                    transport: httpx.AsyncBaseTransport | None = None) -> list[Reconciled]:
    """Finish the sagas that stopped half-way: ``pending`` and ``failed`` records not touched for
    ``older_than`` are deleted at the IdP (when they know a client there) and removed."""
    cutoff = now() - older_than
    async with context.database.sessions() as session:
        rows = list((await session.scalars(select(OAuthClientRow).where(
            OAuthClientRow.status.in_(("pending", "failed")), OAuthClientRow.updated_at < cutoff,
        ).order_by(OAuthClientRow.created_at))).all())
    done: list[Reconciled] = []
    for row in rows:
        outcome = "removed"
        if row.registration_client_uri:
            try:
                adapter, initial_token = await idp_management(context, row.identity_provider_id)
                token = context.secrets.decrypt(row.registration_access_token_enc) \
                    if row.registration_access_token_enc else None
                outcome = (await idp_delete(row.registration_client_uri, token, adapter=adapter,
                                            initial_access_token=initial_token,
                                            guard=context.outbound, transport=transport)).value
            except (RegistrationError, SecretKeyError) as exc:
                error = f"{exc.error}: {exc.description}" if isinstance(exc, RegistrationError) \
                    else "undecryptable: a stored token cannot be decrypted"
                async with context.database.transaction() as session:
                    await session.execute(update(OAuthClientRow).where(OAuthClientRow.id == row.id)
                                          .values(last_error=f"reconcile: {error}"[:2000]))
                done.append(Reconciled(row.id, row.client_id, "kept", error))
                continue
        async with context.database.transaction() as session:
            # Only in the status it was read in: a retry may have taken it over meanwhile.
            await session.execute(delete(OAuthClientRow).where(
                OAuthClientRow.id == row.id, OAuthClientRow.status == row.status))
            await record_change(session, SYSTEM, "reconciled", "oauth_client", row.id,
                                {"client_id": row.client_id, "outcome": outcome}, versioned=False)
        done.append(Reconciled(row.id, row.client_id, outcome))
    return done
