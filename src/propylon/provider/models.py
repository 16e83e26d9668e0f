"""The embedded provider's own tables (its own metadata, database file and Alembic version table).

Secrets are never stored: client secrets, registration access tokens, initial access tokens and
authorization codes are kept as SHA-256 digests (each is 256 random bits, so a fast digest is
enough), user passwords as argon2id hashes. Times are integer Unix seconds.
"""

from __future__ import annotations

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class ProviderBase(DeclarativeBase):
    """Declarative base of the provider's tables (separate from the control plane's)."""


class ClientRow(ProviderBase):
    """A registered OAuth client (RFC 7591)."""

    __tablename__ = "idp_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_digest: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 of the client secret; none for a public client (auth method ``none``)."""
    registration_token_digest: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the registration access token (RFC 7592)."""
    client_metadata: Mapped[dict[str, object]] = mapped_column(JSON)
    """The registered metadata (RFC 7591 §2 fields plus ``pol``), as validated."""
    issued_at: Mapped[int] = mapped_column(Integer)


class UserRow(ProviderBase):
    """A person who can sign in on the provider's login page."""

    __tablename__ = "idp_users"

    user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(Integer)


class InitialAccessTokenRow(ProviderBase):
    """A credential that allows registering clients (RFC 7591 §3, "initial access token")."""

    __tablename__ = "idp_initial_access_tokens"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int | None] = mapped_column(Integer)
    """None: never expires (only the development demo token)."""
    demo: Mapped[bool] = mapped_column(default=False)
    """The development demo token: replaced at every start, refused in production."""


class AuthorizationCodeRow(ProviderBase):
    """An authorization code between the login page and the token endpoint (single use)."""

    __tablename__ = "idp_authorization_codes"

    code_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("idp_clients.client_id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("idp_users.user_id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text, default="")
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(10))
    expires_at: Mapped[int] = mapped_column(Integer)


class RevokedTokenRow(ProviderBase):
    """An access token revoked before its expiry (RFC 7009), by ``jti``; kept until it expires."""

    __tablename__ = "idp_revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[int] = mapped_column(Integer, index=True)
