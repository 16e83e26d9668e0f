"""Limits in plain words for developers: "at most 10 requests per second", "per 2 hours"."""

from __future__ import annotations

from propylon.domain.resources import PolicySpec

_UNITS = (("week", 604_800), ("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1))


def duration(seconds: float) -> str:
    """``seconds`` in the largest unit that divides it: "second", "10 seconds", "2 hours", "day".

    A count of one drops the number ("per day" rather than "per 1 day")."""
    if seconds != int(seconds):
        return f"{seconds:g} seconds"
    whole = int(seconds)
    for unit, size in _UNITS:
        if whole >= size and whole % size == 0:
            count = whole // size
            return unit if count == 1 else f"{count} {unit}s"
    return f"{whole} seconds"


def requests(count: int) -> str:
    """"1 request", "5 requests"."""
    return "1 request" if count == 1 else f"{count} requests"


def limits_in_words(policy: PolicySpec | None) -> list[str]:
    """A policy's rate limit, quota and key expiry as phrases."""
    if policy is None:
        return []
    words = []
    if policy.rate is not None:
        words.append(f"at most {requests(policy.rate.requests)} per {duration(policy.rate.per_seconds)}")
    if policy.quota is not None:
        words.append(f"quota of {requests(policy.quota.max)} per "
                     f"{duration(policy.quota.renewal_seconds)}")
    if policy.key_expires_in_seconds:
        span = duration(policy.key_expires_in_seconds)
        words.append(f"access expires after {span if span[0].isdigit() else 'a ' + span}")
    return words or ["no rate limit or quota"]
