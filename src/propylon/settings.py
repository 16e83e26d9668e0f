"""Typed process settings, read once from the environment (prefix ``PROPYLON_``) and flags.

Settings describe *how a process runs* (ports, limits, timeouts, where data lives). What the gateway
*serves* (APIs, policies, identity providers) is configuration, see ``domain/config.py``.

``cli.py`` builds a settings object once and passes it down; nothing imports a global instance.
Each field's docstring is its documentation; ``docs/configuration.md`` lists them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)


class GatewaySettings(BaseSettings):
    """How a gateway process listens, limits and times out."""

    model_config = SettingsConfigDict(
        env_prefix="PROPYLON_", extra="ignore", frozen=True, use_attribute_docstrings=True
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

    verified_token_cache: int = Field(default=100_000, ge=0)
    """Verified tokens kept in memory (until their ``exp``) so signatures are checked once."""

    jwks_ttl: float = Field(default=600.0, gt=0)
    """Seconds JWKS are cached when the IdP sends no Cache-Control max-age."""

    @model_validator(mode="after")
    def _analytics_default(self) -> GatewaySettings:
        if self.analytics_file is None and self.analytics_enabled:
            object.__setattr__(self, "analytics_file", self.data_dir / "analytics.jsonl")
        return self
