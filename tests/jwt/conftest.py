"""Fixtures for the JWT/JWKS tests: a running TestIdp, an HTTP client and injectable clocks."""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from jwt.algorithms import RSAAlgorithm

from propylon.domain.config import IdentityProvider
from propylon.gateway.jwks import JwksCache
from propylon.gateway.tokens import TokenVerifier
from tests.jwt.helpers import FakeClock
from tests.support.idp import TestIdp


@pytest.fixture
def idp() -> Iterator[TestIdp]:
    """A running local identity provider."""
    with TestIdp() as server:
        yield server


@pytest.fixture(scope="session")
def tls_context() -> ssl.SSLContext:
    """One TLS context for every client: loading the CA bundle per test is slow (and unused)."""
    return ssl.create_default_context()


@pytest.fixture
async def client(tls_context: ssl.SSLContext) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that ignores proxy settings of the environment (loopback only)."""
    async with httpx.AsyncClient(trust_env=False, verify=tls_context) as http:
        yield http


@pytest.fixture
def mono() -> FakeClock:
    """A fake monotonic clock for JwksCache."""
    return FakeClock()


@pytest.fixture
def wall() -> FakeClock:
    """A fake wall clock for TokenVerifier, starting at the real time (tokens use real time)."""
    return FakeClock(time.time())


@pytest.fixture
async def make_cache(
    idp: TestIdp, client: httpx.AsyncClient, mono: FakeClock
) -> AsyncIterator[Callable[..., JwksCache]]:
    """Build JwksCaches for ``idp`` (discovery unless ``jwks_uri`` is given) on the fake clock."""
    caches: list[JwksCache] = []

    def factory(**kwargs: Any) -> JwksCache:
        kwargs.setdefault("issuer", idp.issuer)
        kwargs.setdefault("jwks_uri", None)
        kwargs.setdefault("clock", mono)
        cache = JwksCache(client=client, **kwargs)
        caches.append(cache)
        return cache

    yield factory
    for cache in caches:
        await cache.aclose()


@pytest.fixture
async def make_verifier(
    idp: TestIdp, make_cache: Callable[..., JwksCache], wall: FakeClock
) -> Callable[..., Awaitable[tuple[TokenVerifier, JwksCache]]]:
    """Build a TokenVerifier (and its prefetched JwksCache) for a TestIdp."""

    async def factory(
        *,
        server: TestIdp | None = None,
        prefetch: bool = True,
        audience: str | None = None,
        algorithms: tuple[str, ...] | None = None,
        leeway: int = 30,
        **kwargs: Any,
    ) -> tuple[TokenVerifier, JwksCache]:
        server = server or idp
        fields: dict[str, Any] = {
            "id": "test-idp", "issuer": server.issuer, "audience": audience,
            "leeway_seconds": leeway,
        }
        if algorithms is not None:
            fields["algorithms"] = algorithms
        cache = make_cache(issuer=server.issuer)
        if prefetch:
            await cache.prefetch()
        kwargs.setdefault("clock", wall)
        return TokenVerifier(IdentityProvider(**fields), cache, **kwargs), cache

    return factory


@pytest.fixture
def rsa_verifications(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts RSA signature verifications (one entry per call to the crypto)."""
    calls: list[int] = []
    original = RSAAlgorithm.verify

    def counting(self: RSAAlgorithm, msg: bytes, key: Any, sig: bytes) -> bool:
        calls.append(1)
        return original(self, msg, key, sig)

    monkeypatch.setattr(RSAAlgorithm, "verify", counting)
    return calls
