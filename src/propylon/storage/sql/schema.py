"""The control-plane tables.

Resources an admin edits as whole documents (identity providers, APIs, policies, catalogue entries,
portal settings) keep their validated document in a JSON ``spec`` column, next to the few columns
the database must index or constrain. Secrets never sit in ``spec``: they live in ``*_enc`` columns
holding :class:`~propylon.storage.secret_box.SecretBox` ciphertext, whose key is not in the database.

Changing this module means regenerating the initial migration (``make migration``) until the first
release; ``tests/storage/test_migrations.py`` fails when the two disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

Json = dict[str, Any]

# Every constraint and index gets a predictable name so that migrations can refer to them on both
# SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL keeps the zone; SQLite stores text and hands back naive values. Normalising here
    means no caller ever compares a naive and an aware datetime.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention and the JSON type for ``Json`` columns."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {Json: JSON, datetime: UtcDateTime()}


class ConfigState(Base):
    """One row (id 1): the configuration version, bumped by every write that changes what gateways
    serve. Gateways compare versions to know when to fetch a new snapshot."""

    __tablename__ = "config_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]


class IdentityProviderRow(Base):
    """An OpenID provider: issuer, endpoints, kind (vendor adapter) and the encrypted initial
    access token used for dynamic client registration."""

    __tablename__ = "identity_providers"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    spec: Mapped[Json]
    initial_access_token_enc: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ApiRow(Base):
    """A proxied API (listen path → upstream, auth); ``spec`` is a ``domain.config.Api``."""

    __tablename__ = "apis"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    listen_path: Mapped[str] = mapped_column(String(1024), unique=True)
    spec: Mapped[Json]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PolicyRow(Base):
    """Rate limit, quota, access rights and key expiry that apply to callers."""

    __tablename__ = "policies"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    spec: Mapped[Json]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CatalogueEntryRow(Base):
    """An API (or several) published in the portal with a policy and DCR options."""

    __tablename__ = "catalogue_entries"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    spec: Mapped[Json]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PortalSettingsRow(Base):
    """One row (id 1): global portal and DCR defaults."""

    __tablename__ = "portal_settings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[Json]
    updated_at: Mapped[datetime]


class DeveloperRow(Base):
    """A developer account of the portal (signed up, or added by an admin)."""

    __tablename__ = "developers"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    """``active``, ``pending`` (awaiting approval) or ``disabled``."""
    password_hash: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class OAuthClientRow(Base):
    """An OAuth client registered at an IdP for a developer (RFC 7591), with what is needed to
    manage it later (RFC 7592). The client secret is never stored."""

    __tablename__ = "oauth_clients"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Propylon's own id for the record (exists before the IdP answers: the saga's pending row)."""
    client_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    """The IdP's client id; ``None`` while the registration is pending."""
    developer_id: Mapped[str] = mapped_column(ForeignKey("developers.id", ondelete="RESTRICT"), index=True)
    identity_provider_id: Mapped[str] = mapped_column(
        ForeignKey("identity_providers.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    """``pending``, ``active``, ``deleting`` or ``failed``."""
    catalogue_entry_ids: Mapped[list[str]] = mapped_column(JSON)
    policy_ids: Mapped[list[str]] = mapped_column(JSON)
    metadata_: Mapped[Json] = mapped_column("metadata", JSON)
    """Client metadata as the IdP returned it (redirect URIs, grant types...), secret removed."""
    registration_client_uri: Mapped[str | None] = mapped_column(Text)
    registration_access_token_enc: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ClientTombstoneRow(Base):
    """A deleted OAuth client: gateways refuse its tokens at once, although they still verify."""

    __tablename__ = "client_tombstones"
    client_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    deleted_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(200), default="")


class AdminUserRow(Base):
    """A dashboard administrator (argon2id password hash)."""

    __tablename__ = "admin_users"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    must_change_password: Mapped[bool]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ApiTokenRow(Base):
    """An admin API token for automation; only its SHA-256 digest is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    admin_user_id: Mapped[str] = mapped_column(ForeignKey("admin_users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    """The token's first characters, shown in lists so an admin can tell tokens apart."""
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class DeveloperTokenRow(Base):
    """A developer's API token for the portal's JSON API; only its SHA-256 digest is stored."""

    __tablename__ = "developer_tokens"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    developer_id: Mapped[str] = mapped_column(ForeignKey("developers.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    """The token's first characters, so a developer can tell tokens apart."""
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class PortalSessionRow(Base):
    """A developer's signed-in browser session on the portal pages.

    Only the SHA-256 digest of the session id (the cookie's value) is stored: a copy of this table
    does not let anyone act as a developer. The session ends at ``expires_at`` (absolute) or when
    unused for the idle lifetime since ``last_seen_at``, whichever comes first."""

    __tablename__ = "portal_sessions"
    id_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Hex SHA-256 of the session id."""
    developer_id: Mapped[str] = mapped_column(ForeignKey("developers.id", ondelete="CASCADE"), index=True)
    csrf_secret: Mapped[str] = mapped_column(String(64))
    """The token every form of this session carries (synchroniser token)."""
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class AuditEntryRow(Base):
    """Who changed what, when. Details never contain secrets."""

    __tablename__ = "audit_log"
    # The audit page filters by resource (``?resource_type=&resource_id=``), newest first.
    __table_args__ = (Index("ix_audit_resource", "resource_type", "resource_id", "id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    resource_type: Mapped[str] = mapped_column(String(50))
    resource_id: Mapped[str] = mapped_column(String(255))
    config_version: Mapped[int | None] = mapped_column(BigInteger)
    details: Mapped[Json]


class GatewayNodeRow(Base):
    """A gateway that reported to the dashboard: where it runs, which config version it serves."""

    __tablename__ = "gateway_nodes"
    node_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    address: Mapped[str] = mapped_column(String(255))
    config_version: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(32))
    details: Mapped[Json]
    started_at: Mapped[datetime]
    last_seen: Mapped[datetime]


class AnalyticsRow(Base):
    """One request a gateway answered (see ``domain.analytics.AnalyticsRecord``)."""

    __tablename__ = "analytics_records"
    __table_args__ = (
        Index("ix_analytics_api_time", "api_id", "time"),
        Index("ix_analytics_client_time", "client_id", "time"),
        Index("ix_analytics_developer_time", "developer_id", "time"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    time: Mapped[float] = mapped_column(Float, index=True)
    """Unix seconds the request arrived (a float keeps bucketing portable across backends)."""
    node_id: Mapped[str] = mapped_column(String(255))
    api_id: Mapped[str | None] = mapped_column(String(128))
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[int]
    upstream_latency_ms: Mapped[float | None]
    total_latency_ms: Mapped[float]
    identity: Mapped[str | None] = mapped_column(String(255))
    client_id: Mapped[str | None] = mapped_column(String(255))
    developer_id: Mapped[str | None] = mapped_column(String(64))
    policy: Mapped[str | None] = mapped_column(String(512))
    bytes_in: Mapped[int] = mapped_column(BigInteger)
    bytes_out: Mapped[int] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(String(64))
