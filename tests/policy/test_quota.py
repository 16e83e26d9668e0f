"""Quota windows: start at first use, reset when elapsed, denial consumes nothing, max=0."""

from __future__ import annotations

import pytest

from propylon.domain.config import Quota
from propylon.policy.quota import QuotaDecision, quota_hit


def test_first_use_opens_the_window() -> None:
    quota = Quota(max=3, renewal_seconds=60)
    start, used, decision = quota_hit(None, 0, 100.0, quota)
    assert (start, used) == (100.0, 1)
    assert decision == QuotaDecision(allowed=True, limit=3, remaining=2, reset_after=60.0)


def test_max_requests_then_denied_without_consuming() -> None:
    quota = Quota(max=3, renewal_seconds=60)
    start: float | None = None
    used = 0
    remaining = []
    for second in range(3):
        start, used, decision = quota_hit(start, used, 100.0 + second, quota)
        assert decision.allowed
        remaining.append(decision.remaining)
    assert remaining == [2, 1, 0]
    for _ in range(5):
        start, used, decision = quota_hit(start, used, 110.0, quota)
        assert not decision.allowed
        assert decision.remaining == 0
        assert decision.reset_after == pytest.approx(50.0)
    assert (start, used) == (100.0, 3)


@pytest.mark.parametrize(
    ("now", "allowed", "new_start", "new_used"),
    [
        (159.999, False, 100.0, 3),  # still the old window
        (160.0, True, 160.0, 1),  # window elapsed: a new one starts now
        (1000.0, True, 1000.0, 1),  # long idle: starts at now, not at a calendar boundary
    ],
)
def test_window_reset(now: float, allowed: bool, new_start: float, new_used: int) -> None:
    quota = Quota(max=3, renewal_seconds=60)
    start, used, decision = quota_hit(100.0, 3, now, quota)
    assert decision.allowed is allowed
    assert (start, used) == (new_start, new_used)
    if allowed:
        assert decision.remaining == 2
        assert decision.reset_after == 60.0


def test_partial_use_carries_over_within_the_window() -> None:
    quota = Quota(max=3, renewal_seconds=60)
    start, used, decision = quota_hit(100.0, 1, 130.0, quota)
    assert (start, used, decision.remaining) == (100.0, 2, 1)
    assert decision.reset_after == pytest.approx(30.0)


def test_max_zero_denies_everything() -> None:
    quota = Quota(max=0, renewal_seconds=60)
    start: float | None = None
    used = 0
    for now in (0.0, 1.0, 61.0, 10_000.0):
        start, used, decision = quota_hit(start, used, now, quota)
        assert not decision.allowed
        assert decision.remaining == 0
        assert decision.limit == 0
        assert used == 0


def test_clock_stepping_back_keeps_the_window() -> None:
    quota = Quota(max=2, renewal_seconds=60)
    start, used, decision = quota_hit(100.0, 2, 90.0, quota)
    assert not decision.allowed
    assert (start, used) == (100.0, 2)
    assert decision.reset_after == 60.0
