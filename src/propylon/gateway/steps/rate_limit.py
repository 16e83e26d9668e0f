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
from propylon.gateway.steps.base import ChainStep
from propylon.policy.rate import GcraLimit, RateDecision
from propylon.storage.counters import CounterStore
from propylon.storage.memory_counters import MemoryCounters

# Final: compiled, a static rather than a module-dictionary lookup per call.
wall_clock: Final = time.time
_MAX_KEYS: Final = 100_000
# Rendered rate-limit header lines by (template, remaining, reset, reset time); see limit_lines.
_LINES: Final[dict[tuple[bytes, int, int, int], bytes]] = {}
_MAX_LINES: Final = 4096


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
    """The header lines for a successful response, from the limit's :func:`limit_template`.

    Remembered per template and numbers: the same few combinations recur within a second (a
    small limit cycles through its remaining counts, a large one hardly moves), and a lookup
    costs a fraction of formatting four numbers into bytes.
    """
    remaining, reset, at = _numbers(remaining, reset_after, legacy)
    return _render(template, remaining, reset, at, legacy)


def _numbers(remaining: int, reset_after: float, legacy: bool) -> tuple[int, int, int]:
    # What the lines say: remaining (never negative), whole seconds to reset and, for the
    # X-RateLimit trio only, the reset as a Unix time (0 otherwise).
    reset = ceil(reset_after) if reset_after > 0 else 0
    remaining = remaining if remaining > 0 else 0
    at = int(wall_clock()) + reset if legacy else 0
    return remaining, reset, at


def _render(template: bytes, remaining: int, reset: int, at: int, legacy: bool) -> bytes:
    key = (template, remaining, reset, at)
    lines = _LINES.get(key)
    if lines is None:
        if len(_LINES) >= _MAX_LINES:
            _LINES.clear()
        values = (remaining, reset, remaining, at) if legacy else (remaining, reset)
        lines = _LINES[key] = template % values
    return lines


def retry_after(seconds: float) -> Header:
    """``Retry-After`` in whole seconds, never 0 (0 would invite an immediate retry storm)."""
    return (b"retry-after", str(max(1, math.ceil(seconds))).encode())


class CounterKeys:
    """Counter keys (``kind``, API, identity) made once per identity rather than per request.

    The identity string comes from the auth step's cache (its hash already computed), and the key
    made once keeps its own hash, so neither is built nor hashed again per request.
    """

    __slots__ = ("_keys", "_prefix")

    def __init__(self, kind: str, api_id: str) -> None:
        self._prefix = f"{kind}\x00{api_id}\x00"
        self._keys: dict[str, str] = {}

    def key(self, identity: str) -> str:
        """The counter key of ``identity`` for this API."""
        key = self._keys.get(identity)
        if key is None:
            if len(self._keys) >= _MAX_KEYS:
                self._keys.clear()
            key = self._keys[identity] = self._prefix + identity
        return key


class _PreparedRate:
    """One rate limit made ready for the hot path: its GCRA numbers, its header template and the
    header lines it rendered last."""

    __slots__ = ("_at", "_lines", "_remaining", "_reset", "limit", "template")

    def __init__(self, rate: RateLimit) -> None:
        self.limit = GcraLimit(rate)
        self.template = limit_template("rate", rate.requests, rate.per_seconds, legacy=True)
        self._remaining = -1
        self._reset = -1
        self._at = -1
        self._lines = b""

    def lines(self, remaining: int, reset_after: float) -> bytes:
        """:func:`limit_lines` for this limit, with the last result kept beside the memo.

        Under a generous limit every caller sees the same numbers for a second at a time, and
        comparing three integers here is cheaper than the memo's tuple key and lookup; a small
        limit, whose numbers change per caller, falls through to the memo.
        """
        remaining, reset, at = _numbers(remaining, reset_after, True)
        if remaining == self._remaining and reset == self._reset and at == self._at:
            return self._lines
        lines = _render(self.template, remaining, reset, at, True)
        self._remaining = remaining
        self._reset = reset
        self._at = at
        self._lines = lines
        return lines


class RateLimitStep(ChainStep):
    """GCRA rate limit per API and identity."""

    __slots__ = ("_clock", "_hit", "_keys", "_memory", "_prepared")

    def __init__(self, api_id: str, counters: CounterStore, clock: Callable[[], float]) -> None:
        self._keys = CounterKeys("rate", api_id)
        # The in-process store is called natively for plain fields (no decision object, no
        # Python-level call); any other store through the interface, by its bound method.
        self._memory = counters if isinstance(counters, MemoryCounters) else None
        self._hit: Callable[[str, GcraLimit, float], RateDecision] = counters.rate_hit
        self._clock = clock
        # Keyed by identity, not by the model: hashing a pydantic model is a Python-level call
        # per request. The model is kept in the value, so a reused id() cannot alias it.
        self._prepared: dict[int, _PreparedRate] = {}

    def run(self, exchange: Exchange) -> None:
        policy = exchange.policy
        rate = policy.rate if policy is not None else None
        if rate is None:
            return
        prepared = self._prepared.get(id(rate))
        if prepared is None or prepared.limit.rate is not rate:
            prepared = self._prepared[id(rate)] = _PreparedRate(rate)
        key = self._keys.key(exchange.identity or "")
        memory = self._memory
        if memory is not None:
            allowed, limit, remaining, reset_after, wait = memory.rate_fields(
                key, prepared.limit, self._clock()
            )
        else:
            allowed, limit, remaining, reset_after, wait = self._hit(key, prepared.limit, self._clock())
        if not allowed:
            headers = limit_headers(
                "rate", limit, remaining, reset_after, rate.per_seconds, legacy=True
            )
            raise TooManyRequests(
                "Rate limit exceeded", reason="rate_limited",
                headers=[*headers, retry_after(wait)],
            )
        exchange.response_headers.append(prepared.lines(remaining, reset_after))


class QuotaStep(ChainStep):
    """Fixed-window quota per API and identity; denied requests do not consume it."""

    __slots__ = ("_clock", "_counters", "_keys", "_templates")

    def __init__(self, api_id: str, counters: CounterStore, clock: Callable[[], float]) -> None:
        self._keys = CounterKeys("quota", api_id)
        self._counters = counters
        self._clock = clock
        # By identity, as in RateLimitStep; the X-RateLimit trio is included or not.
        self._templates: dict[tuple[int, bool], tuple[Quota, bytes]] = {}

    def run(self, exchange: Exchange) -> None:
        policy = exchange.policy
        quota = policy.quota if policy is not None else None
        if quota is None:
            return
        decision = self._counters.quota_hit(self._keys.key(exchange.identity or ""), quota, self._clock())
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
