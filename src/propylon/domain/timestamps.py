"""ISO-8601 UTC timestamps for analytics records, formatted once per second.

Kept apart from :mod:`propylon.domain.analytics` so that mypyc compiles it (setup.py's
``HOT_PATH``): the JSON-lines writer formats one timestamp per request on the event loop, and
interpreted this function cost about as much as serialising the rest of the record.
"""

from __future__ import annotations

import time
from typing import Final

# ".000Z" … ".999Z": a table lookup instead of formatting the milliseconds for every record.
_MILLIS: Final = tuple(f".{m:03d}Z" for m in range(1000))


class _Cache:
    """The last second formatted, and the last millisecond.

    Records come in bursts, so strftime/gmtime (most of the cost) run about once per second and
    the string is reused within a millisecond. Each entry is one tuple, replaced whole, so a
    reader on another thread never sees a torn entry. Attributes of one object rather than
    module globals: compiled, reading them is a field access instead of a dictionary lookup.
    """

    __slots__ = ("milli", "second")

    def __init__(self) -> None:
        self.second: tuple[int, str] = (-1, "")
        self.milli: tuple[int, int, str] = (-1, -1, "")


_cache: Final = _Cache()


def iso_utc(seconds: float) -> str:
    """Unix seconds as ISO-8601 UTC with milliseconds (``2026-11-28T15:33:28.148Z``).

    Millisecond precision is what charts need; the exact float stays in the record's ``time``.
    "Z" rather than "+00:00" because it is what most log tools and JavaScript's Date expect.
    Built without a datetime object: the analytics writer calls this for every request's record.
    """
    # int() truncates towards zero; step down for a negative fraction. (Compiled, `seconds // 1`
    # is a call doing what Python's float floor division does: ~340 instructions per record.)
    whole = int(seconds)
    if whole > seconds:
        whole -= 1
    # A fraction a hair below 1 can round up to 1000 ms; say .999 rather than .1000.
    millis = int((seconds - whole) * 1000)
    if millis > 999:
        millis = 999
    cache = _cache
    last = cache.milli
    if last[1] == millis and last[0] == whole:
        return last[2]
    second = cache.second
    if second[0] != whole:
        second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
        cache.second = second
    text = second[1] + _MILLIS[millis]
    cache.milli = (whole, millis, text)
    return text
