"""Throttling of failed admin logins (HTTP Basic), per username and per client address.

Each key (a username, or a client address) keeps the times of its recent failures in a sliding
window. Once a key holds ``max_failures`` failures within ``window`` seconds, password logins for it
are refused with 429 and ``Retry-After`` until the oldest failure leaves the window.

Decisions, and why:

- **While a username is throttled, even its correct password is refused** (the password is not
  checked at all). Otherwise a guesser would keep guessing: a wrong guess would get 429 and the
  right one 200, so the throttle would slow nothing. Admin API tokens are never throttled, so
  automation keeps working while someone hammers the login.
- **Unknown usernames are counted exactly like real ones**, so neither the 401s nor the 429s tell
  an attacker which usernames exist.
- **A client address gets a larger allowance** (``address_factor`` times) than a username: several
  admins may share one address (NAT, a bastion host), while spraying many usernames from one address
  is still caught.
- **A successful login forgets its username's failures** but not its address's.
- Refused attempts are not counted (the window ends when it says it does), and the table is bounded:
  past ``max_keys`` the key whose last failure is oldest is forgotten.

The state is in process memory: each dashboard process throttles on its own, and a restart forgets
the failures. With N dashboards behind a load balancer an attacker gets at most N times the allowance.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from propylon.dashboard.errors import ApiError

DEFAULT_MAX_FAILURES = 10
DEFAULT_WINDOW_SECONDS = 300.0
_MAX_KEY_LENGTH = 256


class LoginThrottle:
    """Sliding-window counters of failed logins per username and per client address."""

    def __init__(
        self,
        *,
        max_failures: int = DEFAULT_MAX_FAILURES,
        window: float = DEFAULT_WINDOW_SECONDS,
        address_factor: int = 3,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window <= 0 or address_factor < 1 or max_keys < 2:
            raise ValueError("max_failures, address_factor and window must be positive")
        self.max_failures = max_failures
        self.window = window
        self.address_max_failures = max_failures * address_factor
        self._max_keys = max_keys
        self._clock = clock
        # Ordered by last failure (oldest first), so eviction and expiry look at the front only.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, username: str, address: str | None) -> None:
        """Raise a 429 :class:`ApiError` if logins for ``username`` or from ``address`` are
        throttled now; otherwise return (the caller then checks the password)."""
        now = self._clock()
        wait = max(
            self._wait(_user_key(username), self.max_failures, now),
            self._wait(_address_key(address), self.address_max_failures, now) if address else 0.0,
        )
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise ApiError(
                429,
                "too_many_attempts",
                f"too many failed logins; try again in {retry_after} s (admin API tokens are "
                "not affected)",
                headers={"Retry-After": str(retry_after)},
            )

    def failed(self, username: str, address: str | None) -> None:
        """Count one failed login for ``username`` and ``address``."""
        now = self._clock()
        self._add(_user_key(username), now)
        if address:
            self._add(_address_key(address), now)

    def succeeded(self, username: str) -> None:
        """Forget the failures of ``username`` (its address keeps its count)."""
        self._failures.pop(_user_key(username), None)

    def _wait(self, key: str, limit: int, now: float) -> float:
        times = self._failures.get(key)
        if times is None:
            return 0.0
        self._expire(times, now)
        if not times:
            del self._failures[key]
            return 0.0
        if len(times) < limit:
            return 0.0
        # Allowed again once enough failures have left the window to bring the count under limit.
        return times[len(times) - limit] + self.window - now

    def _add(self, key: str, now: float) -> None:
        times = self._failures.pop(key, None)
        if times is None:
            times = deque()
        self._expire(times, now)
        times.append(now)
        self._failures[key] = times
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)

    def _expire(self, times: deque[float], now: float) -> None:
        horizon = now - self.window
        while times and times[0] <= horizon:
            times.popleft()


def _user_key(username: str) -> str:
    return "u:" + username[:_MAX_KEY_LENGTH]


def _address_key(address: str | None) -> str:
    return "a:" + (address or "")[:_MAX_KEY_LENGTH]
