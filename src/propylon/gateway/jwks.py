"""The signing keys of one identity provider, fetched from its JWKS and cached (DESIGN §4).

One :class:`JwksCache` per issuer. The request path only ever calls :meth:`JwksCache.get`, which
is synchronous and reads memory: when the keys' TTL has passed it schedules a single background
refresh and keeps answering from the current keys. An unknown ``kid`` goes through
:meth:`JwksCache.refetch_for`: one forced fetch, shared by concurrent callers, at most once per
``refetch_interval``, with a negative cache for kids the IdP still does not publish.

While the IdP is down or answers garbage, the last good keys are served for up to ``max_stale``
seconds after they were fetched; with a ``state_file`` they survive a restart too. A failure never
escapes this module as an exception: it is logged, and the caller sees "no key". The gateway's
client goes through the SSRF guard (``outbound.guard``, DESIGN §5): a JWKS or discovery URL whose
host resolves to a refused address (loopback, private… unless allowed) is such a failure.

Keys are filtered on the way in (DESIGN §4, RFC 8725): symmetric keys, encryption keys, private
key material, RSA keys under 2048 bits, unsupported curves and keys whose ``alg`` disagrees with
their type are skipped, so whatever :meth:`JwksCache.get` returns is safe to verify with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from propylon.domain.config import ASYMMETRIC_ALGORITHMS
from propylon.outbound.guard import AddressRefused

logger = logging.getLogger(__name__)

_RSA_FAMILY = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_FAMILY = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_EDDSA_FAMILY = frozenset({"EdDSA"})
_MIN_RSA_BITS = 2048
_PARSERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "RSA": RSAAlgorithm.from_jwk,
    "EC": ECAlgorithm.from_jwk,
    "OKP": OKPAlgorithm.from_jwk,
}
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,12})\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|$)", re.IGNORECASE)
_MAX_NEGATIVE = 4096
_STATE_VERSION = 1


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _family(key: Any) -> frozenset[str]:
    """The algorithms a key of this type (and curve) can verify; empty for anything else."""
    if isinstance(key, RSAPublicKey):
        return _RSA_FAMILY
    if isinstance(key, EllipticCurvePublicKey):
        alg = _EC_FAMILY.get(key.curve.name)
        return frozenset({alg}) if alg else frozenset()
    if isinstance(key, Ed25519PublicKey | Ed448PublicKey):
        return _EDDSA_FAMILY
    return frozenset()


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A public key an identity provider signs with, and the algorithm pinned to it.

    ``key`` is a ``cryptography`` public key object that PyJWT accepts. ``alg`` is the JWK's
    ``alg``; when the JWK had none, :meth:`allows` derives the family from the key type instead.
    """

    kid: str | None
    alg: str | None
    key: Any

    def allows(self, alg: str) -> bool:
        """Whether a token whose header says ``alg`` may be verified with this key."""
        if self.alg is not None:
            return alg == self.alg
        return alg in _family(self.key)


class _UnusableKeyError(Exception):
    """A JWK that is skipped; the message says why."""


class _FetchError(Exception):
    """Discovery or the JWKS fetch failed; the message says why (without secrets)."""


def _parse_jwk(jwk: object) -> SigningKey:
    """Turn one JWK into a :class:`SigningKey`, or raise :class:`_UnusableKeyError`."""
    if not isinstance(jwk, dict):
        raise _UnusableKeyError("not a JSON object")
    kty, use, kid, alg = jwk.get("kty"), jwk.get("use"), jwk.get("kid"), jwk.get("alg")
    if kty == "oct":
        raise _UnusableKeyError("symmetric key")
    if not isinstance(kty, str) or kty not in _PARSERS:
        raise _UnusableKeyError(f"unsupported kty {kty!r}")
    if use is not None and use != "sig":
        raise _UnusableKeyError(f"use is {use!r}, not 'sig'")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise _UnusableKeyError("key_ops does not include 'verify'")
    if kid is not None and not isinstance(kid, str):
        raise _UnusableKeyError("kid is not a string")
    if alg is not None and alg not in ASYMMETRIC_ALGORITHMS:
        raise _UnusableKeyError(f"alg {alg!r} is not an allowed asymmetric algorithm")
    if "d" in jwk:
        # A published private key means anyone can mint tokens: never trust such a key.
        raise _UnusableKeyError("contains private key material")
    try:
        key = _PARSERS[kty](jwk)
    except Exception as exc:  # untrusted input: any parse error just makes the key unusable
        raise _UnusableKeyError(f"unparsable ({type(exc).__name__})") from exc
    family = _family(key)
    if not family:
        raise _UnusableKeyError("unsupported key type or curve")
    if isinstance(key, RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        raise _UnusableKeyError(f"RSA key of {key.key_size} bits is too small")
    if alg is not None and alg not in family:
        raise _UnusableKeyError(f"alg {alg!r} does not match the key type")
    return SigningKey(kid=kid, alg=alg, key=key)


def parse_jwks(document: object) -> list[SigningKey]:
    """Return the usable signing keys of a JWK Set document, logging each key that is skipped.

    Raises :class:`ValueError` when ``document`` is not a JWK Set at all.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set (no 'keys' array)")
    keys: list[SigningKey] = []
    seen: set[str | None] = set()
    for index, jwk in enumerate(document["keys"]):
        kid = jwk.get("kid") if isinstance(jwk, dict) else None
        try:
            key = _parse_jwk(jwk)
        except _UnusableKeyError as exc:
            logger.info("skipping JWK #%d (kid=%r): %s", index, kid, exc)
            continue
        if key.kid is not None and key.kid in seen:
            # Two keys under one kid would make the choice ambiguous; the first one wins.
            logger.warning("skipping JWK #%d: duplicate kid %r", index, key.kid)
            continue
        seen.add(key.kid)
        keys.append(key)
    return keys


def ttl_from_cache_control(
    value: str | None, *, default: float, minimum: float, maximum: float
) -> float:
    """The TTL a ``Cache-Control`` header asks for, clamped to ``[minimum, maximum]``."""
    if value is None:
        return default
    if _NO_CACHE.search(value):
        return minimum
    match = _MAX_AGE.search(value)
    if match is None:
        return default
    return min(max(float(match.group(1)), minimum), maximum)


class JwksCache:
    """The signing keys of one issuer: memory lookups, background refresh, forced refetch."""

    def __init__(
        self,
        *,
        issuer: str,
        jwks_uri: str | None,
        client: httpx.AsyncClient,
        state_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        default_ttl: float = 600,
        min_ttl: float = 60,
        max_ttl: float = 86400,
        refetch_interval: float = 30,
        max_stale: float = 7 * 86400,
        max_bytes: int = 512 * 1024,
        timeout: float = 5.0,
    ) -> None:
        if not 0 < min_ttl <= max_ttl:
            raise ValueError("need 0 < min_ttl <= max_ttl")
        if refetch_interval <= 0 or max_stale <= 0 or max_bytes <= 0 or timeout <= 0:
            raise ValueError("refetch_interval, max_stale, max_bytes and timeout must be > 0")
        self.issuer = issuer
        self._jwks_uri = jwks_uri
        self._discovered_uri: str | None = None
        self._client = client
        self._state_file = state_file
        self._clock = clock
        self._default_ttl = min(max(default_ttl, min_ttl), max_ttl)
        self._min_ttl = min_ttl
        self._max_ttl = max_ttl
        self._refetch_interval = refetch_interval
        self._max_stale = max_stale
        self._max_bytes = max_bytes
        self._timeout = timeout
        # A kid still unknown after a fetch is not asked for again for this long.
        self._negative_ttl = max(refetch_interval, min_ttl)

        self._by_kid: dict[str, SigningKey] = {}
        self._all: tuple[SigningKey, ...] = ()
        self.generation = 0
        """Bumped whenever a key that was trusted stops being trusted (the IdP withdrew or
        replaced it, or the cache was flushed): verifiers then drop the tokens they verified."""
        self._ttl: float | None = None
        self._refresh_due = -math.inf  # monotonic time of the next background refresh
        self._serve_until = -math.inf  # monotonic time after which the keys are too stale
        self._last_forced = -math.inf
        self._negative: dict[str | None, float] = {}
        self._inflight: asyncio.Task[bool] | None = None
        self._inflight_forced = False  # whether the in-flight fetch was started for an unknown kid
        self._closed = False
        if state_file is not None:
            self._load_state(state_file)

    # -- the request path ---------------------------------------------------------------------

    def get(self, kid: str | None) -> SigningKey | None:
        """The key for ``kid`` from memory, or None; a token without kid needs a single key.

        Never blocks: when the TTL has passed, one background refresh is scheduled and the
        current keys keep being served (up to ``max_stale`` after their fetch).
        """
        now = self._clock()
        if now >= self._refresh_due:
            self._schedule_refresh(now)
        return self._lookup(kid, now)

    @property
    def available(self) -> bool:
        """Whether a usable, not too stale key set is in memory."""
        return bool(self._all) and self._clock() <= self._serve_until

    @property
    def ttl(self) -> float | None:
        """Seconds the current key set is fresh for (from ``Cache-Control``), None if none."""
        return self._ttl

    def _lookup(self, kid: str | None, now: float) -> SigningKey | None:
        if now > self._serve_until:
            return None
        if kid is None:
            return self._all[0] if len(self._all) == 1 else None
        return self._by_kid.get(kid)

    def _schedule_refresh(self, now: float) -> None:
        if self._closed or (self._inflight is not None and not self._inflight.done()):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # called outside the event loop: nothing to schedule on
            return
        # Pushed forward now so that a failing refresh is retried calmly, not on every request.
        self._refresh_due = now + self._refetch_interval
        self._start_fetch()

    # -- fetching -------------------------------------------------------------------------------

    async def prefetch(self) -> None:
        """Fetch the keys now (discovering ``jwks_uri`` if unset); logs failures, never raises."""
        if self._closed:
            return
        await self._join(self._start_fetch())

    async def refetch_for(self, kid: str | None) -> SigningKey | None:
        """Fetch again because ``kid`` is unknown; rate limited, single-flight, negative-cached."""
        now = self._clock()
        key = self._lookup(kid, now)
        if key is not None or self._closed:
            return key
        if self._negative.get(kid, -math.inf) > now:
            return None
        task = self._inflight
        if task is None or task.done():
            if now - self._last_forced < self._refetch_interval:
                logger.debug("JWKS refetch for %s rate limited (kid=%.80r)", self.issuer, kid)
                return None
            self._last_forced = now
            task = self._start_fetch(forced=True)
        forced = self._inflight_forced
        fetched = await self._join(task)
        now = self._clock()
        key = self._lookup(kid, now)
        if key is None and fetched and forced:
            # Only a successful fetch started after the kid was seen proves it unknown: an IdP
            # outage proves nothing, and a background refresh may predate the key's publication.
            if len(self._negative) >= _MAX_NEGATIVE:
                self._negative.pop(next(iter(self._negative)))
            self._negative[kid] = now + self._negative_ttl
            logger.info("kid %.80r is not in the JWKS of %s", kid, self.issuer)
        return key

    def _start_fetch(self, *, forced: bool = False) -> asyncio.Task[bool]:
        """The in-flight fetch, started now if there is none (single-flight)."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.get_running_loop().create_task(
                self._fetch_and_store(), name=f"jwks-fetch {self.issuer}"
            )
            self._inflight_forced = forced
        return self._inflight

    async def _join(self, task: asyncio.Task[bool]) -> bool:
        """Wait for a shared fetch without letting one cancelled waiter cancel it for all."""
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            return False  # the fetch itself was cancelled (aclose): no keys from it

    async def _fetch_and_store(self) -> bool:
        try:
            document, cache_control = await self._fetch()
            keys = parse_jwks(document)
            if not keys:
                raise _FetchError("the JWKS has no usable signing key")
        except (_FetchError, ValueError) as exc:
            logger.warning(
                "JWKS fetch for %s failed: %s; %s", self.issuer, exc,
                "keeping the last good keys" if self._all else "no keys available",
            )
            self._refresh_due = self._clock() + self._refetch_interval
            return False
        except Exception:  # a bug must not kill the refresh loop nor reach the request path
            logger.exception("JWKS fetch for %s failed unexpectedly", self.issuer)
            self._refresh_due = self._clock() + self._refetch_interval
            return False
        ttl = ttl_from_cache_control(
            cache_control, default=self._default_ttl, minimum=self._min_ttl, maximum=self._max_ttl
        )
        self._install(keys, ttl, fetched_at=self._clock())
        logger.info(
            "JWKS for %s: %d key(s) %s, fresh for %ds",
            self.issuer, len(keys), [k.kid for k in keys], int(ttl),
        )
        if self._state_file is not None:
            await asyncio.to_thread(self._save_state, self._state_file, document, ttl)
        return True

    def _install(self, keys: list[SigningKey], ttl: float, *, fetched_at: float) -> None:
        if self._all and _identities(self._all) - _identities(keys):
            # A key was withdrawn or replaced: tokens it signed must not outlive it in caches.
            self.generation += 1
        self._by_kid = {k.kid: k for k in keys if k.kid is not None}
        self._all = tuple(keys)
        self._ttl = ttl
        self._refresh_due = fetched_at + ttl
        self._serve_until = fetched_at + self._max_stale

    async def _fetch(self) -> tuple[object, str | None]:
        uri = self._jwks_uri or self._discovered_uri or await self._discover()
        try:
            return await self._get_json(uri)
        except _FetchError:
            # The discovered location may have moved: discover again next time.
            self._discovered_uri = None
            raise

    async def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document, _ = await self._get_json(url)
        if not isinstance(document, dict):
            raise _FetchError("discovery document is not a JSON object")
        if document.get("issuer") != self.issuer:
            raise _FetchError("discovery document names another issuer")
        uri = document.get("jwks_uri")
        if not isinstance(uri, str) or not _is_http_url(uri):
            raise _FetchError("discovery document has no valid jwks_uri")
        self._discovered_uri = uri
        return uri

    async def _get_json(self, url: str) -> tuple[object, str | None]:
        """GET ``url``: 200 only, no redirects, at most ``max_bytes``, within ``timeout``."""
        try:
            async with asyncio.timeout(self._timeout):
                async with self._client.stream(
                    "GET", url, headers={"accept": "application/json"},
                    follow_redirects=False, timeout=self._timeout,
                ) as response:
                    if response.status_code != 200:
                        raise _FetchError(f"{url} answered HTTP {response.status_code}")
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > self._max_bytes:
                        raise _FetchError(f"{url} answered more than {self._max_bytes} bytes")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > self._max_bytes:
                            raise _FetchError(f"{url} answered more than {self._max_bytes} bytes")
                    cache_control = response.headers.get("cache-control")
        except AddressRefused as exc:
            # The SSRF guard (outbound/guard.py) refused the host before any connection: its
            # message names the address and its class (loopback, private…) and the allow-list.
            raise _FetchError(f"{url} was not fetched: {exc.message}") from exc
        except TimeoutError as exc:
            raise _FetchError(f"{url} timed out after {self._timeout}s") from exc
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            raise _FetchError(f"{url}: {type(exc).__name__}") from exc
        try:
            return json.loads(body), cache_control
        except (ValueError, RecursionError) as exc:
            raise _FetchError(f"{url} did not answer JSON") from exc

    # -- persistence ----------------------------------------------------------------------------

    def _save_state(self, path: Path, document: object, ttl: float) -> None:
        """Write the last good JWKS atomically (temp file + rename); logs failures."""
        state = {
            "version": _STATE_VERSION,
            "issuer": self.issuer,
            "saved_at": time.time(),  # wall clock: monotonic time means nothing after a restart
            "ttl": ttl,
            "jwks": document,
        }
        tmp_name: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.",
                suffix=".tmp", delete=False,
            ) as tmp:
                tmp_name = tmp.name
                json.dump(state, tmp)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, path)
            tmp_name = None
        except (OSError, TypeError, ValueError) as exc:
            logger.warning("could not persist the JWKS of %s to %s: %s", self.issuer, path, exc)
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)

    def _load_state(self, path: Path) -> None:
        """Load persisted keys younger than ``max_stale``; anything odd is logged and ignored."""
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError, RecursionError) as exc:
            logger.warning("ignoring unreadable JWKS state %s: %s", path, exc)
            return
        try:
            if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
                raise ValueError("unknown format")
            if state.get("issuer") != self.issuer:
                raise ValueError("saved for another issuer")
            saved_at, ttl = state.get("saved_at"), state.get("ttl")
            if not isinstance(saved_at, int | float) or not isinstance(ttl, int | float):
                raise ValueError("bad timestamps")
            age = max(0.0, time.time() - float(saved_at))
            if not age < self._max_stale:
                raise ValueError(f"older than max_stale ({int(age)}s)")
            keys = parse_jwks(state.get("jwks"))
            if not keys:
                raise ValueError("no usable key")
        except ValueError as exc:
            logger.warning("ignoring JWKS state %s: %s", path, exc)
            return
        ttl = min(max(float(ttl), self._min_ttl), self._max_ttl)
        self._install(keys, ttl, fetched_at=self._clock() - age)
        logger.info("loaded %d persisted key(s) for %s (%ds old)", len(keys), self.issuer, int(age))

    # -- administration -------------------------------------------------------------------------

    def flush(self) -> None:
        """Forget every key (memory and persisted) and the negative cache; refetch next time.

        A fetch already in flight still completes and installs what the IdP answered.
        """
        self._by_kid = {}
        self._all = ()
        self.generation += 1
        self._ttl = None
        self._refresh_due = -math.inf
        self._serve_until = -math.inf
        self._last_forced = -math.inf
        self._negative.clear()
        if self._state_file is not None:
            # Otherwise a restart would bring back the keys the operator just distrusted.
            try:
                self._state_file.unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("could not remove JWKS state %s: %s", self._state_file, exc)
        logger.info("JWKS cache for %s flushed", self.issuer)

    async def aclose(self) -> None:
        """Cancel the background fetch, if any; the cache then stops fetching."""
        self._closed = True
        task, self._inflight = self._inflight, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _identities(keys: tuple[SigningKey, ...] | list[SigningKey]) -> set[tuple[str | None, bytes]]:
    """Each key as (kid, public key bytes), to tell a withdrawn or replaced key from a kept one."""
    return {
        (k.kid, k.key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)) for k in keys
    }
