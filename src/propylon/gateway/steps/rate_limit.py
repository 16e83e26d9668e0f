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

from propylon.domain.config import Quota, RateLimit
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


def limit_lines(policy_line: bytes, name: bytes, limit: int, remaining: int, reset_after: float,
                *, legacy: bool) -> bytes:
    """The same headers as :func:`limit_headers` as ready-made lines, for successful responses.

    One formatting operation per request instead of five tuples: this runs on every request of a
    rate-limited API.
    """
    reset = math.ceil(reset_after) if reset_after > 0 else 0
    remaining = remaining if remaining > 0 else 0
    if legacy:
        return _LINES_WITH_LEGACY % (
            policy_line, name, remaining, reset, limit, remaining, int(time.time()) + reset
        )
    return _LINES % (policy_line, name, remaining, reset)


_LINES = b'%bratelimit: "%b";r=%d;t=%d\r\n'
_LINES_WITH_LEGACY = _LINES + (
    b"x-ratelimit-limit: %d\r\nx-ratelimit-remaining: %d\r\nx-ratelimit-reset: %d\r\n"
)


def _policy_line(name: str, limit: int, window: float) -> bytes:
    return f'ratelimit-policy: "{name}";q={limit};w={math.ceil(window)}\r\n'.encode()


def retry_after(seconds: float) -> Header:
    """``Retry-After`` in whole seconds, never 0 (0 would invite an immediate retry storm)."""
    return (b"retry-after", str(max(1, math.ceil(seconds))).encode())


class RateLimitStep:
    """GCRA rate limit per API and identity."""

    __slots__ = ("_clock", "_counters", "_lines", "_prefix")

    def __init__(self, api_id: str, counters: CounterStore, clock: Callable[[], float]) -> None:
        self._prefix = f"rate\x00{api_id}\x00"
        self._counters = counters
        self._clock = clock
        self._lines: dict[RateLimit, bytes] = {}

    def __call__(self, exchange: Exchange) -> None:
        policy = exchange.policy
        rate = policy.rate if policy is not None else None
        if rate is None:
            return
        decision = self._counters.rate_hit(self._prefix + (exchange.identity or ""), rate, self._clock())
        if not decision.allowed:
            headers = limit_headers(
                "rate", decision.limit, decision.remaining, decision.reset_after, rate.per_seconds,
                legacy=True,
            )
            raise TooManyRequests(
                "Rate limit exceeded", reason="rate_limited",
                headers=[*headers, retry_after(decision.retry_after)],
            )
        line = self._lines.get(rate)
        if line is None:
            line = self._lines[rate] = _policy_line("rate", decision.limit, rate.per_seconds)
        exchange.response_headers.append(limit_lines(
            line, b"rate", decision.limit, decision.remaining, decision.reset_after, legacy=True
        ))


class QuotaStep:
    """Fixed-window quota per API and identity; denied requests do not consume it."""

    __slots__ = ("_clock", "_counters", "_lines", "_prefix")

    def __init__(self, api_id: str, counters: CounterStore, clock: Callable[[], float]) -> None:
        self._prefix = f"quota\x00{api_id}\x00"
        self._counters = counters
        self._clock = clock
        self._lines: dict[Quota, bytes] = {}

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
        if not decision.allowed:
            headers = limit_headers(
                "quota", decision.limit, decision.remaining, decision.reset_after,
                quota.renewal_seconds, legacy=True,
            )
            raise TooManyRequests(
                "Quota exhausted", reason="quota_exhausted", code="quota_exhausted",
                headers=[*headers, retry_after(decision.reset_after)],
            )
        line = self._lines.get(quota)
        if line is None:
            line = self._lines[quota] = _policy_line("quota", decision.limit, quota.renewal_seconds)
        exchange.response_headers.append(limit_lines(
            line, b"quota", decision.limit, decision.remaining, decision.reset_after,
            legacy=policy is None or policy.rate is None,
        ))
