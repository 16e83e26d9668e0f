"""JwksCache through real HTTP: discovery, key filtering, TTLs, outages, refetch rules, state."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from propylon.gateway.jwks import JwksCache, SigningKey
from tests.jwt.helpers import FakeClock, eventually
from tests.support.idp import TestIdp

MakeCache = Callable[..., JwksCache]


def _jwk(public: Any, **fields: Any) -> dict[str, Any]:
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    jwk.update(fields)
    return jwk


# -- discovery and fetching ---------------------------------------------------------------------


async def test_prefetch_discovers_the_jwks_and_pins_algorithms(
    idp: TestIdp, make_cache: MakeCache
) -> None:
    cache = make_cache()
    assert cache.get("rsa-1") is None  # nothing before the first fetch
    await cache.prefetch()
    assert (idp.discovery_hits, idp.jwks_hits) == (1, 1)
    rsa_key, ec_key = cache.get("rsa-1"), cache.get("ec-1")
    assert rsa_key is not None
    assert isinstance(rsa_key.key, rsa.RSAPublicKey)
    assert rsa_key.alg == "RS256"
    assert ec_key is not None
    assert isinstance(ec_key.key, ec.EllipticCurvePublicKey)
    assert ec_key.alg == "ES256"
    assert cache.get("unknown") is None
    assert cache.available


async def test_configured_jwks_uri_skips_discovery(idp: TestIdp, make_cache: MakeCache) -> None:
    cache = make_cache(jwks_uri=idp.jwks_uri)
    await cache.prefetch()
    assert (idp.discovery_hits, idp.jwks_hits) == (0, 1)
    assert cache.get("rsa-1") is not None


async def test_discovery_result_is_reused(idp: TestIdp, make_cache: MakeCache) -> None:
    cache = make_cache()
    await cache.prefetch()
    await cache.prefetch()
    assert (idp.discovery_hits, idp.jwks_hits) == (1, 2)


@pytest.mark.parametrize("suffix", ["/", "/other", ":1", "x"])
async def test_discovery_issuer_must_match_exactly(
    idp: TestIdp, make_cache: MakeCache, suffix: str
) -> None:
    idp.set_discovery({"issuer": idp.issuer + suffix})
    cache = make_cache()
    await cache.prefetch()
    assert idp.jwks_hits == 0
    assert cache.get("rsa-1") is None
    assert not cache.available


@pytest.mark.parametrize("jwks_uri", ["file:///etc/passwd", "/jwks", 42, None])
async def test_discovery_needs_an_http_jwks_uri(
    idp: TestIdp, make_cache: MakeCache, jwks_uri: object
) -> None:
    idp.set_discovery({"jwks_uri": jwks_uri})
    cache = make_cache()
    await cache.prefetch()
    assert cache.get("rsa-1") is None


async def test_prefetch_never_raises_when_the_idp_is_unreachable(
    idp: TestIdp, make_cache: MakeCache, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache()
    idp.stop()
    await cache.prefetch()
    assert cache.get("rsa-1") is None
    assert "JWKS fetch" in caplog.text


async def test_kidless_lookup_needs_exactly_one_key(idp: TestIdp, make_cache: MakeCache) -> None:
    cache = make_cache()
    await cache.prefetch()
    assert cache.get(None) is None  # two keys: ambiguous
    idp.retire("ec-1")
    await cache.prefetch()
    only = cache.get(None)
    assert only is not None
    assert only.kid == "rsa-1"


# -- key filtering and algorithm pinning --------------------------------------------------------


async def test_pinned_alg_allows_only_itself(idp: TestIdp, make_cache: MakeCache) -> None:
    cache = make_cache()
    await cache.prefetch()
    key = cache.get("rsa-1")
    assert key is not None
    assert key.allows("RS256")
    for other in ("PS256", "RS512", "ES256", "HS256", "none"):
        assert not key.allows(other)


async def test_family_is_derived_when_the_jwk_has_no_alg(
    client: Any, mono: FakeClock
) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    p521 = ec.generate_private_key(ec.SECP521R1()).public_key()
    edwards = ed25519.Ed25519PrivateKey.generate().public_key()
    goldilocks = ed448.Ed448PrivateKey.generate().public_key()
    with TestIdp(include_alg=False) as server:
        server.add_jwk(_jwk(p384, kid="p384", use="sig"))
        server.add_jwk(_jwk(p521, kid="p521"))
        server.add_jwk(_jwk(edwards, kid="ed25519"))
        server.add_jwk(_jwk(goldilocks, kid="ed448"))
        cache = JwksCache(issuer=server.issuer, jwks_uri=None, client=client, clock=mono)
        await cache.prefetch()
        await cache.aclose()
    expected = {
        "rsa-1": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
        "ec-1": {"ES256"},
        "p384": {"ES384"},
        "p521": {"ES512"},
        "ed25519": {"EdDSA"},
        "ed448": {"EdDSA"},
    }
    candidates = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                  "ES512", "EdDSA", "HS256", "HS512", "none", "ES256K")
    for kid, allowed in expected.items():
        key = cache.get(kid)
        assert key is not None, kid
        assert key.alg is None
        assert {alg for alg in candidates if key.allows(alg)} == allowed, kid


async def test_unusable_jwks_are_skipped_and_logged(
    idp: TestIdp, make_cache: MakeCache, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="propylon.gateway.jwks")
    good = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 -- must be skipped
    k1 = ec.generate_private_key(ec.SECP256K1())
    p384 = ec.generate_private_key(ec.SECP384R1())
    hostile: list[Any] = [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "skip-oct", "alg": "HS256"},
        _jwk(good.public_key(), kid="skip-enc", use="enc"),
        _jwk(good.public_key(), kid="skip-ops", key_ops=["encrypt"]),
        _jwk(good.public_key(), kid="skip-hs", alg="HS256"),
        _jwk(good.public_key(), kid="skip-mismatch", alg="ES256"),
        _jwk(good.public_key(), kid="skip-none", alg="none"),
        _jwk(good.public_key(), kid=7),
        _jwk(small.public_key(), kid="skip-small"),
        _jwk(k1.public_key(), kid="skip-secp256k1"),
        _jwk(p384.public_key(), kid="skip-curve-mismatch", alg="ES256"),
        {**RSAAlgorithm.to_jwk(good, as_dict=True), "kid": "skip-private"},
        {"kty": "RSA", "kid": "skip-garbage", "n": "!!!", "e": "AQAB"},
        {"kty": "EC", "kid": "skip-not-on-curve", "crv": "P-256",
         "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
         "y": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
        {"kty": "RSA", "kid": "skip-incomplete"},
        {"kty": "XYZ", "kid": "skip-kty"},
        {"kid": "skip-no-kty"},
        "not an object",
        None,
        _jwk(good.public_key(), kid="rsa-1"),  # duplicate kid: the first key wins
    ]
    for jwk in hostile:
        idp.add_jwk(jwk)
    cache = make_cache()
    await cache.prefetch()
    published = [j.get("kid") for j in idp.jwks()["keys"] if isinstance(j, dict)]
    assert sum(1 for kid in published if str(kid).startswith("skip-")) == 15
    for kid in published:
        if isinstance(kid, str) and kid.startswith("skip-"):
            assert cache.get(kid) is None, kid
    original = cache.get("rsa-1")
    assert original is not None
    assert original.key.public_numbers() == idp.private_key("rsa-1").public_key().public_numbers()
    assert cache.get("ec-1") is not None
    assert "skipping JWK" in caplog.text
    assert "duplicate kid 'rsa-1'" in caplog.text
    # Key material never reaches the logs.
    assert RSAAlgorithm.to_jwk(good.public_key(), as_dict=True)["n"] not in caplog.text


def test_signing_key_is_frozen() -> None:
    key = SigningKey(kid="a", alg="RS256", key=None)
    with pytest.raises(AttributeError):
        key.alg = "HS256"  # type: ignore[misc]


# -- TTL ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [
        (None, 600),
        ("max-age=5", 60),
        ("public, max-age=300", 300),
        ("max-age=300, must-revalidate", 300),
        ("max-age=999999999", 86400),
        ("no-store", 60),
        ("no-cache, max-age=3600", 60),
        ("max-age=soon", 600),
        ("s-maxage=5000", 600),
    ],
)
async def test_ttl_comes_from_cache_control_clamped(
    idp: TestIdp, make_cache: MakeCache, cache_control: str | None, ttl: float
) -> None:
    idp.set_cache_control(cache_control)
    cache = make_cache()
    await cache.prefetch()
    assert cache.ttl == ttl


async def test_ttl_expiry_schedules_one_background_refresh_without_blocking(
    idp: TestIdp, make_cache: MakeCache, mono: FakeClock
) -> None:
    idp.set_cache_control("max-age=120")
    cache = make_cache()
    await cache.prefetch()
    mono.advance(119)
    assert cache.get("rsa-1") is not None
    await asyncio.sleep(0.05)
    assert idp.jwks_hits == 1  # still fresh: no refresh

    idp.set_delay(0.5)
    mono.advance(2)
    started = time.monotonic()
    for _ in range(50):
        assert cache.get("rsa-1") is not None  # served at once from the current keys
    assert time.monotonic() - started < 0.25
    await eventually(lambda: idp.jwks_hits == 2)
    await asyncio.sleep(0.6)  # let the delayed refresh complete
    for _ in range(50):
        assert cache.get("rsa-1") is not None
    await asyncio.sleep(0.05)
    assert idp.jwks_hits == 2  # one refresh for all those lookups


# -- outages and garbage ------------------------------------------------------------------------


async def test_last_good_keys_are_served_while_the_idp_fails(
    idp: TestIdp, make_cache: MakeCache, mono: FakeClock
) -> None:
    cache = make_cache(max_stale=3600)
    await cache.prefetch()
    idp.set_failing(500)
    mono.advance(601)  # past the default TTL
    assert cache.get("rsa-1") is not None
    await eventually(lambda: idp.jwks_hits >= 2)  # the refresh was tried and failed
    await cache.prefetch()
    assert cache.get("rsa-1") is not None
    assert cache.available
    mono.advance(3000)  # 3601 s after the last good fetch: too stale
    assert cache.get("rsa-1") is None
    assert not cache.available


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b"[]",
        b'{"keys": "none"}',
        b'{"keys": []}',
        b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}',
        b"\xff\xfe",
    ],
)
async def test_garbage_answers_keep_the_last_good_keys(
    idp: TestIdp, make_cache: MakeCache, body: bytes
) -> None:
    cache = make_cache()
    await cache.prefetch()
    idp.set_jwks_body(body)
    await cache.prefetch()
    assert idp.jwks_hits == 2
    assert cache.get("rsa-1") is not None


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "read-to-close"])
async def test_oversized_jwks_is_a_failure(
    idp: TestIdp, make_cache: MakeCache, declared: bool
) -> None:
    idp.set_content_length(declared)
    cache = make_cache(max_bytes=256)
    await cache.prefetch()
    assert idp.jwks_hits == 1
    assert cache.get("rsa-1") is None


async def test_a_body_without_content_length_is_read(
    idp: TestIdp, make_cache: MakeCache
) -> None:
    idp.set_content_length(False)
    cache = make_cache()
    await cache.prefetch()
    assert cache.get("rsa-1") is not None


async def test_redirects_are_not_followed(idp: TestIdp, make_cache: MakeCache) -> None:
    idp.set_jwks_redirect(f"{idp.issuer}/jwks-moved")
    cache = make_cache(jwks_uri=idp.jwks_uri)
    await cache.prefetch()
    assert cache.get("rsa-1") is None


async def test_fetch_time_is_bounded(idp: TestIdp, make_cache: MakeCache) -> None:
    idp.set_delay(3)
    cache = make_cache(jwks_uri=idp.jwks_uri, timeout=0.2)
    started = time.monotonic()
    await cache.prefetch()
    assert time.monotonic() - started < 1.5
    assert cache.get("rsa-1") is None


async def test_a_slow_drip_answer_is_cut_by_the_total_timeout(
    idp: TestIdp, make_cache: MakeCache
) -> None:
    idp.set_trickle(0.05)  # each read is quick, the whole body takes over a second
    cache = make_cache(jwks_uri=idp.jwks_uri, timeout=0.3)
    started = time.monotonic()
    await cache.prefetch()
    assert time.monotonic() - started < 0.9
    assert cache.get("rsa-1") is None


# -- unknown kid: forced refetch ----------------------------------------------------------------


async def test_refetch_finds_a_rotated_key(idp: TestIdp, make_cache: MakeCache) -> None:
    cache = make_cache()
    await cache.prefetch()
    kid = idp.rotate()
    assert cache.get(kid) is None
    key = await cache.refetch_for(kid)
    assert key is not None
    assert key.kid == kid
    assert idp.jwks_hits == 2


async def test_refetch_is_rate_limited_and_negative_cached(
    idp: TestIdp, make_cache: MakeCache, mono: FakeClock
) -> None:
    cache = make_cache(refetch_interval=30, min_ttl=60)
    await cache.prefetch()
    assert await cache.refetch_for("ghost-1") is None
    assert idp.jwks_hits == 2
    for index in range(20):  # within 30 s: no more fetches, whatever the kid
        assert await cache.refetch_for(f"ghost-{index}") is None
    mono.advance(29)
    assert await cache.refetch_for("ghost-99") is None
    assert idp.jwks_hits == 2
    mono.advance(2)  # 31 s later: a fresh kid may fetch again...
    assert await cache.refetch_for("ghost-1") is None  # ...but not a negative-cached one
    assert idp.jwks_hits == 2
    assert await cache.refetch_for("ghost-2") is None
    assert idp.jwks_hits == 3
    mono.advance(61)  # the negative entry for ghost-1 has expired
    assert await cache.refetch_for("ghost-1") is None
    assert idp.jwks_hits == 4


async def test_refetch_is_single_flight(idp: TestIdp, make_cache: MakeCache) -> None:
    cache = make_cache()
    await cache.prefetch()
    kid = idp.rotate()
    idp.set_delay(0.2)
    keys = await asyncio.gather(*(cache.refetch_for(kid) for _ in range(25)))
    assert all(key is not None and key.kid == kid for key in keys)
    assert idp.jwks_hits == 2


async def test_a_failed_refetch_does_not_negative_cache(
    idp: TestIdp, make_cache: MakeCache, mono: FakeClock
) -> None:
    cache = make_cache()
    await cache.prefetch()
    kid = idp.rotate()
    idp.set_failing(503)
    assert await cache.refetch_for(kid) is None
    idp.set_failing(None)
    mono.advance(31)
    assert await cache.refetch_for(kid) is not None


async def test_a_cancelled_waiter_does_not_cancel_the_shared_fetch(
    idp: TestIdp, make_cache: MakeCache
) -> None:
    cache = make_cache()
    await cache.prefetch()
    kid = idp.rotate()
    idp.set_delay(0.2)
    first = asyncio.create_task(cache.refetch_for(kid))
    second = asyncio.create_task(cache.refetch_for(kid))
    await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    key = await second
    assert key is not None
    assert idp.jwks_hits == 2


# -- persisted state ----------------------------------------------------------------------------


async def test_state_is_persisted_and_reloaded_with_the_idp_down(
    idp: TestIdp, make_cache: MakeCache, tmp_path: Path
) -> None:
    state = tmp_path / "state" / "jwks.json"
    first = make_cache(state_file=state)
    await first.prefetch()
    assert json.loads(state.read_text())["issuer"] == idp.issuer
    assert [p.name for p in state.parent.iterdir()] == ["jwks.json"]  # no temp file left

    idp.set_failing(500)
    second = make_cache(state_file=state)
    assert second.get("rsa-1") is not None  # from disk, before any fetch
    assert second.get("ec-1") is not None
    await second.prefetch()  # fails (discovery answers 500), keys stay
    assert idp.discovery_hits == 2
    assert second.get("rsa-1") is not None


async def test_persisted_age_counts_toward_max_stale(
    idp: TestIdp, make_cache: MakeCache, mono: FakeClock, tmp_path: Path
) -> None:
    state = tmp_path / "jwks.json"
    await make_cache(state_file=state).prefetch()
    document = json.loads(state.read_text())
    document["saved_at"] -= 90
    state.write_text(json.dumps(document))
    idp.set_failing(500)
    cache = make_cache(state_file=state, max_stale=100)
    assert cache.get("rsa-1") is not None
    mono.advance(11)
    assert cache.get("rsa-1") is None


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda doc: doc.update(saved_at=doc["saved_at"] - 8 * 86400), id="too-old"),
        pytest.param(lambda doc: doc.update(issuer="http://127.0.0.1:1"), id="other-issuer"),
        pytest.param(lambda doc: doc.update(jwks={"keys": []}), id="no-keys"),
        pytest.param(lambda doc: doc.update(version=99), id="unknown-version"),
        pytest.param(lambda doc: doc.update(saved_at="yesterday"), id="bad-timestamp"),
        pytest.param(lambda doc: doc.clear(), id="empty"),
    ],
)
async def test_unusable_state_is_ignored(
    idp: TestIdp, make_cache: MakeCache, tmp_path: Path, mutate: Callable[[dict[str, Any]], None]
) -> None:
    state = tmp_path / "jwks.json"
    await make_cache(state_file=state).prefetch()
    document = json.loads(state.read_text())
    mutate(document)
    state.write_text(json.dumps(document))
    assert make_cache(state_file=state).get("rsa-1") is None


async def test_corrupt_state_is_ignored(make_cache: MakeCache, tmp_path: Path) -> None:
    state = tmp_path / "jwks.json"
    state.write_bytes(b"\x00{not json")
    assert make_cache(state_file=state).get("rsa-1") is None


# -- administration -----------------------------------------------------------------------------


async def test_flush_drops_keys_state_and_negative_cache(
    idp: TestIdp, make_cache: MakeCache, tmp_path: Path
) -> None:
    state = tmp_path / "jwks.json"
    cache = make_cache(state_file=state)
    await cache.prefetch()
    assert await cache.refetch_for("ghost") is None  # negative-cached, rate limit used
    cache.flush()
    assert not cache.available
    assert not state.exists()
    assert await cache.refetch_for("ghost") is None  # neither rate limited nor negative-cached
    assert idp.jwks_hits == 3
    assert cache.get("rsa-1") is not None
    await eventually(state.exists)
    cache.flush()
    assert cache.get("rsa-1") is None  # nothing until fetched (get schedules that fetch)
    await eventually(lambda: cache.get("rsa-1") is not None)
    await eventually(state.exists)


async def test_aclose_cancels_the_background_refresh(
    idp: TestIdp, make_cache: MakeCache, mono: FakeClock
) -> None:
    cache = make_cache()
    await cache.prefetch()
    idp.set_delay(5)
    mono.advance(601)
    assert cache.get("rsa-1") is not None  # schedules the refresh
    await eventually(lambda: idp.jwks_hits == 2)
    started = time.monotonic()
    await cache.aclose()
    assert time.monotonic() - started < 1
    mono.advance(601)
    assert cache.get("rsa-1") is not None
    await cache.prefetch()
    assert idp.jwks_hits == 2  # closed: no more fetches


async def test_a_background_refresh_does_not_negative_cache(
    idp: TestIdp, make_cache: MakeCache, mono: FakeClock
) -> None:
    # A kid that arrives while a TTL refresh is in flight may have been published after that
    # refresh read the JWKS: only a fetch started for the kid itself may declare it unknown.
    cache = make_cache()
    await cache.prefetch()
    idp.set_delay(0.2)
    mono.advance(601)
    assert cache.get("rsa-1") is not None  # starts the background refresh
    assert await cache.refetch_for("late") is None  # joins it
    assert idp.jwks_hits == 2
    idp.set_delay(0)
    assert await cache.refetch_for("late") is None  # not negative-cached: a forced fetch
    assert idp.jwks_hits == 3
    assert await cache.refetch_for("late") is None  # now it is, and rate limited anyway
    assert idp.jwks_hits == 3
