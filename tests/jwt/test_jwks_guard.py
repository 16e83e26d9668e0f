"""JwksCache behind the SSRF guard's transport: a host name is judged by what it resolves to, the
connection goes to the checked address, and a refusal is an ordinary fetch failure."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from propylon.gateway.jwks import JwksCache
from propylon.outbound.guard import OutboundGuard
from tests.jwt.helpers import FakeClock
from tests.support.idp import TestIdp
from tests.support.resolving_guard import ResolvingGuard

MakeGuardedCache = Callable[[OutboundGuard, str], JwksCache]


@pytest.fixture
async def guarded_cache(idp: TestIdp, mono: FakeClock) -> AsyncIterator[MakeGuardedCache]:
    """JwksCaches for ``idp`` whose client connects through a guard (as the gateway's does)."""
    clients: list[httpx.AsyncClient] = []
    caches: list[JwksCache] = []

    def factory(guard: OutboundGuard, jwks_uri: str) -> JwksCache:
        client = httpx.AsyncClient(transport=guard.transport(), follow_redirects=False,
                                   trust_env=False)
        clients.append(client)
        cache = JwksCache(issuer=idp.issuer, jwks_uri=jwks_uri, client=client, clock=mono)
        caches.append(cache)
        return cache

    yield factory
    for cache in caches:
        await cache.aclose()
    for client in clients:
        await client.aclose()


def _port(idp: TestIdp) -> str:
    return idp.issuer.rsplit(":", 1)[1]


async def test_a_name_resolving_to_a_private_address_is_not_fetched(
    idp: TestIdp, guarded_cache: MakeGuardedCache, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="propylon.gateway.jwks")
    guard = ResolvingGuard("keys.idp.invalid", "10.20.30.40")
    cache = guarded_cache(guard, f"http://keys.idp.invalid:{_port(idp)}/jwks")
    await cache.prefetch()
    assert not cache.available
    assert cache.get("rsa-1") is None
    assert guard.lookups == 1
    assert "keys.idp.invalid (10.20.30.40) is a private address" in caplog.text
    assert "no keys available" in caplog.text


async def test_the_fetch_goes_to_the_checked_address(
    idp: TestIdp, guarded_cache: MakeGuardedCache
) -> None:
    # The name exists in no DNS: the keys can only come through the address the guard checked.
    guard = ResolvingGuard("keys.idp.invalid", "127.0.0.1")
    cache = guarded_cache(guard, f"http://keys.idp.invalid:{_port(idp)}/jwks")
    await cache.prefetch()
    assert cache.get("rsa-1") is not None
    assert idp.jwks_hits == 1
    assert guard.lookups == 1


async def test_the_default_guard_refuses_the_loopback_idp(
    idp: TestIdp, guarded_cache: MakeGuardedCache, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="propylon.gateway.jwks")
    cache = guarded_cache(OutboundGuard(), idp.jwks_uri)
    await cache.prefetch()
    assert not cache.available
    assert idp.jwks_hits == 0
    assert "127.0.0.1 is a loopback address" in caplog.text
