"""Verification of bearer JWTs issued by one identity provider (DESIGN §4).

:class:`TokenVerifier` applies the gateway's JWT rules in this order, cheapest first:

1. the token's length is capped before anything is decoded;
2. a token already verified is served from a bounded cache until its ``exp`` (one dict lookup
   and a time comparison), so that RSA runs once per token rather than once per request;
3. the header must be a JSON object without ``jwk``/``jku``/``x5u``/``x5c``/``crit`` (keys and
   extensions chosen by the token's author are never trusted), with an ``alg`` the provider
   allows (asymmetric only) and that the key's pinned algorithm allows;
4. PyJWT checks the signature, ``iss`` (exact) and ``aud`` (only when configured);
5. ``exp`` (required), ``nbf`` and ``iat`` are checked here against the injected clock, with
   the provider's leeway.

Every refusal is a :class:`TokenRejected` whose ``reason`` goes to logs and metrics only; no
PyJWT exception leaves this module.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from jwt.api_jwt import PyJWT
from jwt.exceptions import (
    InvalidAlgorithmError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidSignatureError,
    MissingRequiredClaimError,
    PyJWTError,
)
from jwt.types import Options

from propylon.domain.config import ASYMMETRIC_ALGORITHMS, IdentityProvider
from propylon.gateway.jwks import JwksCache, SigningKey

logger = logging.getLogger(__name__)

FORBIDDEN_HEADERS: tuple[str, ...] = ("jwk", "jku", "x5u", "x5c", "crit")
"""Header parameters that make a token refused: they let the token choose its own key or
demand extensions the gateway does not implement."""

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_MISSING_CLAIM_REASONS = {
    "exp": "missing_exp",
    "iss": "issuer_mismatch",
    "aud": "audience_mismatch",
}


class TokenRejected(Exception):
    """A token was refused; ``reason`` (e.g. ``"expired"``) is for logs and metrics only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object hook refusing repeated members, which parsers resolve inconsistently."""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member in JSON object")
    return result


def _number(value: Any) -> float | None:
    """``value`` as a finite number, or None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class TokenVerifier:
    """Verifies the tokens of one identity provider against its :class:`JwksCache`."""

    def __init__(
        self,
        idp: IdentityProvider,
        jwks: JwksCache,
        *,
        max_token_bytes: int = 8192,
        cache_size: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if jwks.issuer != idp.issuer:
            raise ValueError("the JWKS cache belongs to another issuer")
        if max_token_bytes <= 0 or cache_size <= 0:
            raise ValueError("max_token_bytes and cache_size must be > 0")
        self._jwks = jwks
        self._issuer = idp.issuer
        self._audience = idp.audience
        # Filtered again although the config validates it: HS*/none must be impossible here.
        self._algorithms = frozenset(a for a in idp.algorithms if a in ASYMMETRIC_ALGORITHMS)
        self._leeway = float(min(max(idp.leeway_seconds, 0), 60))
        self._max_bytes = max_token_bytes
        self._cache_size = cache_size
        self._clock = clock
        # token → (valid from, expires at, claims); insertion order is eviction order.
        self._cache: OrderedDict[str, tuple[float, float, dict[str, Any]]] = OrderedDict()
        self._generation = jwks.generation
        self._flushes = 0
        self._decoder = PyJWT()
        self._options: Options = {
            "verify_signature": True,
            "require": ["exp", "iss"],
            "verify_iss": True,
            # PyJWT refuses any token carrying `aud` when no audience is given: only check the
            # audience when the provider configures one.
            "verify_aud": self._audience is not None,
            # Times are checked in _check_times with our clock (PyJWT reads the system clock).
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
        }

    def verify_now(self, token: str) -> dict[str, Any] | None:
        """Return the token's claims without awaiting anything.

        Returns None only when the signing key is unknown and a JWKS refetch is needed (then
        call :meth:`verify`); raises :class:`TokenRejected` for every refusal. The returned
        dict is shared with the cache: callers must not modify it.
        """
        if len(token) > self._max_bytes:
            raise TokenRejected("too_large")
        if self._generation != self._jwks.generation:
            # A signing key was withdrawn or the keys were flushed: verify everything again.
            self._cache.clear()
            self._generation = self._jwks.generation
        entry = self._cache.get(token)
        if entry is not None:
            now = self._clock()
            if entry[0] <= now < entry[1]:
                return entry[2]
            del self._cache[token]  # outside its window: full verification decides (leeway, reason)
        alg, kid = self._inspect(token)
        key = self._jwks.get(kid)
        if key is None:
            return None
        return self._verify_with(token, alg, key)

    async def verify(self, token: str) -> dict[str, Any]:
        """Return the token's claims, refetching the JWKS once if its key id is unknown.

        Raises :class:`TokenRejected` for every refusal (``unknown_kid`` when the key is still
        unknown, ``jwks_unavailable`` when no key set could be obtained at all).
        """
        claims = self.verify_now(token)
        if claims is not None:
            return claims
        alg, kid = self._inspect(token)  # only reached on the rare unknown-kid path
        key = await self._jwks.refetch_for(kid)
        if key is None:
            reason = "unknown_kid" if self._jwks.available else "jwks_unavailable"
            logger.debug("token refused for %s: %s (kid=%.80r)", self._issuer, reason, kid)
            raise TokenRejected(reason)
        return self._verify_with(token, alg, key)

    def flush(self) -> None:
        """Forget every verified token, so that the next use of each is verified again."""
        self._cache.clear()
        self._flushes += 1

    @property
    def clock(self) -> Callable[[], float]:
        """The clock validity windows are judged by (Unix seconds)."""
        return self._clock

    def epoch(self) -> int:
        """Changes whenever verified tokens must be verified again (key set changed, flush).

        Callers that remember a verification beyond :meth:`verify_now` (the auth step's cache of
        whole ``Authorization`` values) compare it to decide whether that memory still holds.
        Both counters only grow, so their sum changes whenever either does.
        """
        return self._jwks.generation + self._flushes

    def validity(self, token: str) -> tuple[float, float] | None:
        """The cached validity window (from, until) of a verified token; None if not cached.

        Tokens accepted only thanks to the leeway are not cached, so they have no window here.
        """
        entry = self._cache.get(token)
        return (entry[0], entry[1]) if entry is not None else None

    def _inspect(self, token: str) -> tuple[str, str | None]:
        """Check the unverified header; return its ``alg`` and ``kid``."""
        if not token.isascii():
            raise TokenRejected("malformed")
        parts = token.split(".")
        if len(parts) != 3 or not _BASE64URL.fullmatch(parts[0]):
            raise TokenRejected("malformed")
        try:
            raw = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
            header = json.loads(raw, object_pairs_hook=_reject_duplicates)
        except (binascii.Error, ValueError, RecursionError) as exc:
            raise TokenRejected("malformed") from exc
        if not isinstance(header, dict):
            raise TokenRejected("malformed")
        for name in FORBIDDEN_HEADERS:
            if name in header:
                raise TokenRejected(f"forbidden_header:{name}")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise TokenRejected("alg_not_allowed")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenRejected("malformed")
        return alg, kid

    def _verify_with(self, token: str, alg: str, key: SigningKey) -> dict[str, Any]:
        """Verify signature and claims with ``key``; cache and return the claims."""
        if not key.allows(alg):
            raise TokenRejected("alg_not_allowed")
        try:
            claims: dict[str, Any] = self._decoder.decode(
                token,
                key.key,
                algorithms=[alg],
                options=self._options,
                issuer=self._issuer,
                audience=self._audience,
            )
        except InvalidSignatureError as exc:
            raise TokenRejected("bad_signature") from exc
        except InvalidIssuerError as exc:
            raise TokenRejected("issuer_mismatch") from exc
        except InvalidAudienceError as exc:
            raise TokenRejected("audience_mismatch") from exc
        except MissingRequiredClaimError as exc:
            raise TokenRejected(_MISSING_CLAIM_REASONS.get(exc.claim, "malformed")) from exc
        except InvalidAlgorithmError as exc:
            raise TokenRejected("alg_not_allowed") from exc
        except (PyJWTError, ValueError, TypeError, OverflowError) as exc:
            raise TokenRejected("malformed") from exc
        valid_from, expires = self._check_times(claims)
        now = self._clock()
        if now < expires:  # accepted only thanks to the leeway: verify again next time
            if len(self._cache) >= self._cache_size:
                # Oldest first: one provider's tokens share a lifetime, so this is about the
                # order in which they expire, at O(1) per insertion.
                self._cache.popitem(last=False)
            self._cache[token] = (valid_from, expires, claims)
        return claims

    def _check_times(self, claims: dict[str, Any]) -> tuple[float, float]:
        """Apply ``exp``/``nbf``/``iat`` with leeway; return the cacheable validity window."""
        now = self._clock()
        exp = _number(claims.get("exp"))
        if exp is None:
            raise TokenRejected("malformed")
        if exp <= now - self._leeway:
            raise TokenRejected("expired")
        valid_from = -math.inf
        if "nbf" in claims:
            nbf = _number(claims["nbf"])
            if nbf is None:
                raise TokenRejected("malformed")
            if nbf > now + self._leeway:
                raise TokenRejected("not_yet_valid")
            valid_from = nbf - self._leeway
        if "iat" in claims:
            iat = _number(claims["iat"])
            if iat is None:
                raise TokenRejected("malformed")
            if iat > now + self._leeway:
                raise TokenRejected("issued_in_future")
        return valid_from, exp
