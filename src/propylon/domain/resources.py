"""The documents an admin edits through the dashboard: identity providers, APIs, policies,
catalogue entries and the portal settings.

Each resource comes in up to four shapes:

* ``…Spec`` — the stored document (validated, frozen, never a secret);
* ``…Input`` — a create (POST) body: the spec plus write-only secrets;
* ``…Update`` — a replace (PUT) body: the same, with ``id`` optional because it comes from the path
  (an ``id`` in the body must match it);
* ``…View`` — what the API answers: the spec, ``has_*`` flags instead of secrets, timestamps.

Gateway-facing fields are exactly those of :mod:`propylon.domain.config` (the resource models extend
them), so the dashboard publishes a subset of each document. Update semantics: PUT replaces the
whole document; a secret omitted from a PUT body keeps the stored secret, an explicit ``null``
clears it (see :func:`secret_change`).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from propylon.domain.config import (
    ALL_APIS,
    Api,
    Identifier,
    IdentityProvider,
    JwtAuth,
    Policy,
    _http_url,
)

IdentityProviderKind = Literal["gluu", "keycloak", "okta", "curity", "generic"]
"""Which vendor adapter talks to the IdP for registration (vendors differ in small ways)."""

GrantType = Literal[
    "client_credentials",
    "authorization_code",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
]
TokenEndpointAuthMethod = Literal[
    "client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"
]
ResponseType = Annotated[str, Field(pattern=r"^[a-z_]+( [a-z_]+)*$", max_length=100)]
"""An OAuth response type, e.g. ``code`` or ``code id_token``."""
Scope = Annotated[str, Field(pattern=r"^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$",
                             max_length=2000)]
"""A space-separated list of scope tokens (RFC 6749 §3.3)."""

DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
GATEWAY_IDENTITY_PROVIDER_FIELDS = frozenset(IdentityProvider.model_fields)
"""The fields of an identity provider resource that gateways receive."""
GATEWAY_POLICY_FIELDS = frozenset(Policy.model_fields)
"""The fields of a policy resource that gateways receive."""


class Unset(Enum):
    """Marker: a write-only field was left out of a PUT body."""

    KEEP = "keep"


def _optional_url(value: str | None, what: str) -> str | None:
    return None if value is None else _http_url(value, what)


def default_discovery_url(issuer: str) -> str:
    """``{issuer}/.well-known/openid-configuration`` (OpenID Connect Discovery 1.0 §4)."""
    return issuer.rstrip("/") + DISCOVERY_SUFFIX


# -- identity providers -------------------------------------------------------------------------


class IdentityProviderSpec(IdentityProvider):
    """An OpenID provider: what gateways need to verify its tokens, plus where the portal registers
    clients (RFC 7591) and which vendor it is."""

    model_config = ConfigDict(hide_input_in_errors=True)

    name: str = Field(default="", max_length=200, description="Human-readable name.")
    kind: IdentityProviderKind = Field(
        default="generic", description="Vendor adapter used for registration: gluu, keycloak, okta, "
        "curity or generic (plain RFC 7591/7592).",
    )
    discovery_url: str = Field(
        default="", description="OpenID discovery document; default "
        "`{issuer}/.well-known/openid-configuration`.",
    )
    registration_endpoint: str | None = Field(
        default=None, description="RFC 7591 registration endpoint (from discovery)."
    )
    token_endpoint: str | None = Field(default=None, description="Token endpoint (from discovery).")
    authorization_endpoint: str | None = Field(
        default=None, description="Authorization endpoint (from discovery)."
    )
    introspection_endpoint: str | None = Field(
        default=None, description="Token introspection endpoint, optional (from discovery)."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_discovery_url(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not data.get("discovery_url"):
            issuer = data.get("issuer")
            # A bad issuer is reported once, not again through the URL derived from it.
            if isinstance(issuer, str) and issuer.strip().startswith(("http://", "https://")):
                return {**data, "discovery_url": default_discovery_url(issuer.strip())}
        return data

    @field_validator("discovery_url")
    @classmethod
    def _discovery_is_url(cls, value: str) -> str:
        return _http_url(value, "discovery_url")

    @field_validator(
        "registration_endpoint", "token_endpoint", "authorization_endpoint", "introspection_endpoint"
    )
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        return _optional_url(value, "an endpoint")

    def gateway_document(self) -> dict[str, Any]:
        """The fields gateways receive (``domain.config.IdentityProvider``), as JSON data."""
        return self.model_dump(mode="json", include=set(GATEWAY_IDENTITY_PROVIDER_FIELDS))


class IdentityProviderInput(IdentityProviderSpec):
    """Create body: the provider plus its write-only initial access token."""

    initial_access_token: SecretStr | None = Field(
        default=None, max_length=8192, json_schema_extra={"writeOnly": True},
        description="Initial access token for RFC 7591 registration (for `okta`: the SSWS API "
        "token). Write-only: encrypted at rest, never returned. On PUT, omit it to keep the "
        "stored token; `null` removes it.",
    )

    def spec(self) -> IdentityProviderSpec:
        """The stored document (the secret removed)."""
        return IdentityProviderSpec.model_validate(
            self.model_dump(exclude={"initial_access_token"})
        )


class IdentityProviderUpdate(IdentityProviderInput):
    """Replace body: ``id`` comes from the path."""

    id: Identifier | None = Field(  # type: ignore[assignment]
        default=None, description="Optional; must equal the id in the path."
    )


class IdentityProviderView(IdentityProviderSpec):
    """An identity provider as the API shows it."""

    has_initial_access_token: bool = Field(description="Whether an initial access token is stored.")
    created_at: datetime
    updated_at: datetime


def secret_change(model: BaseModel, field: str) -> str | Unset | None:
    """What a PUT body says about write-only ``field``: :attr:`Unset.KEEP` when it was left out,
    ``None`` when it was explicitly null (clear it), else the new plaintext."""
    if field not in model.model_fields_set:
        return Unset.KEEP
    value = getattr(model, field)
    if value is None:
        return None
    plaintext: str = value.get_secret_value()
    return plaintext


# -- APIs ---------------------------------------------------------------------------------------

ApiSpec = Api
"""An API resource is exactly the gateway's :class:`~propylon.domain.config.Api`."""


class ApiUpdate(Api):
    """Replace body: ``id`` comes from the path."""

    id: Identifier | None = Field(  # type: ignore[assignment]
        default=None, description="Optional; must equal the id in the path."
    )


class ApiView(Api):
    """An API as the admin API shows it."""

    created_at: datetime
    updated_at: datetime


# -- policies -----------------------------------------------------------------------------------


class PolicySpec(Policy):
    """A policy: the gateway's :class:`~propylon.domain.config.Policy` plus admin metadata."""

    name: str = Field(default="", max_length=200, description="Human-readable name.")
    description: str = Field(default="", max_length=4000, description="What the policy is for.")
    key_expires_in_seconds: StrictInt | None = Field(
        default=None, ge=0, le=10 * 366 * 86400,
        description="Lifetime of credentials issued under this policy (Tyk's `key_expires_in`); "
        "0 or null = never expire.",
    )

    def gateway_document(self) -> dict[str, Any]:
        """The fields gateways receive (``domain.config.Policy``), as JSON data."""
        return self.model_dump(mode="json", include=set(GATEWAY_POLICY_FIELDS))


class PolicyUpdate(PolicySpec):
    """Replace body: ``id`` comes from the path."""

    id: Identifier | None = Field(  # type: ignore[assignment]
        default=None, description="Optional; must equal the id in the path."
    )


class PolicyView(PolicySpec):
    """A policy as the admin API shows it."""

    created_at: datetime
    updated_at: datetime


# -- catalogue ----------------------------------------------------------------------------------


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class CatalogueEntrySpec(_Document):
    """APIs published in the developer portal with the policy their clients get and the options of
    the clients developers register for them (DCR)."""

    id: Identifier = Field(description="Stable id of the entry.")
    name: str = Field(min_length=1, max_length=200, description="Title shown in the portal.")
    description: str = Field(default="", max_length=4000, description="Short description.")
    api_ids: tuple[Identifier, ...] = Field(
        min_length=1, max_length=100, description="The APIs this entry publishes (at least one)."
    )
    policy_id: Identifier = Field(description="Policy given to clients registered for this entry.")
    identity_provider_id: Identifier | None = Field(
        default=None, description="IdP where clients are registered; default: the one the APIs' "
        "JWT auth uses (when set, it must be that one).",
    )
    published: StrictBool = Field(default=True, description="Shown in the portal.")
    dcr_enabled: StrictBool | None = Field(
        default=None, description="Dynamic client registration for this entry; null = the portal "
        "settings' `dcr_enabled`.",
    )
    grant_types: tuple[GrantType, ...] | None = Field(
        default=None, min_length=1, max_length=8, description="Grant types of registered clients; "
        "null = portal settings.",
    )
    token_endpoint_auth_method: TokenEndpointAuthMethod | None = Field(
        default=None, description="Client authentication at the token endpoint; null = portal settings."
    )
    response_types: tuple[ResponseType, ...] | None = Field(
        default=None, max_length=8, description="Response types of registered clients; null = "
        "portal settings.",
    )
    scope: Scope | None = Field(default=None, description="Scope requested at registration; null = "
                                "portal settings.")
    redirect_uris_required: StrictBool = Field(
        default=False, description="Developers must give at least one redirect URI."
    )
    openapi_url: str | None = Field(default=None, description="OpenAPI document shown in the portal.")
    documentation: str | None = Field(
        default=None, max_length=200_000, description="Markdown documentation shown in the portal."
    )

    @field_validator("openapi_url")
    @classmethod
    def _openapi_is_url(cls, value: str | None) -> str | None:
        return _optional_url(value, "openapi_url")


class CatalogueEntryUpdate(CatalogueEntrySpec):
    """Replace body: ``id`` comes from the path."""

    id: Identifier | None = Field(  # type: ignore[assignment]
        default=None, description="Optional; must equal the id in the path."
    )


class CatalogueEntryView(CatalogueEntrySpec):
    """A catalogue entry as the admin API shows it."""

    effective_identity_provider_id: str | None = Field(
        description="The IdP clients are registered at (the given one, or the APIs' one)."
    )
    created_at: datetime
    updated_at: datetime


def jwt_identity_providers(api_ids: Collection[str], apis: Mapping[str, Api]) -> list[str]:
    """The distinct identity providers that the JWT auth of the listed (known) APIs trusts."""
    found: list[str] = []
    for api_id in api_ids:
        api = apis.get(api_id)
        if api is not None and isinstance(api.auth, JwtAuth) and api.auth.identity_provider not in found:
            found.append(api.auth.identity_provider)
    return found


def effective_identity_provider(entry: CatalogueEntrySpec, apis: Mapping[str, Api]) -> str | None:
    """Where clients of ``entry`` are registered: its own setting, else the APIs' single IdP."""
    if entry.identity_provider_id is not None:
        return entry.identity_provider_id
    found = jwt_identity_providers(entry.api_ids, apis)
    return found[0] if len(found) == 1 else None


def check_catalogue_entry(
    entry: CatalogueEntrySpec,
    apis: Mapping[str, Api],
    policies: Mapping[str, Policy],
    identity_providers: Collection[str],
) -> list[tuple[str, str]]:
    """Every reference problem of ``entry`` against the other resources, as (field, message)."""
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, api_id in enumerate(entry.api_ids):
        if api_id in seen:
            problems.append((f"api_ids.{index}", f"API {api_id!r} is listed twice"))
        elif api_id not in apis:
            problems.append((f"api_ids.{index}", f"unknown API {api_id!r}"))
        seen.add(api_id)
    policy = policies.get(entry.policy_id)
    if policy is None:
        problems.append(("policy_id", f"unknown policy {entry.policy_id!r}"))
    elif ALL_APIS not in policy.access_rights:
        for api_id in sorted(seen & set(apis) - set(policy.access_rights)):
            problems.append(
                ("policy_id", f"policy {entry.policy_id!r} grants no access to API {api_id!r}")
            )
    jwt_idps = jwt_identity_providers(entry.api_ids, apis)
    if len(jwt_idps) > 1:
        problems.append(("api_ids", "the APIs trust different identity providers "
                                    f"({', '.join(jwt_idps)}); a client is registered at one"))
    chosen = entry.identity_provider_id
    if chosen is not None:
        if chosen not in identity_providers:
            problems.append(("identity_provider_id", f"unknown identity provider {chosen!r}"))
        elif len(jwt_idps) == 1 and jwt_idps[0] != chosen:
            problems.append(("identity_provider_id", f"the APIs' JWT auth trusts {jwt_idps[0]!r}, "
                                                     f"not {chosen!r}: clients would get unusable tokens"))
    elif not jwt_idps and entry.dcr_enabled:
        problems.append(("identity_provider_id", "required for DCR: none of the APIs uses JWT auth"))
    return problems


# -- portal settings ----------------------------------------------------------------------------


class PortalSettings(_Document):
    """Global portal options and the DCR defaults catalogue entries inherit."""

    portal_name: str = Field(default="Developer portal", min_length=1, max_length=200,
                             description="Title of the developer portal.")
    dcr_enabled: StrictBool = Field(default=True, description="Dynamic client registration, unless an "
                              "entry says otherwise.")
    grant_types: tuple[GrantType, ...] = Field(
        default=("client_credentials",), min_length=1, max_length=8,
        description="Default grant types of registered clients.",
    )
    token_endpoint_auth_method: TokenEndpointAuthMethod = Field(
        default="client_secret_basic", description="Default client authentication method."
    )
    response_types: tuple[ResponseType, ...] = Field(
        default=(), max_length=8, description="Default response types (empty suits "
        "client_credentials-only clients).",
    )
    scope: Scope | None = Field(default=None, description="Default scope requested at registration.")
    require_developer_approval: StrictBool = Field(
        default=False, description="New developer sign-ups wait for an admin's approval."
    )
    oauth_redirect_uri_separator: str = Field(
        default=",", min_length=1, max_length=4,
        description="Separator of several redirect URIs in one form field (Tyk's setting).",
    )
    gateway_url: str | None = Field(
        default=None, max_length=2000,
        description="Public base URL of the gateway (`https://api.example.com`), used in the "
        "copy-paste calls the portal shows; null = the placeholder `$GATEWAY_URL`. Absolute http(s), "
        "no credentials, query or fragment; a trailing slash is trimmed.",
    )

    @field_validator("gateway_url")
    @classmethod
    def _gateway_is_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _http_url(value, "gateway_url")
        parts = urlsplit(value)
        if parts.query or parts.fragment or value.endswith(("?", "#")):
            raise ValueError("gateway_url must not carry a query or a fragment")
        if any(char.isspace() or ord(char) < 0x20 or char in "\"'`$" for char in value):
            raise ValueError("gateway_url must not contain spaces, quotes, '$' or control characters")
        return value.rstrip("/")


class PortalSettingsView(PortalSettings):
    """The portal settings as the API shows them."""

    updated_at: datetime | None = Field(description="Last change; null while still the defaults.")
