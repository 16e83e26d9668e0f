"""Analytics time values: ISO-8601 UTC timestamps formatted once per second, and the microsecond
precision records are written with.

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


def split_micros(seconds: float) -> tuple[int, int]:
    """``(whole, micros)``: ``seconds`` rounded to the microsecond, split at the second.

    ``micros`` is 0–999,999 and ``whole`` the second at or before the moment, negative ones
    included. What analytics records keep of a time: written as ``whole.micros`` from integers,
    not by formatting the float (see analytics/jsonl.py).
    """
    # int() truncates towards zero; step down for a negative fraction. (Compiled, `seconds // 1`
    # is a call doing what Python's float floor division does: ~340 instructions per record.)
    whole = int(seconds)
    if whole > seconds:
        whole -= 1
    # seconds - whole is exact; the rounding may carry into the next second.
    micros = int((seconds - whole) * 1_000_000 + 0.5)
    if micros >= 1_000_000:
        return whole + 1, micros - 1_000_000
    return whole, micros


def micro_seconds(seconds: float) -> float:
    """``seconds`` rounded to the microsecond, exactly as the JSON-lines writer writes it."""
    whole, micros = split_micros(seconds)
    # Integer division is correctly rounded: the float nearest to the decimal written.
    return (whole * 1_000_000 + micros) / 1_000_000


def latency_micros(milliseconds: float) -> int:
    """A latency in milliseconds as whole microseconds, rounded; -1 outside ``[0, 1e12)``.

    Negative, NaN and infinite latencies are not rounded: callers keep (and JSON writes) them as
    they are, NaN and infinities as null.
    """
    if 0.0 <= milliseconds < 1e12:
        return int(milliseconds * 1000.0 + 0.5)
    return -1


def micro_milliseconds(milliseconds: float) -> float:
    """A latency in milliseconds rounded to the microsecond, as the JSON-lines writer writes it
    (:func:`latency_micros`; values it does not round are returned as they are)."""
    micros = latency_micros(milliseconds)
    return micros / 1000 if micros >= 0 else milliseconds


def utc_second(whole: int) -> str:
    """The Unix second ``whole`` as ISO-8601 UTC without a fraction (``2026-11-28T15:33:28``).

    Formatted once per second (strftime and gmtime are most of the cost of a timestamp) and
    shared by :func:`iso_utc` and the JSON-lines writer.
    """
    second = _cache.second
    if second[0] != whole:
        second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
        _cache.second = second
    return second[1]


def iso_utc(seconds: float) -> str:
    """Unix seconds as ISO-8601 UTC with milliseconds (``2026-11-28T15:33:28.148Z``).

    The time rounded to the microsecond (:func:`split_micros`), then cut to the millisecond:
    millisecond precision is what charts need; the record's ``time`` keeps the microseconds.
    "Z" rather than "+00:00" because it is what most log tools and JavaScript's Date expect.
    Built without a datetime object: the analytics writer calls this for every request's record.
    """
    whole, micros = split_micros(seconds)
    millis = micros // 1000
    cache = _cache
    last = cache.milli
    if last[1] == millis and last[0] == whole:
        return last[2]
    text = utc_second(whole) + _MILLIS[millis]
    cache.milli = (whole, millis, text)
    return text
