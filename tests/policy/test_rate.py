"""GCRA: exact bursts, recovery after one emission interval, remaining and reset values."""

from __future__ import annotations

import math

import pytest

from propylon.domain.config import RateLimit
from propylon.policy.rate import GcraLimit, RateDecision, gcra

# Epoch-sized and small origins: rounding must not eat the last request of a burst.
ORIGINS = [0.0, 1000.25, 1_767_225_600.123]


def apply(tat: float, now: float, rate: RateLimit) -> tuple[float, RateDecision]:
    return gcra(tat, now, GcraLimit(rate))


def burst(
    rate: RateLimit, now: float, count: int, tat: float = 0.0
) -> tuple[float, list[RateDecision]]:
    decisions = []
    for _ in range(count):
        tat, decision = apply(tat, now, rate)
        decisions.append(decision)
    return tat, decisions


@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize(
    ("requests", "per_seconds"),
    [(1, 1.0), (3, 1.0), (3, 3.0), (5, 0.5), (7, 10.0), (10, 1.0), (100, 60.0), (1000, 1.0)],
)
def test_burst_of_exactly_requests_then_denied(
    origin: float, requests: int, per_seconds: float
) -> None:
    rate = RateLimit(requests=requests, per_seconds=per_seconds)
    interval = per_seconds / requests
    # Timing precision is bounded by float rounding of the timestamps themselves (an ulp is
    # ~0.2 µs at epoch magnitudes, and a burst of N accumulates up to N of them).
    eps = 2 * (requests + 1) * math.ulp(origin + per_seconds)
    tat, decisions = burst(rate, origin, requests + 1)
    assert [d.allowed for d in decisions] == [True] * requests + [False]
    assert [d.remaining for d in decisions] == [*range(requests - 1, -1, -1), 0]
    denied = decisions[-1]
    assert denied.retry_after == pytest.approx(interval, abs=eps)
    assert denied.reset_after == pytest.approx(per_seconds, abs=eps)
    assert all(d.limit == requests for d in decisions)

    # before one interval has passed: still denied
    _, early = apply(tat, origin + interval * 0.9 - eps, rate)
    assert not early.allowed
    assert early.retry_after == pytest.approx(interval * 0.1 + eps, abs=eps)
    # after one interval: exactly one more, then denied again
    later = origin + interval
    tat, again = apply(tat, later, rate)
    assert again.allowed
    assert again.remaining == 0
    _, after = apply(tat, later, rate)
    assert not after.allowed


def test_denied_request_leaves_state_unchanged() -> None:
    rate = RateLimit(requests=2, per_seconds=2)
    tat, _ = burst(rate, 10.0, 2)
    unchanged, decision = apply(tat, 10.5, rate)
    assert not decision.allowed
    assert unchanged == tat
    assert decision.retry_after == pytest.approx(0.5)
    assert decision.remaining == 0


def test_first_request_and_its_headers() -> None:
    rate = RateLimit(requests=10, per_seconds=60)
    tat, decision = apply(0.0, 1000.0, rate)
    assert decision == RateDecision(
        allowed=True, limit=10, remaining=9, reset_after=6.0, retry_after=0.0
    )
    assert tat == 1006.0


def test_stale_state_counts_as_a_full_bucket() -> None:
    rate = RateLimit(requests=3, per_seconds=3)
    _, fresh = apply(0.0, 500.0, rate)
    _, stale = apply(100.0, 500.0, rate)
    assert fresh == stale
    assert fresh.remaining == 2


@pytest.mark.parametrize(
    ("wait", "remaining_after_one_more"),
    [(0.0, None), (1.0, 0), (2.0, 1), (2.5, 1), (3.0, 2), (100.0, 2)],
)
def test_bucket_refills_one_per_interval(wait: float, remaining_after_one_more: int | None) -> None:
    rate = RateLimit(requests=3, per_seconds=3)
    tat, _ = burst(rate, 0.0, 3)
    _, decision = apply(tat, wait, rate)
    if remaining_after_one_more is None:
        assert not decision.allowed
    else:
        assert decision.allowed
        assert decision.remaining == remaining_after_one_more


def test_sustained_rate_never_exceeds_the_limit() -> None:
    rate = RateLimit(requests=5, per_seconds=1)
    tat = 0.0
    allowed = 0
    # one request every millisecond for ten seconds
    for step in range(10_000):
        tat, decision = apply(tat, step / 1000, rate)
        allowed += decision.allowed
    # burst of 5 plus 5 per second afterwards
    assert allowed <= 5 + 5 * 10
    assert allowed >= 5 * 10


def test_reset_after_when_allowed_is_time_to_full_bucket() -> None:
    rate = RateLimit(requests=4, per_seconds=2)
    _, decisions = burst(rate, 0.0, 2)
    assert decisions[1].reset_after == pytest.approx(1.0)
