"""Typed process settings, read once from the environment (prefix ``PROPYLON_``) and flags.

Settings describe *how a process runs* (ports, limits, timeouts, where data lives). What the gateway
*serves* (APIs, policies, identity providers) is configuration, see ``domain/config.py``.

``cli.py`` builds a settings object once and passes it down; nothing imports a global instance.
Each field's docstring is its documentation; ``docs/configuration.md`` lists them.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

log = logging.getLogger(__name__)


def _allowed_networks(value: Any) -> Any:
    """``PROPYLON_OUTBOUND_ALLOWED_NETWORKS`` (comma-separated) or a sequence, as normalised CIDR
    strings; a bad entry is refused with its value named."""
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        normalised = []
        for item in value:
            try:
                normalised.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
            except ValueError as exc:
                raise ValueError(f"outbound_allowed_networks: {item!r} is not an IP network "
                                 "in CIDR notation (e.g. 10.0.0.0/8)") from exc
        return tuple(normalised)
    return value


# One field type for every process whose outbound requests go through the SSRF guard
# (outbound/guard.py), so that the dashboard and the gateways read the variable the same way.
# NoDecode: the environment value is a comma-separated list, not JSON.
AllowedNetworks = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_allowed_networks)]


class GatewaySettings(BaseSettings):
    """How a gateway process listens, limits and times out, and where its configuration comes from."""

    # hide_input_in_errors: a refused node secret must not be echoed into an error message or log.
    model_config = SettingsConfigDict(
        env_prefix="PROPYLON_", extra="ignore", frozen=True, use_attribute_docstrings=True,
        hide_input_in_errors=True,
    )

    host: str = "127.0.0.1"
    """Address the gateway listens on. Loopback by default; set 0.0.0.0 to serve a network."""

    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port of the gateway (0 picks a free one, for tests)."""

    workers: int = Field(default=1, ge=1, le=256)
    """Worker processes sharing the port with SO_REUSEPORT. Rate-limit and quota counters are in
    memory per process, so with N workers and no shared counter store each limit is enforced per
    worker (up to N times the configured rate)."""

    config_file: Path | None = None
    """The declarative gateway configuration (YAML or JSON); reloaded on change and on SIGHUP."""

    data_dir: Path = Path(".propylon")
    """Where the gateway keeps state: last-good JWKS per issuer, analytics file."""

    analytics_file: Path | None = None
    """JSON-lines analytics output; default ``{data_dir}/analytics.jsonl``."""

    analytics_enabled: bool = True
    """Write one analytics record per request."""

    max_connections: int = Field(default=10_000, ge=1)
    """Client connections one process serves at once; beyond it new ones get 503 and are closed."""

    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    """Largest request line plus headers accepted; larger gets 431."""

    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    """Largest request body accepted (declared or streamed); larger gets 413."""

    max_pipelined: int = Field(default=16, ge=1, le=1024)
    """Requests a client may queue on one connection before the gateway stops reading from it."""

    client_header_timeout: float = Field(default=10.0, gt=0)
    """Seconds a client has to send a complete request head once it started one (slowloris)."""

    client_idle_timeout: float = Field(default=75.0, gt=0)
    """Seconds an idle keep-alive client connection is kept open."""

    client_body_timeout: float = Field(default=60.0, gt=0)
    """Seconds allowed between two reads of a request body before the exchange is aborted."""

    upstream_idle_connections: int = Field(default=64, ge=0, le=10_000)
    """Idle keep-alive connections kept per upstream address."""

    upstream_idle_timeout: float = Field(default=30.0, gt=0)
    """Seconds an idle upstream connection is kept before it is closed."""

    max_token_bytes: int = Field(default=8 * 1024, ge=512, le=64 * 1024)
    """Longest bearer token the gateway will decode; longer gets the generic 401."""

    verified_token_cache: int = Field(default=100_000, ge=1)
    """Verified tokens kept in memory (until their ``exp``) so signatures are checked once; at
    least 1 (the verifier always caches)."""

    jwks_ttl: float = Field(default=600.0, gt=0)
    """Seconds JWKS are cached when the IdP sends no Cache-Control max-age."""

    dashboard_url: str | None = None
    """Dashboard mode: the dashboard's base URL (``http(s)://host:port``). The gateway fetches its
    signed configuration from it, keeps the last good one under ``data_dir``, reports heartbeats and
    ships analytics to it. Mutually exclusive with ``config_file``; needs ``node_secret``."""

    node_secret: SecretStr | None = None
    """Secret shared with the dashboard (at least 32 characters) that authenticates this gateway
    and verifies the configuration's signature. Set it in the environment, never on a command line."""

    node_id: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    """Name this gateway reports to the dashboard; default the host name (workers add ``.wN``)."""

    redis_url: str | None = None
    """Redis URL (``redis://host:6379/0``). In dashboard mode the gateway also listens on the
    config-change channel, so a change reaches it even between long polls."""

    outbound_allowed_networks: AllowedNetworks = ()
    """Networks (CIDR, comma-separated: ``10.20.0.0/16,fd00::/8``) that the gateway's JWKS and
    OpenID discovery fetches may reach although they are not public; the same variable and rules as
    the dashboard's. By default only public addresses are reached: a ``jwks_uri`` (or issuer)
    resolving to a loopback, private, link-local, CGNAT, multicast or reserved address is not
    fetched (logged, naming the address class; that issuer's tokens get the generic 401 as in any
    JWKS outage). Allow the network of an IdP that runs on a private network (``127.0.0.0/8`` for
    one on this host, as in development)."""

    @model_validator(mode="after")
    def _analytics_default(self) -> GatewaySettings:
        if self.analytics_file is None and self.analytics_enabled:
            object.__setattr__(self, "analytics_file", self.data_dir / "analytics.jsonl")
        return self

    @model_validator(mode="after")
    def _config_source(self) -> GatewaySettings:
        if self.dashboard_url is not None:
            if self.config_file is not None:
                raise ValueError("config_file and dashboard_url are mutually exclusive: choose one")
            parts = urlsplit(self.dashboard_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("dashboard_url must be an absolute http(s) URL")
            if parts.username or parts.password or parts.query or parts.fragment:
                raise ValueError("dashboard_url must not carry credentials, a query or a fragment")
            if self.node_secret is None:
                raise ValueError("dashboard_url needs node_secret (PROPYLON_NODE_SECRET)")
        if self.node_secret is not None:
            secret = self.node_secret.get_secret_value()
            # Same floor as domain.config_signing.MIN_SECRET_LENGTH (settings import nothing).
            if len(secret) < 32 or not secret.strip():
                raise ValueError("node_secret must be at least 32 characters")
        return self


class DashboardSettings(BaseSettings):
    """How the dashboard (admin API, config publication, later the portal) runs and where its data
    lives."""

    # hide_input_in_errors: a refused password or key must not be echoed into an error message.
    model_config = SettingsConfigDict(
        env_prefix="PROPYLON_", extra="ignore", frozen=True, use_attribute_docstrings=True,
        hide_input_in_errors=True,
    )

    dashboard_host: str = "127.0.0.1"
    """Address the dashboard listens on. Loopback by default: the admin API should not face a
    network unless an operator decides so."""

    dashboard_port: int = Field(default=3000, ge=0, le=65535)
    """TCP port of the dashboard (admin API under ``/api/v1``; 0 picks a free one, for tests)."""

    data_dir: Path = Path(".propylon")
    """Where the dashboard keeps its SQLite database and, unless ``secret_key`` is set, its
    encryption key file."""

    database_url: str | None = None
    """SQLAlchemy URL of the control-plane database; default ``sqlite+aiosqlite:///{data_dir}/
    propylon.db``. PostgreSQL: ``postgresql+asyncpg://user@host:5432/dbname``."""

    secret_key: SecretStr | None = None
    """Fernet key(s), comma-separated, newest first, that encrypt secrets at rest (IdP initial
    access tokens, registration access tokens). Default: a key file ``{data_dir}/secret.key``
    created on first start. Never stored in the database."""

    admin_password: SecretStr | None = None
    """Password of the first admin (user ``admin``) created on first start; when unset a random
    one-time password is generated and printed once."""

    node_secret: SecretStr | None = None
    """Shared secret gateways present to fetch the signed config snapshot and report to the
    dashboard. Required for remote gateways; at least 32 characters."""

    production: bool = False
    """Production mode: refuse development defaults (demo secrets, generated node secrets)."""

    redis_url: str | None = None
    """Redis URL (``redis://host:6379/0``). When set, configuration changes are announced on a
    Redis channel, so that gateways long-polling any of several dashboards learn of them at once;
    unset, announcements stay inside this dashboard process."""

    admin_login_max_failures: int = Field(default=10, ge=1, le=10_000)
    """Failed admin password logins allowed per username within ``admin_login_window`` seconds
    (three times as many per client address); beyond it logins get 429 with ``Retry-After``."""

    admin_login_window: float = Field(default=300.0, gt=0, le=86_400)
    """Seconds over which failed admin password logins are counted (a sliding window)."""

    outbound_allowed_networks: AllowedNetworks = ()
    """Networks (CIDR, comma-separated: ``10.20.0.0/16,fd00::/8``) that requests to identity
    providers may reach although they are not public. By default only public addresses are
    reached: the SSRF guard refuses loopback, private, link-local, CGNAT, multicast and reserved
    addresses of discovery, JWKS, registration and client management URLs. Allow the network of an
    IdP that runs on a private network (``127.0.0.0/8`` for one on this host, as in development)."""

    reconcile_interval: float = Field(default=300.0, ge=0, le=86_400)
    """Seconds between two runs of the background reconciler, which finishes client registrations
    and deletions that stopped half-way (deleting them at the IdP); 0 turns it off."""

    reconcile_after: float = Field(default=600.0, ge=0, le=30 * 86_400)
    """Seconds a pending or failed client registration is left alone before the reconciler cleans
    it up (a registration in progress must not be taken for an abandoned one)."""

    portal_session_idle_seconds: int = Field(default=30 * 60, ge=60, le=30 * 86_400)
    """A developer's portal session not used for this long ends (they sign in again)."""

    portal_session_absolute_seconds: int = Field(default=12 * 3600, ge=60, le=90 * 86_400)
    """A portal session ends this long after sign-in, however busy it is."""

    portal_session_touch_seconds: int = Field(default=60, ge=0, le=3600)
    """A session's last use is written at most this often, so that page views are not all
    database writes; the idle lifetime is accurate to this much."""

    portal_cookie_secure: bool | None = None
    """``Secure`` on the portal's cookies: unset sets it when the request came over https (and
    always in production mode); ``true`` always, for a TLS proxy in front that makes requests look
    like http; ``false`` never (development over plain http only)."""

    @property
    def effective_database_url(self) -> str:
        """The database URL in use: ``database_url`` or the SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'propylon.db').absolute()}"
