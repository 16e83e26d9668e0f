"""Combining policies for one API: who takes part, most generous limits, unlimited wins."""

from __future__ import annotations

import pytest

from propylon.domain.config import ALL_APIS, AccessRule, Policy, Quota, RateLimit
from propylon.policy.combine import combine_for_api

GRANT = {"api": AccessRule()}


def policy(
    pid: str,
    rate: RateLimit | None = None,
    quota: Quota | None = None,
    rights: dict[str, AccessRule] | None = None,
) -> Policy:
    return Policy(id=pid, rate=rate, quota=quota, access_rights=GRANT if rights is None else rights)


def test_none_when_no_policy_grants_the_api() -> None:
    other = policy("p", rights={"other": AccessRule()})
    assert combine_for_api([other], "api") is None
    assert combine_for_api([], "api") is None


def test_only_policies_granting_the_api_take_part() -> None:
    slow = RateLimit(requests=1, per_seconds=1)
    fast = RateLimit(requests=100, per_seconds=1)
    granted = policy("a", rate=slow, quota=Quota(max=1, renewal_seconds=60))
    ignored = policy(
        "b", rate=fast, quota=Quota(max=1000, renewal_seconds=60), rights={"other": AccessRule()}
    )
    unlimited_elsewhere = policy("c", rights={"other": AccessRule()})
    effective = combine_for_api([granted, ignored, unlimited_elsewhere], "api")
    assert effective is not None
    assert effective.policy_ids == ("a",)
    assert effective.rate == slow
    assert effective.quota == Quota(max=1, renewal_seconds=60)


def test_star_grants_every_api() -> None:
    effective = combine_for_api([policy("s", rights={ALL_APIS: AccessRule()})], "api")
    assert effective is not None
    assert effective.policy_ids == ("s",)


def test_policy_ids_keep_the_given_order_without_repeats() -> None:
    effective = combine_for_api([policy("z"), policy("a"), policy("z"), policy("m")], "api")
    assert effective is not None
    assert effective.policy_ids == ("z", "a", "m")


@pytest.mark.parametrize(
    ("rates", "expected"),
    [
        # highest requests/per_seconds
        ([RateLimit(requests=10, per_seconds=1), RateLimit(requests=50, per_seconds=1)], 1),
        ([RateLimit(requests=100, per_seconds=60), RateLimit(requests=5, per_seconds=1)], 1),
        ([RateLimit(requests=600, per_seconds=60), RateLimit(requests=5, per_seconds=1)], 0),
        # equal rate: the larger burst
        ([RateLimit(requests=10, per_seconds=1), RateLimit(requests=20, per_seconds=2)], 1),
        ([RateLimit(requests=20, per_seconds=2), RateLimit(requests=10, per_seconds=1)], 0),
        ([RateLimit(requests=1, per_seconds=3), RateLimit(requests=2, per_seconds=6)], 1),
    ],
)
def test_most_generous_rate(rates: list[RateLimit], expected: int) -> None:
    policies = [policy(f"p{i}", rate=r) for i, r in enumerate(rates)]
    effective = combine_for_api(policies, "api")
    assert effective is not None
    assert effective.rate == rates[expected]


@pytest.mark.parametrize(
    ("quotas", "expected"),
    [
        ([Quota(max=10, renewal_seconds=60), Quota(max=100, renewal_seconds=3600)], 1),
        ([Quota(max=100, renewal_seconds=60), Quota(max=10, renewal_seconds=1)], 0),
        # equal max: the shorter renewal
        ([Quota(max=10, renewal_seconds=60), Quota(max=10, renewal_seconds=30)], 1),
        ([Quota(max=10, renewal_seconds=30), Quota(max=10, renewal_seconds=60)], 0),
        ([Quota(max=0, renewal_seconds=60), Quota(max=1, renewal_seconds=60)], 1),
    ],
)
def test_most_generous_quota(quotas: list[Quota], expected: int) -> None:
    policies = [policy(f"p{i}", quota=q) for i, q in enumerate(quotas)]
    effective = combine_for_api(policies, "api")
    assert effective is not None
    assert effective.quota == quotas[expected]


def test_one_unlimited_policy_makes_the_limit_unlimited() -> None:
    limited = policy(
        "limited", rate=RateLimit(requests=1, per_seconds=1), quota=Quota(max=1, renewal_seconds=1)
    )
    unlimited = policy("unlimited")
    for order in ([limited, unlimited], [unlimited, limited]):
        effective = combine_for_api(order, "api")
        assert effective is not None
        assert effective.rate is None
        assert effective.quota is None


def test_unlimited_rate_and_quota_are_independent() -> None:
    no_rate = policy("a", quota=Quota(max=5, renewal_seconds=60))
    no_quota = policy("b", rate=RateLimit(requests=5, per_seconds=1))
    both = policy(
        "c", rate=RateLimit(requests=1, per_seconds=1), quota=Quota(max=1, renewal_seconds=1)
    )
    effective = combine_for_api([no_rate, both], "api")
    assert effective is not None
    assert effective.rate is None
    assert effective.quota == Quota(max=5, renewal_seconds=60)
    effective = combine_for_api([no_quota, both], "api")
    assert effective is not None
    assert effective.rate == RateLimit(requests=5, per_seconds=1)
    assert effective.quota is None


def test_access_is_the_union_of_the_api_rule_and_the_star_rule() -> None:
    a = policy(
        "a",
        rights={
            "api": AccessRule(methods=("GET",), paths=("/items/*",)),
            ALL_APIS: AccessRule(paths=("/health",)),
        },
    )
    b = policy("b", rights={"api": AccessRule(methods=("POST",), paths=("/orders",))})
    c = policy("c", rights={"other": AccessRule()})  # grants everything, but elsewhere
    effective = combine_for_api([a, b, c], "api")
    assert effective is not None
    access = effective.access
    assert access.allows("GET", "/items/1")
    assert access.allows("DELETE", "/health")
    assert access.allows("POST", "/orders")
    assert not access.allows("POST", "/items/1")
    assert not access.allows("GET", "/orders")
    assert not access.allows("GET", "/other")


def test_same_rules_share_one_compiled_matcher() -> None:
    rights = {"api": AccessRule(methods=("GET",), paths=("/x",))}
    first = combine_for_api([policy("a", rights=rights)], "api")
    second = combine_for_api([policy("b", rights=dict(rights))], "api")
    assert first is not None
    assert second is not None
    assert first.access is second.access
