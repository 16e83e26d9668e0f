"""TokenVerifier through real HTTP to a TestIdp: every JWT rule of DESIGN §4, and its caches."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import random
from collections.abc import Awaitable, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import RSAAlgorithm

from propylon.domain.config import IdentityProvider
from propylon.gateway.jwks import JwksCache
from propylon.gateway.tokens import TokenRejected, TokenVerifier
from tests.jwt.helpers import FakeClock
from tests.support.idp import TestIdp

MakeVerifier = Callable[..., Awaitable[tuple[TokenVerifier, JwksCache]]]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw_token(idp: TestIdp, header: bytes, payload: bytes, kid: str = "rsa-1") -> str:
    """A token whose header and payload bytes are given verbatim, signed RS256 by ``kid``."""
    signing_input = f"{_b64(header)}.{_b64(payload)}".encode()
    signature = RSAAlgorithm(RSAAlgorithm.SHA256).sign(signing_input, idp.private_key(kid))
    return f"{signing_input.decode()}.{_b64(signature)}"


async def _rejected(verifier: TokenVerifier, token: str) -> str:
    """The reason ``token`` is refused, checked on both the sync and the async path."""
    try:
        result = verifier.verify_now(token)
    except TokenRejected as exc:
        sync_reason: str | None = exc.reason
    else:
        assert result is None, "verify_now accepted the token"
        sync_reason = None  # unknown kid: only the async path can decide
    with pytest.raises(TokenRejected) as info:
        await verifier.verify(token)
    if sync_reason is not None:
        assert info.value.reason == sync_reason
    return info.value.reason


# -- accepted tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"])
async def test_a_valid_token_is_accepted(
    idp: TestIdp, make_verifier: MakeVerifier, kid: str
) -> None:
    verifier, _ = await make_verifier()
    token = idp.mint({"sub": "alice", "scope": "read"}, kid=kid)
    claims = verifier.verify_now(token)
    assert claims is not None
    assert claims["sub"] == "alice"
    assert claims["iss"] == idp.issuer
    assert await verifier.verify(token) == claims


async def test_verify_now_returns_none_only_for_an_unknown_kid(
    idp: TestIdp, make_verifier: MakeVerifier
) -> None:
    verifier, _ = await make_verifier()
    kid = idp.rotate()
    token = idp.mint({"sub": "bob"}, kid=kid)
    assert verifier.verify_now(token) is None
    assert idp.jwks_hits == 1  # the sync path never fetches
    claims = await verifier.verify(token)
    assert claims["sub"] == "bob"
    assert idp.jwks_hits == 2


async def test_a_token_without_kid_needs_exactly_one_key(
    idp: TestIdp, make_verifier: MakeVerifier
) -> None:
    token = idp.mint({"sub": "carol"}, kid=None)
    verifier, _ = await make_verifier()
    assert await _rejected(verifier, token) == "unknown_kid"  # rsa-1 and ec-1 published
    idp.retire("ec-1")
    verifier, _ = await make_verifier()
    assert (await verifier.verify(token))["sub"] == "carol"


# -- size and header ----------------------------------------------------------------------------


async def test_token_size_is_capped_before_decoding(
    idp: TestIdp, make_verifier: MakeVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = idp.mint({"sub": "dave"})
    verifier, cache = await make_verifier(max_token_bytes=len(token))
    assert verifier.verify_now(token) is not None  # exactly at the cap: fine
    # Over the cap, garbage is "too_large", not "malformed": nothing was decoded or looked up.
    monkeypatch.setattr(cache, "get", lambda kid: pytest.fail("looked up a key"))
    assert await _rejected(verifier, "!" * (len(token) + 1)) == "too_large"
    assert await _rejected(verifier, token + "A") == "too_large"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", ""])
async def test_alg_none_is_refused(idp: TestIdp, make_verifier: MakeVerifier, alg: str) -> None:
    verifier, _ = await make_verifier()
    token = idp.mint({"sub": "eve"}, alg=alg, sign_with=b"")
    assert await _rejected(verifier, token) == "alg_not_allowed"


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_with_the_public_key_as_secret_is_refused(
    idp: TestIdp, make_verifier: MakeVerifier, alg: str
) -> None:
    verifier, cache = await make_verifier()
    pem = idp.public_pem("rsa-1")
    token = idp.mint({"sub": "mallory"}, alg=alg, sign_with=pem)
    # The attack is real: the signature is a valid HMAC keyed with the published public key.
    signing_input, signature = token.rsplit(".", 1)
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    assert _b64(hmac.new(pem, signing_input.encode(), digest).digest()) == signature
    assert await _rejected(verifier, token) == "alg_not_allowed"
    key = cache.get("rsa-1")
    assert key is not None
    assert not key.allows(alg)


async def test_only_the_providers_algorithms_are_accepted(
    idp: TestIdp, make_verifier: MakeVerifier
) -> None:
    verifier, _ = await make_verifier(algorithms=("ES256",))
    assert await _rejected(verifier, idp.mint({"sub": "x"}, kid="rsa-1")) == "alg_not_allowed"
    assert verifier.verify_now(idp.mint({"sub": "x"}, kid="ec-1")) is not None


def test_symmetric_algorithms_cannot_be_configured() -> None:
    with pytest.raises(ValueError, match="unsupported algorithm"):
        IdentityProvider(id="x", issuer="https://idp.example", algorithms=("RS256", "HS256"))


async def test_alg_must_match_the_keys_pinned_algorithm(
    idp: TestIdp, make_verifier: MakeVerifier
) -> None:
    verifier, _ = await make_verifier()
    # Same RSA key, another RSA algorithm: the JWK pins RS256.
    assert await _rejected(verifier, idp.mint({"sub": "x"}, alg="PS256")) == "alg_not_allowed"
    # An EC-signed token claiming the RSA key's kid.
    token = idp.mint({"sub": "x"}, kid="rsa-1", alg="ES256", sign_with=idp.private_key("ec-1"))
    assert await _rejected(verifier, token) == "alg_not_allowed"


async def test_without_jwk_alg_the_key_type_decides(
    make_verifier: MakeVerifier,
) -> None:
    with TestIdp(include_alg=False) as server:
        verifier, _ = await make_verifier(server=server)
        assert verifier.verify_now(server.mint({"sub": "x"}, alg="PS384")) is not None
        assert verifier.verify_now(server.mint({"sub": "x"}, alg="RS512")) is not None
        token = server.mint({"sub": "x"}, kid="rsa-1", alg="ES256",
                            sign_with=server.private_key("ec-1"))
        assert await _rejected(verifier, token) == "alg_not_allowed"
        assert await _rejected(verifier, server.mint({"sub": "x"}, kid="ec-1", alg="ES384",
                                                     sign_with=ec.generate_private_key(
                                                         ec.SECP384R1()))) == "alg_not_allowed"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jwk", {"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
        ("jku", "https://attacker.example/jwks"),
        ("x5u", "https://attacker.example/cert.pem"),
        ("x5c", ["MIIB"]),
        ("crit", ["exp"]),
    ],
)
async def test_forbidden_headers_are_refused(
    idp: TestIdp, make_verifier: MakeVerifier, name: str, value: object
) -> None:
    verifier, _ = await make_verifier()
    token = idp.mint({"sub": "x"}, headers={name: value})
    assert await _rejected(verifier, token) == f"forbidden_header:{name}"


def _malformed_tokens(idp: TestIdp) -> dict[str, str]:
    good = idp.mint({"sub": "x"})
    header, payload, signature = good.split(".")
    rs256 = {"alg": "RS256", "kid": "rsa-1"}
    duplicate = _b64(b'{"alg":"RS256","alg":"HS256"}')
    return {
        "empty": "",
        "one part": "abc",
        "two parts": f"{header}.{payload}",
        "JWE (five parts)": f"{header}.{payload}.{signature}.a.b",
        "non-base64 header": f"!!!.{payload}.{signature}",
        "header not JSON": f"{_b64(b'not json')}.{payload}.{signature}",
        "header is an array": f"{_b64(b'[1]')}.{payload}.{signature}",
        "header is a string": f"{_b64(json.dumps('RS256').encode())}.{payload}.{signature}",
        "duplicate alg": f"{duplicate}.{payload}.{signature}",
        "kid not a string": idp.mint({"sub": "x"}, headers={"kid": 1}),
        "non-ASCII": good[:-2] + "é",
        "payload is an array": _raw_token(idp, json.dumps(rs256).encode(), b"[1]"),
        "payload not JSON": _raw_token(idp, json.dumps(rs256).encode(), b"{"),
        "bad signature encoding": f"{header}.{payload}.!!!",
        "exp not a number": idp.mint({"exp": "tomorrow"}),
        "exp is a boolean": idp.mint({"exp": True}),
        "nbf not a number": idp.mint({"nbf": "soon"}),
        "iat not a number": idp.mint({"iat": [1]}),
        "sub not a string": idp.mint({"sub": 42}),
    }


async def test_malformed_tokens_are_refused(idp: TestIdp, make_verifier: MakeVerifier) -> None:
    verifier, _ = await make_verifier()
    for what, token in _malformed_tokens(idp).items():
        assert await _rejected(verifier, token) == "malformed", what


async def test_no_library_exception_escapes(idp: TestIdp, make_verifier: MakeVerifier) -> None:
    verifier, _ = await make_verifier()
    good = idp.mint({"sub": "fuzz", "aud": ["a", "b"]}, kid="ec-1")
    rng = random.Random(7)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00é"
    for _ in range(600):
        chars = list(good)
        for _ in range(rng.randint(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice(alphabet)
        with contextlib.suppress(TokenRejected):
            await verifier.verify("".join(chars))


# -- claims -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iss",
    [
        pytest.param(lambda i: i + "/", id="trailing-slash"),
        pytest.param(lambda i: i + "x", id="suffix"),
        pytest.param(lambda i: i[:-1], id="prefix"),
        pytest.param(lambda i: i.replace("127.0.0.1", "localhost"), id="other-host"),
        pytest.param(lambda i: i.upper(), id="case"),
        pytest.param(lambda i: [i], id="list"),
        pytest.param(lambda i: "", id="empty"),
        pytest.param(lambda i: None, id="missing"),
    ],
)
async def test_issuer_must_match_exactly(
    idp: TestIdp, make_verifier: MakeVerifier, iss: Callable[[str], object]
) -> None:
    verifier, _ = await make_verifier()
    token = idp.mint({"sub": "x", "iss": iss(idp.issuer)})
    assert await _rejected(verifier, token) == "issuer_mismatch"


@pytest.mark.parametrize(
    ("aud", "accepted"),
    [
        ("orders", True),
        (["billing", "orders"], True),
        ("billing", False),
        (["billing"], False),
        ("order", False),
        (["orders-x"], False),
        (None, False),
        (123, False),
        ([], False),
    ],
)
async def test_audience_is_checked_when_configured(
    idp: TestIdp, make_verifier: MakeVerifier, aud: object, accepted: bool
) -> None:
    verifier, _ = await make_verifier(audience="orders")
    token = idp.mint({"sub": "x", "aud": aud})
    if accepted:
        assert (await verifier.verify(token))["aud"] == aud
    else:
        assert await _rejected(verifier, token) == "audience_mismatch"


@pytest.mark.parametrize("aud", ["anything", ["a", "b"], None])
async def test_audience_is_not_checked_when_not_configured(
    idp: TestIdp, make_verifier: MakeVerifier, aud: object
) -> None:
    # PyJWT refuses any token with `aud` when no audience is passed; the verifier must not.
    verifier, _ = await make_verifier(audience=None)
    assert verifier.verify_now(idp.mint({"sub": "x", "aud": aud})) is not None


async def test_exp_is_required(idp: TestIdp, make_verifier: MakeVerifier) -> None:
    verifier, _ = await make_verifier()
    assert await _rejected(verifier, idp.mint({"sub": "x", "exp": None})) == "missing_exp"


async def test_expiry_honours_the_leeway(
    idp: TestIdp, make_verifier: MakeVerifier, wall: FakeClock
) -> None:
    now = int(wall.now)
    verifier, _ = await make_verifier(leeway=30)
    assert verifier.verify_now(idp.mint({"exp": now - 29})) is not None
    assert await _rejected(verifier, idp.mint({"exp": now - 30})) == "expired"
    strict, _ = await make_verifier(leeway=0)
    assert await _rejected(strict, idp.mint({"exp": now, "iat": now})) == "expired"
    assert strict.verify_now(idp.mint({"exp": now + 1, "iat": now})) is not None


async def test_nbf_and_iat_honour_the_leeway(
    idp: TestIdp, make_verifier: MakeVerifier, wall: FakeClock
) -> None:
    now = int(wall.now)
    verifier, _ = await make_verifier(leeway=30)
    assert verifier.verify_now(idp.mint({"nbf": now + 30})) is not None
    assert await _rejected(verifier, idp.mint({"nbf": now + 31})) == "not_yet_valid"
    assert verifier.verify_now(idp.mint({"iat": now + 30})) is not None
    assert await _rejected(verifier, idp.mint({"iat": now + 31})) == "issued_in_future"
    strict, _ = await make_verifier(leeway=0)
    assert await _rejected(strict, idp.mint({"nbf": now + 1, "iat": now})) == "not_yet_valid"


def test_leeway_cannot_exceed_sixty_seconds() -> None:
    with pytest.raises(ValueError, match="leeway_seconds"):
        IdentityProvider(id="x", issuer="https://idp.example", leeway_seconds=61)


async def test_bad_signatures_are_refused(idp: TestIdp, make_verifier: MakeVerifier) -> None:
    verifier, _ = await make_verifier()
    good = idp.mint({"sub": "alice"})
    header, _, signature = good.split(".")
    forged_payload = _b64(json.dumps({"sub": "root", "iss": idp.issuer, "exp": 2**31}).encode())
    other_rsa = idp.private_key(idp.rotate())
    other_ec = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "payload swapped": f"{header}.{forged_payload}.{signature}",
        "signature truncated": good[:-10],
        "empty signature": f"{header}.{good.split('.')[1]}.",
        "other RSA key under rsa-1": idp.mint({"sub": "x"}, kid="rsa-1", sign_with=other_rsa),
        "other EC key under ec-1": idp.mint({"sub": "x"}, kid="ec-1", sign_with=other_ec),
    }
    for what, token in cases.items():
        assert await _rejected(verifier, token) == "bad_signature", what


# -- the verified-token cache -------------------------------------------------------------------


async def test_a_cached_token_skips_the_crypto(
    idp: TestIdp, make_verifier: MakeVerifier, rsa_verifications: list[int]
) -> None:
    verifier, _ = await make_verifier()
    token = idp.mint({"sub": "alice"})
    first = verifier.verify_now(token)
    for _ in range(10):
        assert verifier.verify_now(token) is first
        assert await verifier.verify(token) is first
    assert len(rsa_verifications) == 1


async def test_a_key_withdrawn_by_the_idp_ends_its_cached_tokens(
    idp: TestIdp, make_verifier: MakeVerifier
) -> None:
    verifier, cache = await make_verifier()
    token = idp.mint({"sub": "alice"})
    assert verifier.verify_now(token) is not None
    idp.rotate()
    idp.retire("rsa-1")  # compromised: the IdP stops publishing it
    await cache.prefetch()  # the next JWKS refresh sees it gone
    with pytest.raises(TokenRejected):
        await verifier.verify(token)


async def test_an_unchanged_refresh_or_an_idp_outage_keeps_cached_tokens(
    idp: TestIdp, make_verifier: MakeVerifier, rsa_verifications: list[int]
) -> None:
    verifier, cache = await make_verifier()
    token = idp.mint({"sub": "alice"})
    first = verifier.verify_now(token)
    await cache.prefetch()  # same keys again
    idp.set_failing(500)
    await cache.prefetch()  # the IdP is down: last good keys stay
    assert verifier.verify_now(token) is first
    assert len(rsa_verifications) == 1


async def test_a_flush_makes_cached_tokens_verify_again(
    idp: TestIdp, make_verifier: MakeVerifier, rsa_verifications: list[int]
) -> None:
    verifier, cache = await make_verifier()
    token = idp.mint({"sub": "alice"})
    assert verifier.verify_now(token) is not None
    cache.flush()
    assert await verifier.verify(token) is not None  # key still published: fetched and accepted
    assert len(rsa_verifications) == 2


async def test_the_cache_never_serves_an_expired_token(
    idp: TestIdp, make_verifier: MakeVerifier, wall: FakeClock, rsa_verifications: list[int]
) -> None:
    verifier, _ = await make_verifier(leeway=30)
    exp = int(wall.now) + 60
    token = idp.mint({"sub": "alice", "exp": exp})
    assert verifier.verify_now(token) is not None
    wall.now = exp - 0.001
    assert verifier.verify_now(token) is not None
    assert len(rsa_verifications) == 1  # still from the cache
    wall.now = exp + 10  # past exp, within the leeway: verified again, every time
    assert verifier.verify_now(token) is not None
    assert verifier.verify_now(token) is not None
    assert len(rsa_verifications) == 3
    wall.now = exp + 30
    assert await _rejected(verifier, token) == "expired"


async def test_the_cache_respects_nbf(
    idp: TestIdp, make_verifier: MakeVerifier, wall: FakeClock
) -> None:
    verifier, _ = await make_verifier(leeway=0)
    token = idp.mint({"nbf": int(wall.now), "iat": int(wall.now)})
    assert verifier.verify_now(token) is not None
    wall.now -= 5  # the clock was stepped back: the cached token is not valid yet
    assert await _rejected(verifier, token) == "not_yet_valid"


async def test_the_cache_is_bounded(
    idp: TestIdp, make_verifier: MakeVerifier, rsa_verifications: list[int]
) -> None:
    verifier, _ = await make_verifier(cache_size=3)
    tokens = [idp.mint({"sub": f"user-{n}"}) for n in range(5)]
    for token in tokens:
        assert verifier.verify_now(token) is not None
    assert len(verifier._cache) == 3
    assert len(rsa_verifications) == 5
    assert verifier.verify_now(tokens[-1]) is not None  # recent: cached
    assert len(rsa_verifications) == 5
    assert verifier.verify_now(tokens[0]) is not None  # oldest: evicted, verified again
    assert len(rsa_verifications) == 6
    assert len(verifier._cache) == 3


async def test_flush_forgets_verified_tokens(
    idp: TestIdp, make_verifier: MakeVerifier, rsa_verifications: list[int]
) -> None:
    verifier, _ = await make_verifier()
    token = idp.mint({"sub": "alice"})
    assert verifier.verify_now(token) is not None
    verifier.flush()
    assert verifier.verify_now(token) is not None
    assert len(rsa_verifications) == 2


async def test_rejected_tokens_are_not_cached(
    idp: TestIdp, make_verifier: MakeVerifier
) -> None:
    verifier, _ = await make_verifier(audience="orders")
    token = idp.mint({"aud": "billing"})
    for _ in range(3):
        assert await _rejected(verifier, token) == "audience_mismatch"
    assert len(verifier._cache) == 0


# -- key rotation and JWKS refetch --------------------------------------------------------------


async def test_a_rotated_key_is_fetched_once_and_accepted(
    idp: TestIdp, make_verifier: MakeVerifier
) -> None:
    verifier, _ = await make_verifier()
    assert idp.jwks_hits == 1
    kid = idp.rotate()
    for n in range(5):
        claims = await verifier.verify(idp.mint({"sub": f"user-{n}"}, kid=kid))
        assert claims["sub"] == f"user-{n}"
    assert idp.jwks_hits == 2


async def test_unknown_kids_trigger_at_most_one_fetch_per_interval(
    idp: TestIdp, make_verifier: MakeVerifier, mono: FakeClock
) -> None:
    verifier, _ = await make_verifier()
    signer = idp.private_key("rsa-1")
    for n in range(50):
        token = idp.mint({"sub": "x"}, kid=f"ghost-{n}", sign_with=signer)
        assert await _rejected(verifier, token) == "unknown_kid"
        mono.advance(0.5)  # 25 s in all: still within the 30 s interval
    assert idp.jwks_hits == 2
    mono.advance(6)
    token = idp.mint({"sub": "x"}, kid="ghost-new", sign_with=signer)
    assert await _rejected(verifier, token) == "unknown_kid"
    assert idp.jwks_hits == 3


async def test_concurrent_verifications_share_one_fetch(
    idp: TestIdp, make_verifier: MakeVerifier
) -> None:
    verifier, _ = await make_verifier()
    kid = idp.rotate()
    idp.set_delay(0.2)
    tokens = [idp.mint({"sub": f"user-{n}"}, kid=kid) for n in range(30)]
    results = await asyncio.gather(*(verifier.verify(t) for t in tokens))
    assert [c["sub"] for c in results] == [f"user-{n}" for n in range(30)]
    assert idp.jwks_hits == 2


async def test_no_keys_at_all_is_jwks_unavailable(
    idp: TestIdp, make_verifier: MakeVerifier
) -> None:
    idp.set_failing(500)
    verifier, _ = await make_verifier()
    assert await _rejected(verifier, idp.mint({"sub": "x"})) == "jwks_unavailable"


async def test_last_good_keys_keep_verifying_while_the_idp_is_down(
    idp: TestIdp, make_verifier: MakeVerifier, mono: FakeClock
) -> None:
    verifier, _ = await make_verifier()
    idp.set_failing(500)
    mono.advance(3600)  # far past the TTL; refreshes fail
    assert verifier.verify_now(idp.mint({"sub": "x"})) is not None
    assert (await verifier.verify(idp.mint({"sub": "y"}, kid="ec-1")))["sub"] == "y"


# -- construction and logging -------------------------------------------------------------------


async def test_the_jwks_cache_must_belong_to_the_issuer(
    idp: TestIdp, make_cache: Callable[..., JwksCache]
) -> None:
    config = IdentityProvider(id="x", issuer="https://other.example")
    with pytest.raises(ValueError, match="another issuer"):
        TokenVerifier(config, make_cache())


async def test_logs_never_contain_tokens(
    idp: TestIdp, make_verifier: MakeVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    verifier, _ = await make_verifier()
    tokens = [
        idp.mint({"sub": "alice"}),
        idp.mint({"sub": "x"}, kid="ghost", sign_with=idp.private_key("rsa-1")),
        idp.mint({"exp": 1}),
    ]
    for token in tokens:
        with contextlib.suppress(TokenRejected):
            await verifier.verify(token)
    for token in tokens:
        for part in token.split("."):
            assert part not in caplog.text


def test_token_rejected_carries_its_reason() -> None:
    error = TokenRejected("expired")
    assert error.reason == "expired"
    assert isinstance(error, Exception)

