"""Limits in words: units, plurals, and the odd values in between."""

from __future__ import annotations

import pytest

from propylon.domain.resources import PolicySpec
from propylon.portal.wording import duration, limits_in_words, requests


@pytest.mark.parametrize(("seconds", "words"), [
    (1, "second"), (10, "10 seconds"), (60, "minute"), (90, "90 seconds"), (120, "2 minutes"),
    (3600, "hour"), (5400, "90 minutes"), (86_400, "day"), (172_800, "2 days"), (604_800, "week"),
    (1_209_600, "2 weeks"), (0.5, "0.5 seconds"), (2.0, "2 seconds"),
])
def test_duration_uses_the_largest_whole_unit(seconds: float, words: str) -> None:
    assert duration(seconds) == words


def test_requests_are_counted_in_words() -> None:
    assert (requests(1), requests(2)) == ("1 request", "2 requests")


def test_a_policy_in_words() -> None:
    policy = PolicySpec.model_validate({
        "id": "gold", "rate": {"requests": 1, "per_seconds": 1},
        "quota": {"max": 5000, "renewal_seconds": 86_400}, "key_expires_in_seconds": 2_592_000,
        "access_rights": {"orders": {}}})
    assert limits_in_words(policy) == ["at most 1 request per second", "quota of 5000 requests per day",
                                       "access expires after 30 days"]
    bare = PolicySpec.model_validate({"id": "open", "access_rights": {"orders": {}}})
    assert limits_in_words(bare) == ["no rate limit or quota"]
    assert limits_in_words(None) == []
