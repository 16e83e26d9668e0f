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
from math import ceil
from typing import Final

from propylon.domain.config import Quota, RateLimit
from propylon.gateway.errors import Header, TooManyRequests
from propylon.gateway.exchange import Exchange
from propylon.storage.counters import CounterStore

# Final: compiled, a static rather than a module-dictionary lookup per call.
wall_clock: Final = time.time


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


def limit_template(name: str, limit: int, window: float, *, legacy: bool) -> bytes:
    """The header lines of :func:`limit_headers` with what is fixed per limit filled in.

    What changes per request is left as ``%d`` for :func:`limit_lines`: the remaining count and
    reset seconds, and with ``legacy`` the remaining count again and the reset time. Built once
    per limit, so a request costs one small formatting operation.
    """
    policy = f'ratelimit-policy: "{name}";q={limit};w={ceil(window)}\r\n'.encode()
    lines = policy.replace(b"%", b"%%") + b'ratelimit: "%b";r=%%d;t=%%d\r\n' % (
        name.encode().replace(b"%", b"%%")
    )
    if legacy:
        lines += b"x-ratelimit-limit: %d\r\nx-ratelimit-remaining: %%d\r\nx-ratelimit-reset: %%d\r\n" % (
            limit
        )
    return lines


def limit_lines(template: bytes, remaining: int, reset_after: float, *, legacy: bool) -> bytes:
    """The header lines for a successful response, from the limit's :func:`limit_template`."""
    reset = ceil(reset_after) if reset_after > 0 else 0
    remaining = remaining if remaining > 0 else 0
    if legacy:
        return template % (remaining, reset, remaining, int(wall_clock()) + reset)
    return template % (remaining, reset)


def retry_after(seconds: float) -> Header:
    """``Retry-After`` in whole seconds, never 0 (0 would invite an immediate retry storm)."""
    return (b"retry-after", str(max(1, math.ceil(seconds))).encode())


class RateLimitStep:
    """GCRA rate limit per API and identity."""

    __slots__ = ("_clock", "_counters", "_prefix", "_templates")

    def __init__(self, api_id: str, counters: CounterStore, clock: Callable[[], float]) -> None:
        self._prefix = f"rate\x00{api_id}\x00"
        self._counters = counters
        self._clock = clock
        # Keyed by identity, not by the model: hashing a pydantic model is a Python-level call
        # per request. The model is kept in the value, so a reused id() cannot alias it.
        self._templates: dict[int, tuple[RateLimit, bytes]] = {}

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
        cached = self._templates.get(id(rate))
        if cached is not None and cached[0] is rate:
            template = cached[1]
        else:
            template = limit_template("rate", decision.limit, rate.per_seconds, legacy=True)
            self._templates[id(rate)] = (rate, template)
        exchange.response_headers.append(
            limit_lines(template, decision.remaining, decision.reset_after, legacy=True)
        )


class QuotaStep:
    """Fixed-window quota per API and identity; denied requests do not consume it."""

    __slots__ = ("_clock", "_counters", "_prefix", "_templates")

    def __init__(self, api_id: str, counters: CounterStore, clock: Callable[[], float]) -> None:
        self._prefix = f"quota\x00{api_id}\x00"
        self._counters = counters
        self._clock = clock
        # By identity, as in RateLimitStep; the X-RateLimit trio is included or not.
        self._templates: dict[tuple[int, bool], tuple[Quota, bytes]] = {}

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
        legacy = policy is None or policy.rate is None
        key = (id(quota), legacy)
        cached = self._templates.get(key)
        if cached is not None and cached[0] is quota:
            template = cached[1]
        else:
            template = limit_template(
                "quota", decision.limit, quota.renewal_seconds, legacy=legacy
            )
            self._templates[key] = (quota, template)
        exchange.response_headers.append(
            limit_lines(template, decision.remaining, decision.reset_after, legacy=legacy)
        )
