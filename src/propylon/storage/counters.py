"""The interface of rate-limit and quota counter stores.

A store keeps, per key (identity and API, chosen by the caller), the state that
:mod:`propylon.policy.rate` and :mod:`propylon.policy.quota` evolve, and applies one request to
it atomically. The math lives in ``policy``; a store only keeps state, so every backend decides
exactly the same way.
"""

from __future__ import annotations

from typing import Protocol

from propylon.domain.config import Quota
from propylon.policy.quota import QuotaDecision
from propylon.policy.rate import GcraLimit, RateDecision


class CounterStore(Protocol):
    """Counts requests against rate limits and quotas, per key.

    These methods are synchronous: the in-memory backend never waits. The Redis backend coming
    later will add an async variant of this interface (same methods, awaitable) for stores that
    need a network round trip; callers pick the variant when the chain is compiled.
    Rate and quota state live apart, so one key may carry both.
    """

    def rate_hit(self, key: str, limit: GcraLimit, now: float) -> RateDecision:
        """Apply one request at ``now`` to ``key``'s rate limit; a refusal consumes nothing.

        ``limit`` is the policy's rate limit prepared once (:class:`GcraLimit`), not per call.
        """
        ...

    def quota_hit(self, key: str, quota: Quota, now: float) -> QuotaDecision:
        """Count one request at ``now`` against ``key``'s quota; a refusal consumes nothing."""
        ...

    def clear(self) -> None:
        """Forget every counter (tests, and an operator's "reset limits" action)."""
        ...
