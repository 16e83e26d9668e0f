"""Client secret rotation (DESIGN §5): a developer gets a new secret for one of their clients.

How depends on the IdP, and its adapter says which (``IdpAdapter.secret_rotation``):

* **In place** (Okta's ``POST …/lifecycle/newSecret`` with the API token; Curity's RFC 7592 read,
  which rotates the secret and the registration access token together): the client keeps its id.
  A rotated registration access token is stored before anything is reported: if it cannot be, the
  rotation fails (the client is then unmanageable, and the log says so).
* **By replacement** (RFC 7591/7592 have no rotation: generic, Keycloak, Gluu): a new client is
  registered with the same metadata, then, in one transaction, the record takes the new client
  (new client id, new registration access token, same policies, config version bumped so gateways
  serve it) and the old client moves to a record of its own in status ``deleting`` whose client id
  is tombstoned (gateways refuse its tokens at once). Last, the old client is deleted at the IdP
  (``dashboard.oauth_clients.finish_delete``); if that fails, its ``deleting`` record keeps what a
  retry needs (management URI, encrypted token) for an admin's ``retry-delete`` or the
  reconciler.

Saga safety of the replacement: if the transaction fails, the new client is deleted at the IdP
again and nothing changed; if that delete fails too, a ``failed`` record keeps the new client for
:func:`~propylon.portal.registration.reconcile` (and if even that cannot be written, the log names
it at ERROR level). The developer sees the new credentials once; ``NewClient.replaced`` says the
client id changed.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
from sqlalchemy.exc import SQLAlchemyError

from propylon.dashboard.changes import Actor, now, record_change
from propylon.dashboard.context import DashboardContext
from propylon.dashboard.errors import ApiError, conflict
from propylon.dashboard.oauth_clients import begin_delete, finish_delete
from propylon.dashboard.resources.store import load_state
from propylon.domain.resources import IdentityProviderSpec
from propylon.idp.protocol import ClientRequest, RegistrationError, public_metadata, writable_metadata
from propylon.idp.registration import DcrClient, RegisteredClient, StoredClient
from propylon.portal.registration import NewClient, Plan, identity_provider, own_client
from propylon.storage.secret_box import SecretKeyError
from propylon.storage.sql.schema import OAuthClientRow

log = logging.getLogger(__name__)

_CORE_FIELDS = frozenset({"client_id", "client_name", "grant_types", "redirect_uris", "response_types",
                          "token_endpoint_auth_method", "scope"})


class _Moved(Exception):
    """The record changed while the new client was being registered (a concurrent rotation or
    deletion)."""


def same_client(row: OAuthClientRow) -> ClientRequest:
    """A registration request for a client like ``row``'s, from its metadata as the IdP last
    returned it (the IdP's own defaults and vendor fields included, so the new client matches)."""
    metadata: dict[str, Any] = row.metadata_ or {}
    grants = tuple(str(grant) for grant in metadata.get("grant_types") or ()) or ("client_credentials",)
    scope = metadata.get("scope")
    method = metadata.get("token_endpoint_auth_method")
    return ClientRequest(
        client_name=str(metadata.get("client_name") or row.name),
        grant_types=grants,
        redirect_uris=tuple(str(uri) for uri in metadata.get("redirect_uris") or ()),
        token_endpoint_auth_method=method if isinstance(method, str) and method
        else "client_secret_basic",
        scope=scope if isinstance(scope, str) and scope else None,
        configured_response_types=tuple(str(value) for value in metadata.get("response_types") or ()),
        extra={key: value for key, value in writable_metadata(metadata).items()
               if key not in _CORE_FIELDS},
    )


async def _plan(context: DashboardContext, row: OAuthClientRow, spec: IdentityProviderSpec) -> Plan:
    """The client as a registration plan, for ``portal.api.credentials_for``."""
    async with context.database.sessions() as session:
        catalogue = (await load_state(session, with_clients=False)).catalogue
    entries = [catalogue[entry_id] for entry_id in row.catalogue_entry_ids or () if entry_id in catalogue]
    return Plan(spec, entries, list(row.policy_ids or ()), same_client(row))


def _rotation_error(exc: RegistrationError, record_id: str) -> ApiError:
    """What the developer sees of a failure at the IdP (the IdP's words go to ``last_error``)."""
    if exc.error == "timeout":
        return ApiError(504, "idp_timeout", "the identity provider did not answer in time; the "
                        "secret is unchanged, try again later")
    return ApiError(502, "idp_error", "the identity provider could not issue a new secret; the "
                    f"secret is unchanged, an administrator can see why (reference {record_id})")


async def _note_error(context: DashboardContext, record_id: str, error: str) -> None:
    async with context.database.transaction() as session:
        current = await session.get(OAuthClientRow, record_id)
        if current is not None:
            current.last_error = f"rotate secret: {error}"[:2000]


async def rotate_client_secret(context: DashboardContext, developer: Actor, record_id: str, *,
                               transport: httpx.AsyncBaseTransport | None = None) -> NewClient:
    """A new secret for the developer's active client ``record_id``, shown once (see the module
    docstring). ``transport`` is for tests that watch or disturb the IdP exchange."""
    row = await own_client(context, developer.id, record_id)
    if row.status != "active" or row.client_id is None:
        raise conflict(f"OAuth client {record_id!r} is {row.status}: only an active client gets a new "
                       "secret")
    if not row.registration_client_uri:
        raise conflict("this client cannot be managed at its identity provider; delete it and "
                       "register a new one")
    try:
        spec, initial_token = await identity_provider(context, row.identity_provider_id)
        token = context.secrets.decrypt(row.registration_access_token_enc) \
            if row.registration_access_token_enc else None
    except SecretKeyError as exc:
        raise ApiError(503, "idp_unavailable", "secret rotation is unavailable; an administrator "
                       f"can see why (reference {record_id})") from exc
    dcr = DcrClient(spec.kind, spec.registration_endpoint or "", initial_token, guard=context.outbound,
                    transport=transport)
    plan = await _plan(context, row, spec)
    client_id = row.client_id

    async def store_token(new_token: str) -> None:
        async with context.database.transaction() as session:
            current = await session.get(OAuthClientRow, record_id)
            if current is None:
                raise LookupError(record_id)
            current.registration_access_token_enc = context.secrets.encrypt(new_token)
            current.updated_at = now()
            await record_change(session, developer, "rotate_registration_access_token",
                                "oauth_client", record_id, {"client_id": client_id}, versioned=False)

    try:
        rotated = await dcr.rotate_secret(StoredClient(client_id, row.registration_client_uri, token),
                                          store_token=store_token)
    except RegistrationError as exc:
        await _note_error(context, record_id, f"{exc.error}: {exc.description}")
        log.warning("rotating the secret of OAuth client %s failed at its IdP: %s", record_id, exc)
        raise _rotation_error(exc, record_id) from exc
    except (SQLAlchemyError, LookupError) as exc:
        log.error("the IdP rotated the credentials of OAuth client %s (record %s) but the new "
                  "registration access token could not be stored: the client cannot be managed "
                  "until an administrator fixes it", client_id, record_id)
        raise ApiError(503, "store_failed", "the new secret could not be saved; try again") from exc
    if rotated is not None:
        async with context.database.transaction() as session:
            current = await session.get(OAuthClientRow, record_id)
            if current is not None:
                current.last_error = None
                current.updated_at = now()
            await record_change(session, developer, "rotate_secret", "oauth_client", record_id,
                                {"client_id": client_id, "replaced": False}, versioned=False)
        return NewClient(record_id, client_id, rotated.client_secret,
                         rotated.client_secret_expires_at, plan)
    return await _replace(context, developer, row, dcr, plan)


async def _replace(context: DashboardContext, developer: Actor, row: OAuthClientRow, dcr: DcrClient,
                   plan: Plan) -> NewClient:
    """Rotation by replacement: register, swap in one transaction, delete the old client."""
    try:
        registered = await dcr.register(plan.client)
    except RegistrationError as exc:
        await _note_error(context, row.id, f"registering the replacement: {exc.error}: "
                          f"{exc.description}")
        log.warning("registering a replacement for OAuth client %s failed: %s", row.id, exc)
        raise _rotation_error(exc, row.id) from exc
    old_record_id = str(uuid.uuid4())
    try:
        version = await _swap(context, developer, row, registered, old_record_id)
    except Exception as exc:  # whatever broke the swap, the new client must not be left behind
        await _compensate(context, dcr, row, registered, exc)
        if isinstance(exc, _Moved):
            raise conflict("the client changed meanwhile (another rotation or a deletion); its "
                           "secret is as that change left it") from exc
        raise ApiError(503, "store_failed", "the new secret could not be saved, so the client is "
                       "unchanged; try again") from exc
    await context.config_changed(version)
    try:
        deletion = await finish_delete(context, developer, old_record_id)
    except SQLAlchemyError:
        log.warning("deleting the replaced OAuth client %s stays for a retry (record %s)",
                    row.client_id, old_record_id, exc_info=True)
    else:
        if deletion.status == "deleting":
            log.warning("the replaced OAuth client %s is revoked but not yet deleted at its IdP "
                        "(record %s): %s", row.client_id, old_record_id, deletion.message)
    return NewClient(row.id, registered.client_id, registered.client_secret,
                     registered.client_secret_expires_at, plan, replaced=True)


async def _swap(context: DashboardContext, developer: Actor, row: OAuthClientRow,
                registered: RegisteredClient, old_record_id: str) -> int | None:
    """The record takes the new client; the old one moves to a ``deleting`` record, tombstoned."""
    token = registered.stored.registration_access_token
    async with context.database.transaction() as session:
        current = await session.get(OAuthClientRow, row.id)
        if current is None or current.status != "active" or current.client_id != row.client_id:
            raise _Moved(row.id)
        old = OAuthClientRow(
            id=old_record_id, client_id=current.client_id, developer_id=current.developer_id,
            identity_provider_id=current.identity_provider_id,
            name=f"{current.name} (replaced)"[:200], status="active",
            catalogue_entry_ids=list(current.catalogue_entry_ids or ()), policy_ids=[],
            metadata_=dict(current.metadata_ or {}),
            registration_client_uri=current.registration_client_uri,
            registration_access_token_enc=current.registration_access_token_enc,
            idempotency_key=f"replaced:{old_record_id}", last_error=None,
            created_at=current.created_at, updated_at=now(),
        )
        current.client_id = registered.client_id
        current.metadata_ = public_metadata(registered.metadata)
        current.registration_client_uri = registered.stored.registration_client_uri
        current.registration_access_token_enc = context.secrets.encrypt(token) if token else None
        current.last_error = None
        current.updated_at = now()
        await session.flush()  # frees the old client id (unique) before the old record takes it
        session.add(old)
        await session.flush()
        await begin_delete(session, developer, old)
        return await record_change(session, developer, "rotate_secret", "oauth_client", row.id, {
            "client_id": registered.client_id, "replaced_client_id": row.client_id,
            "replaced": True, "replaced_record_id": old_record_id})


async def _compensate(context: DashboardContext, dcr: DcrClient, row: OAuthClientRow,
                      registered: RegisteredClient, cause: BaseException) -> None:
    """The swap failed after the IdP registered the replacement: delete it there, else keep a
    ``failed`` record of it for the reconciler."""
    try:
        await dcr.delete(registered.stored)
    except RegistrationError as exc:
        error = (f"a secret rotation's store failed ({type(cause).__name__}) and deleting the "
                 f"replacement at the IdP failed too ({exc.error}: {exc.description}); awaiting "
                 "reconciliation")
        token = registered.stored.registration_access_token
        orphan_id = str(uuid.uuid4())
        try:
            async with context.database.transaction() as session:
                session.add(OAuthClientRow(
                    id=orphan_id, client_id=registered.client_id, developer_id=row.developer_id,
                    identity_provider_id=row.identity_provider_id,
                    name=f"{row.name} (unused replacement)"[:200], status="failed",
                    catalogue_entry_ids=list(row.catalogue_entry_ids or ()), policy_ids=[],
                    metadata_=public_metadata(registered.metadata),
                    registration_client_uri=registered.stored.registration_client_uri,
                    registration_access_token_enc=context.secrets.encrypt(token) if token else None,
                    idempotency_key=f"orphan:{orphan_id}", last_error=error, created_at=now(),
                    updated_at=now(),
                ))
        except SQLAlchemyError:
            # The database refuses even this: the log is the journal of last resort.
            log.error("ORPHANED OAuth client %s at %s (replacement for record %s): stored nowhere, "
                      "delete it at the IdP", registered.client_id,
                      registered.stored.registration_client_uri, row.id)
        else:
            log.warning("unused replacement client %s kept as failed record %s for reconciliation",
                        registered.client_id, orphan_id)
        return
    log.warning("storing the replacement of OAuth client %s failed (%s); deleted it at the IdP "
                "again", row.id, type(cause).__name__)
