"""Rate limiting with GCRA (the generic cell rate algorithm).

A limit of ``requests`` per ``per_seconds`` has an emission interval ``T = per_seconds /
requests``. The only state is the theoretical arrival time (TAT): the instant at which the bucket
would be empty again if no more requests came. A request at ``now`` is allowed when, after adding
``T``, the TAT is at most ``per_seconds`` ahead of ``now``. So a full bucket allows exactly
``requests`` requests at one instant, and after that one more every ``T`` seconds: the burst and
the sustained rate come from the same two numbers and nothing is reset at window edges.

Time is passed in (seconds, any origin); nothing here reads a clock. Timestamps are floats, so
their magnitude sets the precision: at Unix-epoch values an ulp is ~0.2 µs and a burst of N can
drift by N ulps, which matters only for sub-millisecond emission intervals. A monotonic clock,
or the epoch minus a fixed offset, keeps that negligible.
"""

from __future__ import annotations

import sys
from typing import Final, NamedTuple

from propylon.domain.config import RateLimit

_EPSILON: Final = sys.float_info.epsilon


class RateDecision(NamedTuple):
    """The outcome of one rate-limited request, with what the response headers need.

    A named tuple rather than a frozen dataclass: just as immutable, and several times cheaper
    to build, which counts because one is built for every request of a rate-limited API.

    ``reset_after`` is the number of seconds until the bucket is full again; ``retry_after`` is 0
    when allowed, else the number of seconds until one request will be allowed.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float


# A named tuple's own constructor is a Python-level function; the tuple constructor builds the
# same object without that call, which matters when one decision is made per request.
_new_tuple: Final = tuple.__new__


class GcraLimit:
    """A :class:`RateLimit` as :func:`gcra` uses it, prepared once per limit.

    Reading a field of the pydantic model is a generic attribute lookup (its class defines
    ``__getattr__``), about 350 instructions each; compiled, these are fields of a C struct.
    Whoever applies a limit per request (the rate-limit step) keeps one of these per limit.
    """

    __slots__ = ("interval", "rate", "requests", "window")

    def __init__(self, rate: RateLimit) -> None:
        self.rate = rate
        self.requests: int = rate.requests
        self.window: float = float(rate.per_seconds)
        self.interval: float = self.window / self.requests


# The new TAT, then a RateDecision's fields in order: allowed, limit, remaining, reset_after,
# retry_after.
GcraOutcome = tuple[float, bool, int, int, float, float]


def gcra(tat: float, now: float, limit: GcraLimit) -> tuple[float, RateDecision]:
    """Apply one request at ``now`` to the state ``tat``; return the new TAT and the decision.

    A fresh key may pass any ``tat <= now`` (``now`` itself, or 0). A denied request leaves the
    TAT unchanged, so being refused costs nothing.
    """
    new_tat, allowed, requests, remaining, reset_after, retry_after = gcra_outcome(tat, now, limit)
    return new_tat, _new_tuple(RateDecision, (allowed, requests, remaining, reset_after, retry_after))


def gcra_outcome(tat: float, now: float, limit: GcraLimit) -> GcraOutcome:
    """:func:`gcra` as plain fields. Compiled callers get them without any object being built
    (a fixed-length tuple passes between compiled functions as a C struct), where the named tuple
    costs about 900 instructions per request."""
    requests = limit.requests
    window = limit.window
    interval = limit.interval
    start = tat if tat > now else now
    new_tat = start + interval
    ahead = new_tat - now
    # Each stored TAT is rounded, and with epoch-sized timestamps an ulp is ~0.2 µs, so a burst
    # of N could otherwise lose its last request to rounding. The slack covers N roundings and
    # stays far below one interval, so the burst size is still exact.
    # (epsilon * |x| bounds ulp(x) and avoids a function call; so do the conditionals below,
    # which compile to float comparisons where min() and abs() are calls of builtins.)
    end = new_tat + window
    slack = (requests + 1) * _EPSILON * (end if end >= 0.0 else -end)
    half = 0.5 * interval
    if slack > half:
        slack = half
    if ahead > window + slack:
        return tat, False, requests, 0, start - now, ahead - window
    remaining = int((window - ahead + slack) / interval)
    if remaining >= requests:
        remaining = requests - 1
    elif remaining < 0:
        remaining = 0
    return new_tat, True, requests, remaining, ahead, 0.0
