"""The JWT auth step's memory of whole Authorization values: fast, but never outliving the rules.

A repeat caller is served from the step's own cache (keyed by the raw header) without parsing the
header or asking the verifier. These tests pin what that cache must still respect: the token's
expiry, a key set that changed (withdrawn key, flush), and tokens accepted only through the
leeway, which are never remembered.
"""

from __future__ import annotations

import time

import pytest

from propylon.domain.config import AccessRule, JwtAuth, Policy
from propylon.gateway.errors import Unauthorized
from propylon.gateway.exchange import Exchange
from propylon.gateway.jwks import JwksCache
from propylon.gateway.steps.identify import JwtAuthStep, PolicyTable
from propylon.gateway.tokens import TokenVerifier
from tests.jwt.helpers import FakeClock
from tests.jwt.test_tokens import MakeVerifier
from tests.support.idp import TestIdp


def _step(verifier: TokenVerifier) -> JwtAuthStep:
    table = PolicyTable("api", {"p": Policy(id="p", access_rights={"api": AccessRule()})})
    auth = JwtAuth(identity_provider="test-idp", identity_claim="sub", default_policies=("p",))
    return JwtAuthStep(auth, verifier, table, clients={}, revoked=frozenset())


def _exchange(token: str) -> Exchange:
    return Exchange(
        "GET", "/x", b"", [], version="1.1", keep_alive=True, client_ip="127.0.0.1", host=b"",
        authorization=b"Bearer " + token.encode(), started=time.perf_counter(),
    )


async def _identity(step: JwtAuthStep, token: str) -> str | None:
    return await _identity_of(step, _exchange(token))


async def _identity_of(step: JwtAuthStep, exchange: Exchange) -> str | None:
    pending = step.run(exchange)
    if pending is not None:
        await pending
    return exchange.identity


async def _alice_remembered(
    idp: TestIdp, make_verifier: MakeVerifier
) -> tuple[TokenVerifier, JwksCache, JwtAuthStep, str]:
    """A step that has served one of alice's tokens once, and so remembers it."""
    verifier, cache = await make_verifier()
    step = _step(verifier)
    token = idp.mint({"sub": "alice"})
    assert await _identity(step, token) == "alice"
    return verifier, cache, step, token


async def test_a_repeat_caller_is_served_without_verifying_again(
    idp: TestIdp, make_verifier: MakeVerifier, rsa_verifications: list[int]
) -> None:
    verifier, _ = await make_verifier()
    step = _step(verifier)
    token = idp.mint({"sub": "alice"})
    for _ in range(3):
        assert await _identity(step, token) == "alice"
    other = idp.mint({"sub": "bob"})
    assert await _identity(step, other) == "bob"
    assert len(rsa_verifications) == 2


async def test_a_remembered_token_is_refused_once_it_expires(
    idp: TestIdp, make_verifier: MakeVerifier, wall: FakeClock
) -> None:
    verifier, _ = await make_verifier(leeway=0)
    step = _step(verifier)
    exp = int(wall.now) + 60
    token = idp.mint({"sub": "alice", "exp": exp})
    assert await _identity(step, token) == "alice"
    wall.now = exp - 0.001
    assert await _identity(step, token) == "alice"
    wall.now = exp
    with pytest.raises(Unauthorized) as info:
        await _identity(step, token)
    assert info.value.reason == "expired"


async def test_a_withdrawn_key_ends_remembered_tokens(
    idp: TestIdp, make_verifier: MakeVerifier
) -> None:
    _, cache, step, token = await _alice_remembered(idp, make_verifier)
    idp.rotate()
    idp.retire("rsa-1")
    await cache.prefetch()
    with pytest.raises(Unauthorized):
        await _identity(step, token)


async def test_a_flush_makes_remembered_tokens_verify_again(
    idp: TestIdp, make_verifier: MakeVerifier, rsa_verifications: list[int]
) -> None:
    verifier, _, step, token = await _alice_remembered(idp, make_verifier)
    verifier.flush()
    assert await _identity(step, token) == "alice"
    assert len(rsa_verifications) == 2


async def test_a_token_accepted_only_through_the_leeway_is_never_remembered(
    idp: TestIdp, make_verifier: MakeVerifier, wall: FakeClock, rsa_verifications: list[int]
) -> None:
    verifier, _ = await make_verifier(leeway=30)
    step = _step(verifier)
    token = idp.mint({"sub": "alice", "exp": int(wall.now) - 10})
    assert await _identity(step, token) == "alice"
    assert await _identity(step, token) == "alice"
    assert len(rsa_verifications) == 2


async def test_a_value_ending_like_a_remembered_one_is_not_taken_for_it(
    idp: TestIdp, make_verifier: MakeVerifier, rsa_verifications: list[int]
) -> None:
    # Remembered values are looked up by their last bytes; the whole value must still match.
    _, _, step, token = await _alice_remembered(idp, make_verifier)
    forged = _exchange(token)
    forged.authorization = b"Bearer not-a-token." + token[-40:].encode()
    with pytest.raises(Unauthorized):
        await _identity_of(step, forged)
    # The same token with other spacing is another value: verified (from the verifier's cache),
    # not served from the step's memory of the first spelling, and remembered in its place.
    spaced = _exchange(token)
    spaced.authorization = b"Bearer  " + token.encode()
    assert await _identity_of(step, spaced) == "alice"
    assert await _identity(step, token) == "alice"
    assert len(rsa_verifications) == 1
