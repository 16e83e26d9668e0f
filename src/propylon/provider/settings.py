"""Typed settings of the embedded OpenID provider (environment prefix ``PROPYLON_IDP_``).

``cli.py`` builds one :class:`ProviderSettings` from flags over the environment and passes it down;
nothing reads the environment elsewhere. Each field's docstring is its documentation
(``docs/embedded-idp.md`` lists them).

Production mode (``production=True``) refuses the development conveniences: a plain-http issuer
that is not on loopback, a demo initial access token, signing keys generated on the fly.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SIGNING_ALGORITHMS = ("RS256", "ES256")
"""Algorithms the provider can sign access tokens with."""


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address) names this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ProviderSettings(BaseSettings):
    """How the embedded OpenID provider listens, signs and stores."""

    # hide_input_in_errors: a refused demo token must not be echoed into an error message.
    model_config = SettingsConfigDict(
        env_prefix="PROPYLON_IDP_", extra="ignore", frozen=True, use_attribute_docstrings=True,
        hide_input_in_errors=True,
    )

    host: str = "127.0.0.1"
    """Address the provider listens on (loopback by default)."""

    port: int = Field(default=9400, ge=0, le=65535)
    """TCP port of the provider (0 picks a free one; the issuer then follows the real port)."""

    issuer: str | None = None
    """The issuer identifier (``iss`` of every token, base of every endpoint URL); default
    ``http://127.0.0.1:{port}``. Production mode needs https unless the host is loopback."""

    data_dir: Path = Path(".propylon")
    """Directory of the provider's database (``idp.db``) and signing keys (``idp-keys/``)."""

    database_url: str | None = None
    """SQLAlchemy URL of the provider's own database (synchronous driver); default
    ``sqlite:///{data_dir}/idp.db``."""

    audience: str = "urn:propylon:api"
    """The ``aud`` claim of every access token: the resource the gateway is configured to expect."""

    signing_alg: Literal["RS256", "ES256"] = "RS256"
    """Algorithm of new signing keys and of the tokens signed with them."""

    token_lifetime: int = Field(default=3600, ge=60, le=86_400)
    """Seconds an access token is valid (``exp - iat``)."""

    code_lifetime: int = Field(default=60, ge=10, le=600)
    """Seconds an authorization code may be redeemed after it was issued."""

    default_policy: str | None = Field(default=None, max_length=200)
    """The ``pol`` claim for clients whose registration carries no ``pol`` metadata (none if unset)."""

    initial_access_token_lifetime: int = Field(default=86_400, ge=60)
    """Default seconds an initial access token made by ``propylon idp create-iat`` stays valid."""

    demo_initial_access_token: SecretStr | None = None
    """Development only: an initial access token accepted as is (for seeding a demo). Unset, a
    random one is generated at each start and printed. Production mode refuses it."""

    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=10 * 1024 * 1024)
    """Largest request body accepted; larger gets 413."""

    production: bool = False
    """Refuse development defaults: an http issuer off loopback, a demo initial access token,
    signing keys generated at start (create them with ``propylon idp rotate-keys``)."""

    @property
    def effective_issuer(self) -> str:
        """The issuer in use: ``issuer``, or ``http://127.0.0.1:{port}``."""
        if self.issuer:
            return self.issuer
        return f"http://127.0.0.1:{self.port}"

    @property
    def effective_database_url(self) -> str:
        """The database URL in use: ``database_url`` or the SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'idp.db').absolute()}"

    @property
    def keys_dir(self) -> Path:
        """Where the signing keys live (one JWK file per key, mode 0600)."""
        return self.data_dir / "idp-keys"

    @model_validator(mode="after")
    def _check(self) -> ProviderSettings:
        if self.issuer is not None:
            parts = urlsplit(self.issuer)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("issuer must be an absolute http(s) URL")
            if parts.query or parts.fragment or parts.username or parts.password:
                raise ValueError("issuer must not carry a query, a fragment or credentials")
            if self.issuer.endswith("/"):
                raise ValueError("issuer must not end with '/' (endpoints are appended to it)")
        if self.production:
            parts = urlsplit(self.effective_issuer)
            if parts.scheme != "https" and not is_loopback_host(parts.hostname or ""):
                raise ValueError("production mode needs an https issuer (plain http is allowed on "
                                 "loopback only)")
            if self.demo_initial_access_token is not None:
                raise ValueError("production mode refuses demo_initial_access_token: create initial "
                                 "access tokens with `propylon idp create-iat`")
        elif (self.demo_initial_access_token is not None
              and len(self.demo_initial_access_token.get_secret_value()) < 16):
                raise ValueError("demo_initial_access_token must be at least 16 characters")
        return self
