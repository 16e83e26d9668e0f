"""The configuration in force: a compiled snapshot, swapped atomically on change.

A :class:`Snapshot` is immutable once built: routes by listen path, each with its compiled chain.
:meth:`Runtime.apply` builds a new one off to the side (reusing JWKS caches and token verifiers of
identity providers that did not change, and pre-fetching keys of new ones) and then replaces the
reference in one assignment, so a request sees either the old or the new configuration, never a
mix. Requests already running finish with the snapshot they started with.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import httpx

from propylon.domain.config import GatewayConfig, IdentityProvider
from propylon.gateway.chain import CompiledApi, compile_api
from propylon.gateway.jwks import JwksCache
from propylon.gateway.tokens import TokenVerifier
from propylon.storage.counters import CounterStore

log = logging.getLogger(__name__)

_PREFETCH_TIMEOUT = 10.0
_MAX_ROUTED: Final = 4096


class Snapshot:
    """Routes of one configuration version."""

    __slots__ = ("_routed", "config", "routes", "version")

    def __init__(self, config: GatewayConfig, routes: dict[str, CompiledApi], version: str) -> None:
        self.config = config
        self.routes = routes
        self.version = version
        # Recent answers by path. The front end hands over the same string object for a recent
        # path (paths.remembered_path), its hash kept: one lookup instead of a concatenation,
        # misses and slices per request. Paths that match no API are not kept.
        self._routed: dict[str, CompiledApi] = {}

    def route(self, path: str) -> CompiledApi | None:
        """The API with the longest listen path that is a segment prefix of ``path``."""
        api = self._routed.get(path)
        if api is None:
            api = self._route(path)
            if api is not None:
                if len(self._routed) >= _MAX_ROUTED:
                    self._routed.clear()
                self._routed[path] = api
        return api

    def _route(self, path: str) -> CompiledApi | None:
        routes = self.routes
        candidate = path if path.endswith("/") else path + "/"
        while True:
            api = routes.get(candidate)
            if api is not None:
                return api
            if candidate == "/":
                return None
            candidate = candidate[: candidate.rfind("/", 0, len(candidate) - 1) + 1]


class Runtime:
    """Owns the current snapshot and the per-issuer JWKS caches behind it."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        counters: CounterStore,
        state_dir: Path | None,
        max_token_bytes: int = 8192,
        token_cache_size: int = 100_000,
        jwks_ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.snapshot = Snapshot(GatewayConfig(), {}, "empty")
        self._http = http
        self._counters = counters
        self._state_dir = state_dir
        self._max_token_bytes = max_token_bytes
        self._token_cache_size = token_cache_size
        self._jwks_ttl = jwks_ttl
        self._clock = clock
        self._jwks: dict[tuple[str, str | None], JwksCache] = {}
        self._verifiers: dict[IdentityProvider, TokenVerifier] = {}
        self._generation = 0
        self._lock = asyncio.Lock()

    async def apply(self, config: GatewayConfig) -> Snapshot:
        """Compile ``config`` and put it in force; returns the new snapshot."""
        async with self._lock:
            jwks: dict[tuple[str, str | None], JwksCache] = {}
            verifiers: dict[IdentityProvider, TokenVerifier] = {}
            by_id: dict[str, TokenVerifier] = {}
            fresh: list[JwksCache] = []
            for idp in config.identity_providers:
                key = (idp.issuer, idp.jwks_uri)
                cache = jwks.get(key) or self._jwks.get(key)
                if cache is None:
                    cache = self._new_jwks(idp)
                    fresh.append(cache)
                jwks[key] = cache
                verifier = self._verifiers.get(idp)
                if verifier is None:
                    verifier = TokenVerifier(
                        idp, cache,
                        max_token_bytes=self._max_token_bytes,
                        cache_size=self._token_cache_size,
                    )
                verifiers[idp] = verifier
                by_id[idp.id] = verifier
            if fresh:
                await self._prefetch(fresh)
            policies = {p.id: p for p in config.policies}
            clients = {c.client_id: c for c in config.clients}
            revoked = frozenset(config.revoked_clients)
            routes = {}
            for api in config.apis:
                compiled = compile_api(
                    api, policies=policies, clients=clients, revoked=revoked,
                    verifiers=by_id, counters=self._counters, clock=self._clock,
                )
                routes[compiled.listen_path] = compiled
            self._generation += 1
            version = config.version or f"local-{self._generation}"
            snapshot = Snapshot(config, routes, version)
            retired = [c for k, c in self._jwks.items() if k not in jwks]
            self._jwks, self._verifiers, self.snapshot = jwks, verifiers, snapshot
            for cache in retired:
                await cache.aclose()
            log.info(
                "configuration %s in force: %d APIs, %d policies, %d identity providers",
                version, len(routes), len(policies), len(verifiers),
            )
            return snapshot

    def _new_jwks(self, idp: IdentityProvider) -> JwksCache:
        state_file = None
        if self._state_dir is not None:
            digest = hashlib.sha256(f"{idp.issuer}\n{idp.jwks_uri}".encode()).hexdigest()[:24]
            state_file = self._state_dir / "jwks" / f"{digest}.json"
        return JwksCache(
            issuer=idp.issuer, jwks_uri=idp.jwks_uri, client=self._http,
            state_file=state_file, default_ttl=self._jwks_ttl,
        )

    async def _prefetch(self, caches: list[JwksCache]) -> None:
        # Keys are fetched before the snapshot goes live so the first requests do not pay for it;
        # an IdP that is down does not block the configuration (its tokens get 401 until it is up).
        try:
            await asyncio.wait_for(
                asyncio.gather(*(c.prefetch() for c in caches)), _PREFETCH_TIMEOUT
            )
        except TimeoutError:
            log.warning("JWKS prefetch took longer than %.0f s; continuing", _PREFETCH_TIMEOUT)

    def flush_keys(self) -> None:
        """Drop every cached JWKS and verified token (the flush API)."""
        for cache in self._jwks.values():
            cache.flush()
        for verifier in self._verifiers.values():
            verifier.flush()

    async def aclose(self) -> None:
        """Stop background work of the JWKS caches."""
        for cache in self._jwks.values():
            await cache.aclose()
        self._jwks.clear()
