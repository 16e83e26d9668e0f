"""The declarative gateway configuration: typed, validated, frozen.

This is the shape an operator writes in a YAML/JSON file for DB-less mode, and the shape the
dashboard will later publish as a signed snapshot. Every field carries its meaning in its
description; ``docs/configuration.md`` is the prose version of this module.

Validation happens in two passes so that an operator sees *every* problem at once:

1. field-level checks by pydantic (types, ranges, formats), all errors collected;
2. cross-references (an API naming an unknown identity provider, a policy naming an unknown
   API, duplicate ids or listen paths), all collected.

Either pass failing raises :class:`ConfigError` listing each problem with its location.
No I/O happens here: reading files is the caller's job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ASYMMETRIC_ALGORITHMS: tuple[str, ...] = (
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
    "EdDSA",
)
"""The JWS algorithms an identity provider's keys may use. HS* and ``none`` are never allowed:
a gateway that accepts a symmetric algorithm for a public key can be fooled into treating the
public key as an HMAC secret."""

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
ALL_APIS = "*"
"""An ``access_rights`` key that grants a policy access to every API."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


Identifier = Annotated[str, Field(pattern=_ID_PATTERN)]


def _http_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an absolute http(s) URL, got {value!r}")
    if parts.username or parts.password:
        raise ValueError(f"{what} must not carry credentials")
    return value


class IdentityProvider(_Frozen):
    """An OpenID provider whose JWTs the gateway accepts."""

    id: Identifier = Field(description="Name that APIs use to refer to this provider.")
    issuer: str = Field(
        description="Exact `iss` value of its tokens; discovery is "
        "`{issuer}/.well-known/openid-configuration`."
    )
    jwks_uri: str | None = Field(
        default=None, description="Where its signing keys are published; from discovery if unset."
    )
    audience: str | None = Field(
        default=None, description="When set, a token's `aud` must contain this value."
    )
    algorithms: tuple[str, ...] = Field(
        default=ASYMMETRIC_ALGORITHMS,
        description="Accepted JWS algorithms; asymmetric only (RS*, PS*, ES*, EdDSA).",
    )
    leeway_seconds: int = Field(
        default=30, ge=0, le=60, description="Clock skew allowed on `exp`/`nbf`/`iat`, at most 60 s."
    )

    @field_validator("issuer")
    @classmethod
    def _issuer_is_url(cls, value: str) -> str:
        return _http_url(value, "issuer")

    @field_validator("jwks_uri")
    @classmethod
    def _jwks_is_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, "jwks_uri")

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [alg for alg in value if alg not in ASYMMETRIC_ALGORITHMS]
        if bad:
            raise ValueError(
                f"unsupported algorithm(s) {bad}; allowed: {', '.join(ASYMMETRIC_ALGORITHMS)}"
            )
        if not value:
            raise ValueError("at least one algorithm is required")
        return value


class JwtAuth(_Frozen):
    """Bearer JWT authentication against one identity provider, and how a token maps to policies."""

    type: Literal["jwt"] = "jwt"
    identity_provider: Identifier = Field(description="Id of the identity provider to trust.")
    identity_claim: str = Field(
        default="sub",
        description="Claim naming whose limits apply (rate limit and quota keys); falls back to "
        "`sub` when the claim is absent.",
    )
    client_claims: tuple[str, ...] = Field(
        default=("client_id", "azp", "cid", "clientId"),
        description="Claims tried in order to find the OAuth client id (vendors differ).",
    )
    policy_claim: str | None = Field(
        default="pol", description="Claim carrying policy id(s), used when the client is unknown."
    )
    scope_claim: str = Field(
        default="scope", description="Claim carrying scopes: a space-separated string or a list."
    )
    scope_policies: dict[str, Identifier] = Field(
        default_factory=dict, description="Scope → policy id, used when no policy claim matched."
    )
    default_policies: tuple[Identifier, ...] = Field(
        default=(), description="Policies applied when nothing else matched; empty → 403."
    )


class KeylessAuth(_Frozen):
    """No authentication; the listed policies apply per client IP address."""

    type: Literal["keyless"] = "keyless"
    policies: tuple[Identifier, ...] = Field(
        default=(), description="Policies applied to every caller, keyed by client address."
    )


class Api(_Frozen):
    """A published API: requests under ``listen_path`` are proxied to ``upstream``."""

    id: Identifier = Field(description="Stable id used by policies' access rights.")
    name: str = Field(default="", description="Human-readable name.")
    listen_path: str = Field(description="Path prefix the gateway routes on, e.g. `/orders/`.")
    upstream: str = Field(description="Base URL of the upstream service (http or https).")
    strip_listen_path: bool = Field(
        default=False, description="Remove the listen path before forwarding."
    )
    auth: JwtAuth | KeylessAuth = Field(discriminator="type", description="How callers prove who they are.")
    upstream_connect_timeout: float = Field(
        default=5.0, gt=0, le=300, description="Seconds to open an upstream connection (else 504)."
    )
    upstream_timeout: float = Field(
        default=30.0, gt=0, le=3600,
        description="Seconds to wait for the upstream's response head, and between body reads.",
    )

    @field_validator("listen_path")
    @classmethod
    def _listen_path_shape(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("listen_path must start with '/'")
        if re.search(r"//|/\.\.?(/|$)|[?#%\s]", value):
            raise ValueError(
                "listen_path must be a normalised path without '//', '.', '..', '?', '#', '%' or spaces"
            )
        return value

    @field_validator("upstream")
    @classmethod
    def _upstream_is_url(cls, value: str) -> str:
        _http_url(value, "upstream")
        if urlsplit(value).query or urlsplit(value).fragment:
            raise ValueError("upstream must not have a query or fragment")
        return value


class RateLimit(_Frozen):
    """At most ``requests`` per ``per_seconds``, smoothed (GCRA), per identity and API."""

    requests: int = Field(gt=0, description="Requests allowed per window.")
    per_seconds: float = Field(gt=0, description="Window length in seconds.")


class Quota(_Frozen):
    """At most ``max`` requests per fixed renewal window, per identity and API."""

    max: int = Field(ge=0, description="Requests allowed per renewal window.")
    renewal_seconds: int = Field(gt=0, description="Window length in seconds.")


class AccessRule(_Frozen):
    """Which methods and paths of one API a policy allows."""

    methods: tuple[str, ...] = Field(
        default=(), description="Allowed HTTP methods; empty allows every method."
    )
    paths: tuple[str, ...] = Field(
        default=(),
        description="Allowed paths relative to the listen path, `*` matching one segment or "
        "(at the end) anything below; empty allows every path.",
    )

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        upper = tuple(m.upper() for m in value)
        bad = [m for m in upper if m not in _HTTP_METHODS]
        if bad:
            raise ValueError(f"unknown HTTP method(s) {bad}")
        return upper

    @field_validator("paths")
    @classmethod
    def _paths_absolute(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            check_path_pattern(pattern)
        return value


def check_path_pattern(pattern: str) -> None:
    """Raise ``ValueError`` for an access path pattern that no normalised path could match.

    Patterns start with ``/``; ``*`` is a whole segment (one segment, or anything below when
    last); empty and dot segments are refused.
    """
    if not pattern.startswith("/"):
        raise ValueError(f"path pattern must start with '/': {pattern!r}")
    if "//" in pattern:
        raise ValueError(f"path pattern has an empty segment: {pattern!r}")
    for segment in pattern.split("/")[1:]:
        if segment in (".", ".."):
            raise ValueError(f"path pattern has a dot segment: {pattern!r}")
        if "*" in segment and segment != "*":
            raise ValueError(f"'*' must be a whole segment of a path pattern: {pattern!r}")


class Policy(_Frozen):
    """Limits and access rights that apply to a caller."""

    id: Identifier = Field(description="Name that clients, claims and APIs refer to.")
    rate: RateLimit | None = Field(default=None, description="Rate limit; none = unlimited.")
    quota: Quota | None = Field(default=None, description="Quota; none = unlimited.")
    access_rights: dict[str, AccessRule] = Field(
        default_factory=dict,
        description="API id (or `*` for all APIs) → allowed methods/paths. An API that is not "
        "listed is refused (403): access is deny-by-default.",
    )


class Client(_Frozen):
    """An OAuth client known to the platform (registered through the portal)."""

    client_id: str = Field(min_length=1, description="The client id the IdP issued.")
    policies: tuple[Identifier, ...] = Field(default=(), description="Policies for its tokens.")
    developer_id: str | None = Field(default=None, description="Developer owning the client.")


class GatewayConfig(_Frozen):
    """Everything a gateway needs to serve traffic."""

    version: str | None = Field(default=None, description="Opaque config version, echoed in logs.")
    identity_providers: tuple[IdentityProvider, ...] = ()
    apis: tuple[Api, ...] = ()
    policies: tuple[Policy, ...] = ()
    clients: tuple[Client, ...] = ()
    revoked_clients: tuple[str, ...] = Field(
        default=(), description="Deleted OAuth clients: their tokens are refused at once."
    )


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a configuration, with where it is."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ConfigError(ValueError):
    """A configuration was refused; ``problems`` lists every reason."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def parse_config(data: Mapping[str, Any]) -> GatewayConfig:
    """Validate raw (already decoded) configuration data, reporting every problem at once."""
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_problem_from_pydantic(err) for err in exc.errors()]) from exc
    problems = check_references(config)
    if problems:
        raise ConfigError(problems)
    return config


def _problem_from_pydantic(err: Mapping[str, Any]) -> ConfigProblem:
    location = ".".join(str(part) for part in err.get("loc", ()))
    message = str(err.get("msg", "invalid"))
    return ConfigProblem(location, message.removeprefix("Value error, "))


def check_references(config: GatewayConfig) -> list[ConfigProblem]:
    """Return the cross-reference problems of a field-valid configuration."""
    problems: list[ConfigProblem] = []

    def unique(kind: str, ids: list[str]) -> set[str]:
        seen: set[str] = set()
        for index, item in enumerate(ids):
            if item in seen:
                problems.append(ConfigProblem(f"{kind}.{index}", f"duplicate id {item!r}"))
            seen.add(item)
        return seen

    idp_ids = unique("identity_providers", [i.id for i in config.identity_providers])
    api_ids = unique("apis", [a.id for a in config.apis])
    policy_ids = unique("policies", [p.id for p in config.policies])
    unique("clients", [c.client_id for c in config.clients])

    paths: dict[str, str] = {}
    for index, api in enumerate(config.apis):
        where = f"apis.{index}"
        key = api.listen_path.rstrip("/") or "/"
        if key in paths:
            problems.append(
                ConfigProblem(f"{where}.listen_path", f"same listen path as API {paths[key]!r}")
            )
        paths[key] = api.id
        auth = api.auth
        if isinstance(auth, JwtAuth):
            if auth.identity_provider not in idp_ids:
                problems.append(
                    ConfigProblem(
                        f"{where}.auth.identity_provider",
                        f"unknown identity provider {auth.identity_provider!r}",
                    )
                )
            for scope, pol in auth.scope_policies.items():
                if pol not in policy_ids:
                    problems.append(
                        ConfigProblem(f"{where}.auth.scope_policies.{scope}", f"unknown policy {pol!r}")
                    )
            named = [("default_policies", p) for p in auth.default_policies]
        else:
            named = [("policies", p) for p in auth.policies]
        for field, pol in named:
            if pol not in policy_ids:
                problems.append(ConfigProblem(f"{where}.auth.{field}", f"unknown policy {pol!r}"))

    for index, policy in enumerate(config.policies):
        for api_id in policy.access_rights:
            if api_id != ALL_APIS and api_id not in api_ids:
                problems.append(
                    ConfigProblem(f"policies.{index}.access_rights.{api_id}", f"unknown API {api_id!r}")
                )

    for index, client in enumerate(config.clients):
        for pol in client.policies:
            if pol not in policy_ids:
                problems.append(ConfigProblem(f"clients.{index}.policies", f"unknown policy {pol!r}"))
    return problems
