"""``/api/v1/identity-providers``: the OpenID providers APIs trust and the portal registers clients at.

Besides CRUD, ``POST …/{id}/discover`` fills the endpoints from the provider's discovery document,
and ``POST …/{id}/test`` checks discovery, JWKS and the registration endpoint, answering 200 with a
pass/fail per check. The initial access token is write-only: it is encrypted with the context's
:class:`~propylon.storage.secret_box.SecretBox` before it reaches the database, and no response,
audit entry or log line carries it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from propylon.dashboard import discovery
from propylon.dashboard.admin_auth import AdminActor
from propylon.dashboard.context import DashboardContext
from propylon.dashboard.errors import ApiError
from propylon.dashboard.resources.deps import Context, ErrorBody, IdPath
from propylon.dashboard.resources.store import (
    IDENTITY_PROVIDERS,
    Prepare,
    ResourceRow,
    check_path_id,
    delete,
    list_rows,
    read_row,
    save,
    view_data,
)
from propylon.domain.resources import (
    IdentityProviderInput,
    IdentityProviderSpec,
    IdentityProviderUpdate,
    IdentityProviderView,
    Unset,
    secret_change,
)
from propylon.outbound.guard import OutboundGuard
from propylon.storage.secret_box import SecretKeyError
from propylon.storage.sql.schema import IdentityProviderRow

router = APIRouter(prefix="/identity-providers", tags=["identity providers"])


class FieldChange(BaseModel):
    """A field that discovery changed."""

    old: str | None
    new: str | None


class DiscoverResult(BaseModel):
    """The identity provider after discovery, and what changed."""

    identity_provider: IdentityProviderView
    changed: dict[str, FieldChange] = Field(description="Field name → old and new value.")


class CheckRequest(BaseModel):
    """Options of a connection test."""

    dry_run_registration: bool = Field(
        default=False, description="Also register a throwaway client with the initial access token "
        "and delete it again (RFC 7591/7592).",
    )


class Check(BaseModel):
    """One check of a connection test."""

    name: str
    passed: bool
    message: str


class CheckReport(BaseModel):
    """A connection test: ``ok`` when every check passed."""

    ok: bool
    checks: list[Check]


def _view(row: ResourceRow) -> IdentityProviderView:
    assert isinstance(row, IdentityProviderRow)
    return IdentityProviderView.model_validate(
        {**view_data(row), "has_initial_access_token": row.initial_access_token_enc is not None}
    )


def _token_writer(context: DashboardContext, change: str | Unset | None) -> Prepare:
    """A :data:`~store.Prepare` that stores (encrypted), keeps or removes the initial access token."""

    def prepare(_session: AsyncSession, row: ResourceRow) -> Mapping[str, Any]:
        assert isinstance(row, IdentityProviderRow)
        if change is Unset.KEEP:
            state = "set" if row.initial_access_token_enc else "absent"
            return {"initial_access_token": f"unchanged ({state})"}
        if change is None:
            row.initial_access_token_enc = None
            return {"initial_access_token": "removed"}
        row.initial_access_token_enc = context.secrets.encrypt(change)
        return {"initial_access_token": "set"}

    return prepare


@router.get("", summary="List identity providers")
async def list_identity_providers(context: Context, _actor: AdminActor) -> list[IdentityProviderView]:
    """Every identity provider, by id."""
    return [_view(row) for row in await list_rows(context, IDENTITY_PROVIDERS)]


@router.post("", status_code=201, summary="Create an identity provider")
async def create_identity_provider(
    body: IdentityProviderInput, context: Context, actor: AdminActor
) -> IdentityProviderView:
    """Store a new identity provider (409 if the id exists)."""
    token = body.initial_access_token.get_secret_value() if body.initial_access_token else None
    row = await save(context, actor, IDENTITY_PROVIDERS, body.id, body.spec(), creating=True,
                     prepare=_token_writer(context, token))
    return _view(row)


@router.get("/{ident}", summary="Get an identity provider")
async def get_identity_provider(ident: IdPath, context: Context, _actor: AdminActor) -> IdentityProviderView:
    """One identity provider."""
    return _view(await read_row(context, IDENTITY_PROVIDERS, ident))


@router.put("/{ident}", summary="Replace an identity provider")
async def replace_identity_provider(
    ident: IdPath, body: IdentityProviderUpdate, context: Context, actor: AdminActor
) -> IdentityProviderView:
    """Replace the whole document; an omitted ``initial_access_token`` keeps the stored one."""
    check_path_id(ident, body.id)
    spec = IdentityProviderSpec.model_validate(
        {**body.model_dump(exclude={"initial_access_token"}), "id": ident}
    )
    change = secret_change(body, "initial_access_token")
    row = await save(context, actor, IDENTITY_PROVIDERS, ident, spec, creating=False,
                     prepare=_token_writer(context, change))
    return _view(row)


@router.delete("/{ident}", status_code=204, summary="Delete an identity provider")
async def delete_identity_provider(ident: IdPath, context: Context, actor: AdminActor) -> None:
    """Delete it unless an API, catalogue entry or OAuth client still uses it (409)."""
    await delete(context, actor, IDENTITY_PROVIDERS, ident)


def _bad_gateway(exc: discovery.OutboundError) -> ApiError:
    # A refused address is the admin's configuration to fix, not the IdP's failure.
    return ApiError(422 if exc.code == "address_refused" else 502, exc.code, exc.message)


@router.post(
    "/{ident}/discover", summary="Fill endpoints from OpenID discovery",
    responses={502: {"model": ErrorBody, "description": "The IdP is unreachable (`idp_unreachable`), "
                     "answered badly (`idp_bad_response`) or names another issuer (`issuer_mismatch`)."},
               422: {"model": ErrorBody, "description": "The discovery URL's host is an address the "
                     "SSRF guard refuses (`address_refused`: loopback, private... not allowed by "
                     "PROPYLON_OUTBOUND_ALLOWED_NETWORKS)."}},
)
async def discover_identity_provider(ident: IdPath, context: Context, actor: AdminActor) -> DiscoverResult:
    """Fetch the discovery document, check its issuer, and store the endpoints it lists."""
    stored = _view(await read_row(context, IDENTITY_PROVIDERS, ident))
    try:
        found = await discovery.discover(stored.discovery_url, stored.issuer, context.outbound)
    except discovery.OutboundError as exc:
        raise _bad_gateway(exc) from exc
    current = IdentityProviderSpec.model_validate(stored.model_dump(
        exclude={"has_initial_access_token", "created_at", "updated_at"}
    ))
    try:
        updated = IdentityProviderSpec.model_validate({**current.model_dump(), **found.endpoints})
    except ValidationError as exc:
        bad = ", ".join(".".join(map(str, err["loc"])) for err in exc.errors())
        raise ApiError(502, "idp_bad_response", f"the discovery document has invalid values: {bad}") from exc
    changed = {
        name: FieldChange(old=getattr(current, name), new=getattr(updated, name))
        for name in discovery.DISCOVERED_FIELDS if getattr(current, name) != getattr(updated, name)
    }
    if not changed:
        return DiscoverResult(identity_provider=stored, changed={})
    row = await save(context, actor, IDENTITY_PROVIDERS, ident, updated, creating=False,
                     action="discover", prepare=_token_writer(context, Unset.KEEP))
    return DiscoverResult(identity_provider=_view(row), changed=changed)


@router.post("/{ident}/test", summary="Test the connection to an identity provider")
async def check_identity_provider(
    ident: IdPath, context: Context, _actor: AdminActor, body: CheckRequest | None = None
) -> CheckReport:
    """Check discovery, the JWKS (at least one usable asymmetric key), the registration endpoint and,
    on request, a real registration. Answers 200 whatever the outcome; each check says why it
    failed."""
    idp = _view(await read_row(context, IDENTITY_PROVIDERS, ident))
    checks: list[Check] = []
    endpoints: dict[str, str] = {}
    try:
        found = await discovery.discover(idp.discovery_url, idp.issuer, context.outbound)
    except discovery.OutboundError as exc:
        checks.append(Check(name="discovery", passed=False, message=f"{exc.code}: {exc.message}"))
    else:
        endpoints = found.endpoints
        checks.append(Check(name="discovery", passed=True,
                            message=f"{idp.discovery_url} names issuer {found.issuer!r}"))
    checks.append(await _check_jwks(idp.jwks_uri or endpoints.get("jwks_uri"), idp.algorithms,
                                    context.outbound))
    registration = idp.registration_endpoint or endpoints.get("registration_endpoint")
    checks.append(Check(
        name="registration_endpoint", passed=registration is not None,
        message=f"clients are registered at {registration}" if registration else
        "no registration endpoint is configured or discovered: dynamic client registration "
        "is not possible",
    ))
    if body is not None and body.dry_run_registration:
        checks.append(await _dry_run(context, ident, idp, registration))
    return CheckReport(ok=all(check.passed for check in checks), checks=checks)


async def _dry_run(
    context: DashboardContext, ident: str, idp: IdentityProviderView, registration: str | None
) -> Check:
    name = "dry_run_registration"
    if registration is None:
        return Check(name=name, passed=False, message="skipped: no registration endpoint")
    row = await read_row(context, IDENTITY_PROVIDERS, ident)
    assert isinstance(row, IdentityProviderRow)
    token = None
    if row.initial_access_token_enc is not None:
        try:
            token = context.secrets.decrypt(row.initial_access_token_enc)
        except SecretKeyError:
            return Check(name=name, passed=False, message="the stored initial access token cannot be "
                         "decrypted with the configured secret key(s)")
    outcome = await discovery.dry_run_registration(registration, token, idp.kind, context.outbound)
    return Check(name=name, passed=outcome.passed, message=outcome.message)


async def _check_jwks(jwks_uri: str | None, algorithms: tuple[str, ...], guard: OutboundGuard) -> Check:
    if jwks_uri is None:
        return Check(name="jwks", passed=False, message="no jwks_uri is configured or discovered")
    try:
        document = await discovery.fetch_json(jwks_uri, "the JWKS", guard)
    except discovery.OutboundError as exc:
        return Check(name="jwks", passed=False, message=f"{exc.code}: {exc.message}")
    usable, skipped = discovery.usable_keys(document, algorithms)
    if not usable:
        reasons = "; ".join(skipped) or "the key set is empty"
        return Check(name="jwks", passed=False, message=f"no usable signing key at {jwks_uri}: {reasons}")
    return Check(name="jwks", passed=True,
                 message=f"{len(usable)} usable signing key(s) at {jwks_uri}: {', '.join(usable)}")
