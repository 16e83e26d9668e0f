"""In-process counters for the embedded and single-node gateway: plain ordered dicts.

Memory stays bounded without ever scanning the whole table on one call:

- new keys join the back of their table, and every 32nd call examines the 64 entries at the
  front: a fully recovered one (rate: TAT not ahead of now; quota: window over) is dropped, since
  a fresh entry would decide the same; a live one rotates to the back. Each call adds at most one
  entry and, on average, two are examined, so recovered entries cannot pile up (sweeping in
  bursts keeps the per-call cost to a counter check);
- a hard cap ``max_keys`` per table evicts from the front when many distinct keys are live at
  once. An evicted key starts afresh, i.e. this fails open for that key: the alternative,
  refusing new keys, would let a flood of identities lock out everyone else.

A quota entry moves to the back whenever it is used. A rate entry is a small mutable object
updated where it stands: a rate limit is applied to every request of a limited API, and moving
its entry (an ``OrderedDict`` pop and insert) cost more than the GCRA arithmetic itself. So the
rate table's front holds the entries least recently added or examined by the sweep, not least
recently used; a live entry that reaches the front rotates to the back as before, and only the
hard cap (more than ``max_keys`` live identities) can evict one that is in use. The rate table is
swept per 32 keys *added* rather than per 32 calls, so callers the table already knows cost no
sweeping at all, and an entry stays until its bucket has been full for ``_RATE_GRACE`` seconds:
under a generous limit a steady caller's bucket refills between two requests, and dropping it at
once only meant adding it again on the next request (and sweeping for that addition).

Not thread-safe: each gateway worker is one event loop, and each owns its counters.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from propylon.domain.config import Quota
from propylon.policy.quota import QuotaDecision, quota_hit
from propylon.policy.rate import GcraLimit, RateDecision, gcra_outcome

DEFAULT_MAX_KEYS: Final = 1_000_000

# Entries examined per call (quota) or per key added (rate); two keeps the sweep ahead of
# insertions (at most one per call).
_SWEEP_EVERY: Final = 32
_SWEEP_BATCH: Final = 64
# Seconds a rate entry is kept after its bucket is full again (see the module docstring).
_RATE_GRACE: Final = 1.0

# Builds a named tuple without its Python-level __new__ (see policy.rate).
_new_tuple: Final = tuple.__new__

# (window_start, used, window_end): the end is kept so the sweep needs no Quota to judge it.
_QuotaState = tuple[float, int, float]


class _RateState:
    """One key's theoretical arrival time (GCRA), updated in place."""

    __slots__ = ("tat",)

    def __init__(self, tat: float) -> None:
        self.tat = tat


class MemoryCounters:
    """A :class:`~propylon.storage.counters.CounterStore` in this process's memory."""

    __slots__ = ("_max_keys", "_quota_calls", "_quotas", "_rate_added", "_rates")

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._max_keys = max_keys
        # OrderedDict rather than dict: popping from the front of a plain dict leaves dead
        # slots that make finding the next front entry O(n) until the dict is rebuilt.
        self._rates: OrderedDict[str, _RateState] = OrderedDict()
        self._quotas: OrderedDict[str, _QuotaState] = OrderedDict()
        # One counter per table: a shared one could always be odd when one of them is called.
        self._rate_added = 0
        self._quota_calls = 0

    def __len__(self) -> int:
        """The number of keys held, rate and quota entries counted separately."""
        return len(self._rates) + len(self._quotas)

    def rate_hit(self, key: str, limit: GcraLimit, now: float) -> RateDecision:
        """Apply one request at ``now`` to ``key``'s rate limit (GCRA)."""
        return _new_tuple(RateDecision, self.rate_fields(key, limit, now))

    def rate_fields(self, key: str, limit: GcraLimit, now: float) -> tuple[bool, int, int, float, float]:
        """:meth:`rate_hit`'s decision as plain fields, in :class:`RateDecision`'s order.

        For compiled callers that know they hold this store (the rate-limit step): no decision
        object is built. Everyone else uses :meth:`rate_hit`.
        """
        rates = self._rates
        state = rates.get(key)
        if state is not None:
            tat, allowed, requests, remaining, reset_after, retry_after = gcra_outcome(
                state.tat, now, limit
            )
            state.tat = tat
            return allowed, requests, remaining, reset_after, retry_after
        tat, allowed, requests, remaining, reset_after, retry_after = gcra_outcome(now, now, limit)
        rates[key] = _RateState(tat)
        self._rate_added += 1
        if not self._rate_added % _SWEEP_EVERY:
            # min(): a table smaller than the batch is examined once round, not more.
            stale = now - _RATE_GRACE
            for _ in range(min(_SWEEP_BATCH, len(rates))):
                old_key, old_state = rates.popitem(last=False)
                if old_state.tat > stale:
                    rates[old_key] = old_state
        if len(rates) > self._max_keys:
            while len(rates) > self._max_keys:
                rates.popitem(last=False)
        return allowed, requests, remaining, reset_after, retry_after

    def quota_hit(self, key: str, quota: Quota, now: float) -> QuotaDecision:
        """Count one request at ``now`` against ``key``'s quota (fixed window from first use)."""
        quotas = self._quotas
        state = quotas.pop(key, None)
        start, used = (state[0], state[1]) if state is not None else (None, 0)
        start, used, decision = quota_hit(start, used, now, quota)
        quotas[key] = (start, used, start + quota.renewal_seconds)
        self._quota_calls += 1
        if not self._quota_calls % _SWEEP_EVERY:
            for _ in range(min(_SWEEP_BATCH, len(quotas))):
                old_key, old_state = quotas.popitem(last=False)
                if old_state[2] > now:
                    quotas[old_key] = old_state
        if len(quotas) > self._max_keys:
            while len(quotas) > self._max_keys:
                quotas.popitem(last=False)
        return decision

    def clear(self) -> None:
        """Forget every counter."""
        self._rates.clear()
        self._quotas.clear()
