"""Quotas: at most ``max`` requests per fixed window that starts at first use.

The window opens with the first request after the previous window ended (not at calendar
boundaries), as Tyk's quotas do, so each identity gets a full window from its first call. A
refused request consumes nothing. Time is passed in; nothing here reads a clock.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from propylon.domain.config import Quota


class QuotaDecision(NamedTuple):
    """The outcome of one request against a quota; ``reset_after`` is seconds until renewal."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: float


# See policy.rate: the tuple constructor skips the named tuple's Python-level __new__.
_new_tuple: Final = tuple.__new__


def quota_hit(
    window_start: float | None, used: int, now: float, quota: Quota
) -> tuple[float, int, QuotaDecision]:
    """Count one request at ``now``; return the new ``(window_start, used)`` and the decision.

    ``window_start`` is ``None`` for a key never seen. When the window has elapsed a new one
    starts at ``now``. ``max=0`` refuses everything.
    """
    renewal = quota.renewal_seconds
    if window_start is None or now >= window_start + renewal:
        window_start = now
        used = 0
    # A clock stepping backwards keeps the current window (resetting would hand out a fresh
    # quota), but the advertised wait never exceeds one window.
    reset_after = min(window_start + renewal - now, float(renewal))
    limit = quota.max
    # (allowed, limit, remaining, reset_after)
    if used >= limit:
        return window_start, used, _new_tuple(QuotaDecision, (False, limit, 0, reset_after))
    used += 1
    return window_start, used, _new_tuple(QuotaDecision, (True, limit, limit - used, reset_after))
