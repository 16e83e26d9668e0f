"""``POST /api/v1/import/tyk``: Tyk Classic API definitions and policies into the database.

The translation is the one ``propylon import-tyk`` uses for a config file (``tyk/translate.py``);
this module adds what a database import needs: merging into what is stored (an identity provider
already set up for registration keeps its endpoints and token, only its token-checking fields are
updated), validating the whole result at once, and idempotence — importing the same files again
changes nothing, bumps no version and reports every resource as unchanged.

A Tyk Dashboard configuration (``tyk_analytics.conf``) among the documents sets the portal
settings' ``oauth_redirect_uri_separator`` (merged into the stored settings, reported as
``portal-settings``); a separator the portal could not split with refuses the whole import.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from propylon.dashboard.admin_auth import AdminActor
from propylon.dashboard.changes import now, record_change
from propylon.dashboard.errors import Problem, conflict, invalid, problems_from_validation
from propylon.dashboard.resources.deps import Context
from propylon.dashboard.resources.portal_settings import stored_portal_settings, write_portal_settings
from propylon.dashboard.resources.store import (
    APIS,
    IDENTITY_PROVIDERS,
    POLICIES,
    Kind,
    find_row,
    listen_path_key,
    load_state,
    lock_config,
    problems_of,
)
from propylon.domain.config import Api, ConfigError, IdentityProvider, parse_config
from propylon.domain.resources import IdentityProviderSpec, PolicySpec, PortalSettings
from propylon.storage.sql.schema import ApiRow
from propylon.tyk.files import TykDocuments, classify_documents
from propylon.tyk.translate import translate

router = APIRouter(prefix="/api/v1/import", tags=["import"])

# The identity-provider fields a Tyk definition determines; the rest (kind, endpoints, name) is
# the dashboard's own and survives a re-import.
_GATEWAY_IDP_FIELDS = frozenset(IdentityProvider.model_fields)
_PORTAL_SETTINGS = "portal-settings"


class TykImportRequest(BaseModel):
    """Tyk Classic documents, each the decoded content of one exported JSON file."""

    model_config = ConfigDict(extra="forbid")

    documents: list[Any] = Field(
        min_length=1, max_length=1000,
        description="API definitions, lists of them, policies.json maps, dashboard exports or a "
        "Tyk Dashboard configuration (tyk_analytics.conf, for oauth_redirect_uri_separator).",
    )
    issuers: dict[str, str] = Field(
        default_factory=dict,
        description="JWKS URL → issuer of the tokens its keys sign (Tyk has no issuer setting).",
    )
    dry_run: bool = Field(default=False, description="Report what would change without writing.")


class ImportResult(BaseModel):
    """What an import did (or, in a dry run, would do), resource by resource (``kind/id``)."""

    created: list[str]
    updated: list[str]
    unchanged: list[str]
    skipped: list[str] = Field(description="Tyk objects not imported at all, with the reason.")
    notes: list[str] = Field(description="Things imported with a caveat.")
    unrecognised: list[str] = Field(
        description="Documents that are neither APIs, policies nor a Tyk Dashboard configuration."
    )
    config_version: int | None = Field(description="The new version; null when nothing changed.")
    dry_run: bool


@router.post("/tyk", response_model=ImportResult)
async def import_tyk(body: TykImportRequest, actor: AdminActor, context: Context) -> ImportResult:
    """Import Tyk Classic API definitions, policies and the Dashboard's redirect-URI separator;
    idempotent, validated as a whole."""
    docs = TykDocuments()
    for index, document in enumerate(body.documents):
        docs.add(classify_documents(document, f"documents.{index}"))
    result = translate(docs.apis, docs.policies, issuers=body.issuers,
                       dashboard_configs=docs.dashboard_configs)
    refused = [Problem(location, message) for location, message in result.problems]
    try:
        parse_config(result.config)
    except ConfigError as exc:
        raise invalid([*refused, *(Problem(p.location, p.message) for p in exc.problems)],
                      "the translated configuration is not valid") from exc
    if refused:
        raise invalid(refused, "the Tyk Dashboard configuration cannot be imported")
    imported = _specs(result.config, result.policy_extras)
    summary = ImportResult(
        created=[], updated=[], unchanged=[], skipped=result.report.skipped,
        notes=result.report.notes, unrecognised=docs.unrecognised, config_version=None,
        dry_run=body.dry_run,
    )
    try:
        async with context.database.transaction() as session:
            await lock_config(session)
            state = await load_state(session)
            after = state
            writes: list[tuple[Kind, str, dict[str, Any], bool]] = []
            for kind, ident, spec in imported:
                row = await find_row(session, kind, ident)
                if kind is IDENTITY_PROVIDERS and row is not None:
                    spec = _merge_identity_provider(row.spec, spec)
                document = spec.model_dump(mode="json")
                after = after.with_document(kind, ident, spec)
                name = f"{kind.name}/{ident}"
                if row is None:
                    summary.created.append(name)
                elif row.spec == document:
                    summary.unchanged.append(name)
                    continue
                else:
                    summary.updated.append(name)
                writes.append((kind, ident, document, row is None))
            portal = await _merged_portal_settings(session, result.portal_settings, summary)
            existing = set(problems_of(state))
            problems = [p for p in problems_of(after) if p not in existing]
            if problems:
                raise invalid([Problem(f"{p.resource}.{p.field}" if p.field else p.resource, p.message)
                               for p in problems], "the import would leave the configuration invalid")
            if body.dry_run or not (writes or portal):
                return summary
            for kind, ident, document, creating in writes:
                await _write(session, kind, ident, document, creating=creating)
                await record_change(session, actor, "import", kind.name, ident,
                                    {"document": document, "source": "tyk"}, versioned=False)
            if portal is not None:
                await write_portal_settings(session, portal)
                await record_change(session, actor, "import", _PORTAL_SETTINGS, _PORTAL_SETTINGS,
                                    {"document": portal.model_dump(mode="json"), "source": "tyk"},
                                    versioned=False)
            await session.flush()
            summary.config_version = await record_change(
                session, actor, "import", "import", "tyk",
                {"created": summary.created, "updated": summary.updated},
            )
    except IntegrityError as exc:
        raise conflict("the import clashes with a stored resource (concurrent change?); retry") from exc
    await context.config_changed(summary.config_version)
    return summary


def _specs(config: dict[str, Any], policy_extras: dict[str, dict[str, Any]]) -> list[tuple[Kind, str, Any]]:
    """The translated documents as validated resource specs, identity providers first."""
    specs: list[tuple[Kind, str, Any]] = []
    problems: list[Problem] = []
    groups: list[tuple[Kind, str, Any]] = [
        (IDENTITY_PROVIDERS, "identity_providers", IdentityProviderSpec),
        (POLICIES, "policies", PolicySpec),
        (APIS, "apis", Api),
    ]
    for kind, key, model in groups:
        for index, raw in enumerate(config.get(key, [])):
            data = {**raw, **policy_extras.get(raw["id"], {})} if kind is POLICIES else raw
            try:
                specs.append((kind, raw["id"], model.model_validate(data)))
            except ValidationError as exc:
                for problem in problems_from_validation(exc.errors()):
                    problems.append(Problem(f"{key}.{index}.{problem.location}", problem.message))
    if problems:
        raise invalid(problems, "the translated configuration is not valid")
    return specs


async def _merged_portal_settings(
    session: AsyncSession, imported: dict[str, Any], summary: ImportResult
) -> PortalSettings | None:
    """The stored portal settings with the imported fields, when that changes them (else ``None``);
    the outcome is added to ``summary``."""
    if not imported:
        return None
    current = await stored_portal_settings(session)
    try:
        merged = PortalSettings.model_validate({**current.model_dump(mode="json"), **imported})
    except ValidationError as exc:
        raise invalid([Problem(f"portal_settings.{p.location}", p.message)
                       for p in problems_from_validation(exc.errors())],
                      "the Tyk Dashboard configuration cannot be imported") from exc
    if merged == current:
        summary.unchanged.append(_PORTAL_SETTINGS)
        return None
    summary.updated.append(_PORTAL_SETTINGS)
    return merged


def _merge_identity_provider(stored: dict[str, Any], imported: Any) -> IdentityProviderSpec:
    """The stored provider with only its token-checking fields taken from the import."""
    fields = {k: v for k, v in imported.model_dump(mode="json").items() if k in _GATEWAY_IDP_FIELDS}
    return IdentityProviderSpec.model_validate({**stored, **fields})


async def _write(
    session: AsyncSession, kind: Kind, ident: str, document: dict[str, Any], *, creating: bool
) -> None:
    current = now()
    row = kind.row(id=ident, created_at=current) if creating else await find_row(session, kind, ident)
    assert row is not None
    row.spec = document
    row.updated_at = current
    if isinstance(row, ApiRow):
        row.listen_path = listen_path_key(document["listen_path"])
    if creating:
        session.add(row)
