"""Rate limit and quota steps, and the response headers that describe them.

Both answer 429 with ``Retry-After`` when exhausted (Tyk answers 403 without it for quotas, which
clients cannot act on). Every response under a limit carries the IETF ``RateLimit`` and
``RateLimit-Policy`` fields (draft-ietf-httpapi-ratelimit-headers) and the widespread
``X-RateLimit-Limit/Remaining/Reset`` (reset as a Unix time). Counters are keyed per API and
identity, so every token of one identity shares them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from propylon.gateway.errors import Header, TooManyRequests
from propylon.gateway.exchange import Exchange
from propylon.storage.counters import CounterStore


def limit_headers(
    name: str, limit: int, remaining: int, reset_after: float, window: float, *, legacy: bool
) -> list[Header]:
    """Headers describing one limit; ``legacy`` adds the ``X-RateLimit-*`` trio."""
    reset = max(0, math.ceil(reset_after))
    headers: list[Header] = [
        (b"ratelimit-policy", f'"{name}";q={limit};w={math.ceil(window)}'.encode()),
        (b"ratelimit", f'"{name}";r={max(0, remaining)};t={reset}'.encode()),
    ]
    if legacy:
        headers += [
            (b"x-ratelimit-limit", str(limit).encode()),
            (b"x-ratelimit-remaining", str(max(0, remaining)).encode()),
            (b"x-ratelimit-reset", str(int(time.time()) + reset).encode()),
        ]
    return headers


def retry_after(seconds: float) -> Header:
    """``Retry-After`` in whole seconds, never 0 (0 would invite an immediate retry storm)."""
    return (b"retry-after", str(max(1, math.ceil(seconds))).encode())


class RateLimitStep:
    """GCRA rate limit per API and identity."""

    __slots__ = ("_clock", "_counters", "_prefix")

    def __init__(self, api_id: str, counters: CounterStore, clock: Callable[[], float]) -> None:
        self._prefix = f"rate\x00{api_id}\x00"
        self._counters = counters
        self._clock = clock

    def __call__(self, exchange: Exchange) -> None:
        policy = exchange.policy
        rate = policy.rate if policy is not None else None
        if rate is None:
            return
        decision = self._counters.rate_hit(self._prefix + (exchange.identity or ""), rate, self._clock())
        headers = limit_headers(
            "rate", decision.limit, decision.remaining, decision.reset_after, rate.per_seconds,
            legacy=True,
        )
        if not decision.allowed:
            raise TooManyRequests(
                "Rate limit exceeded", reason="rate_limited",
                headers=[*headers, retry_after(decision.retry_after)],
            )
        exchange.response_headers.extend(headers)


class QuotaStep:
    """Fixed-window quota per API and identity; denied requests do not consume it."""

    __slots__ = ("_clock", "_counters", "_prefix")

    def __init__(self, api_id: str, counters: CounterStore, clock: Callable[[], float]) -> None:
        self._prefix = f"quota\x00{api_id}\x00"
        self._counters = counters
        self._clock = clock

    def __call__(self, exchange: Exchange) -> None:
        policy = exchange.policy
        quota = policy.quota if policy is not None else None
        if quota is None:
            return
        decision = self._counters.quota_hit(
            self._prefix + (exchange.identity or ""), quota, self._clock()
        )
        # The X-RateLimit trio describes the rate limit when there is one; it describes the
        # quota when the quota is what refused the request or the only limit.
        legacy = not decision.allowed or policy is None or policy.rate is None
        headers = limit_headers(
            "quota", decision.limit, decision.remaining, decision.reset_after,
            quota.renewal_seconds, legacy=legacy,
        )
        if not decision.allowed:
            exchange.response_headers.clear()
            raise TooManyRequests(
                "Quota exhausted", reason="quota_exhausted", code="quota_exhausted",
                headers=[*headers, retry_after(decision.reset_after)],
            )
        exchange.response_headers.extend(headers)
