"""Combining the policies that apply to a caller into one effective policy for one API.

The rules follow Tyk's partitioned-policy merge, so that imported setups behave the same:

- only policies granting the API (its own id or ``*`` in ``access_rights``) take part; when none
  does the caller is refused (the caller answers 403);
- access rights are the union of every participating rule for the API and for ``*``;
- the rate limit is the most generous one (highest ``requests / per_seconds``; on a tie the
  larger burst ``requests``), and any participating policy without a rate makes it unlimited;
- the quota is the most generous one (largest ``max``; on a tie the shorter renewal), and any
  participating policy without a quota makes it unlimited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from propylon.domain.config import ALL_APIS, AccessRule, Policy, Quota, RateLimit
from propylon.policy.access import AccessMatcher


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    """What one caller may do on one API; ``None`` rate or quota means unlimited."""

    policy_ids: tuple[str, ...]
    rate: RateLimit | None
    quota: Quota | None
    access: AccessMatcher
    label: str = field(init=False, compare=False, repr=False)
    """``policy_ids`` comma-joined, as analytics records name them (joined once, not per request)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", ",".join(self.policy_ids))


# Callers combine per token and API; the same few rule sets recur, so the regex compilation is
# paid once per distinct rule set rather than per call. Rules are frozen, hence hashable.
@lru_cache(maxsize=4096)
def _matcher(rules: tuple[AccessRule, ...]) -> AccessMatcher:
    return AccessMatcher(rules)


def _more_generous_rate(a: RateLimit, b: RateLimit) -> bool:
    # Cross-multiplied so that equal rates written differently (10/1 vs 20/2) compare equal.
    left = a.requests * b.per_seconds
    right = b.requests * a.per_seconds
    if left != right:
        return left > right
    return a.requests > b.requests


def _more_generous_quota(a: Quota, b: Quota) -> bool:
    if a.max != b.max:
        return a.max > b.max
    return a.renewal_seconds < b.renewal_seconds


def combine_for_api(policies: Sequence[Policy], api_id: str) -> EffectivePolicy | None:
    """Merge ``policies`` for ``api_id``; ``None`` when none of them grants the API.

    ``policy_ids`` lists the participating policies in the given order, without repeats.
    """
    ids: list[str] = []
    rules: list[AccessRule] = []
    rate: RateLimit | None = None
    quota: Quota | None = None
    unlimited_rate = False
    unlimited_quota = False
    for policy in policies:
        own = policy.access_rights.get(api_id)
        every = policy.access_rights.get(ALL_APIS)
        if own is None and every is None:
            continue
        if policy.id in ids:
            continue
        ids.append(policy.id)
        if own is not None:
            rules.append(own)
        if every is not None:
            rules.append(every)
        if policy.rate is None:
            unlimited_rate = True
        elif rate is None or _more_generous_rate(policy.rate, rate):
            rate = policy.rate
        if policy.quota is None:
            unlimited_quota = True
        elif quota is None or _more_generous_quota(policy.quota, quota):
            quota = policy.quota
    if not ids:
        return None
    return EffectivePolicy(
        policy_ids=tuple(ids),
        rate=None if unlimited_rate else rate,
        quota=None if unlimited_quota else quota,
        access=_matcher(tuple(rules)),
    )
