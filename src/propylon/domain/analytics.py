"""The analytics record: one per request the gateway answers. Pure data, no I/O.

The gateway builds one of these on its hot path for every request (proxied or refused), hands it
to the analytics buffer, and the dashboard later charts them. The record is flat and made of
plain values so that it is cheap to build and trivially serialisable by any backend.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


# Not frozen: a frozen dataclass's __init__ costs ~10x more (object.__setattr__ per field), and one
# record is built for every request on the gateway's hot path. Treat records as immutable.
@dataclass(slots=True)
class AnalyticsRecord:
    """What happened to one request (treat as immutable once built)."""

    time: float
    """When the request arrived, in Unix seconds."""
    api_id: str | None
    """The API it was routed to; ``None`` when no API matched (404)."""
    method: str
    """HTTP method, as received."""
    path: str
    """Normalised request path, without the query string."""
    status: int
    """HTTP status sent to the client."""
    upstream_latency_ms: float | None
    """Time the upstream took to answer; ``None`` when the request never reached it."""
    total_latency_ms: float
    """Time from the request's arrival to the end of the response."""
    identity: str | None
    """Whose limits applied (the identity claim, or the client address for keyless APIs)."""
    client_id: str | None
    """OAuth client id found in the token, if any."""
    developer_id: str | None
    """Developer owning the client, when the client is registered."""
    policy: str | None
    """Ids of the policies that applied, comma-joined."""
    bytes_in: int
    """Request body size in bytes."""
    bytes_out: int
    """Response body size in bytes."""
    error: str | None
    """Reason code when the gateway generated the response itself (e.g. ``rate_limited``)."""

    def to_json_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict: an ISO-8601 UTC ``timestamp`` plus every field."""
        return {
            "timestamp": iso_utc(self.time),
            "time": self.time,
            "api_id": self.api_id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "upstream_latency_ms": self.upstream_latency_ms,
            "total_latency_ms": self.total_latency_ms,
            "identity": self.identity,
            "client_id": self.client_id,
            "developer_id": self.developer_id,
            "policy": self.policy,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "error": self.error,
        }


# The last second formatted, and the last millisecond: records come in bursts, so strftime/gmtime
# (most of this function's cost) run about once per second and the string is reused within a
# millisecond. Each cache is one tuple, replaced whole, so a reader on another thread never sees a
# torn entry.
_last_second: tuple[int, str] = (-1, "")
_last_milli: tuple[int, int, str] = (-1, -1, "")
# ".000Z" … ".999Z": a table lookup instead of formatting the milliseconds for every record.
_MILLIS = tuple(f".{m:03d}Z" for m in range(1000))


def iso_utc(seconds: float) -> str:
    """Unix seconds as ISO-8601 UTC with milliseconds (``2026-11-28T15:33:28.148Z``).

    Millisecond precision is what charts need; the exact float stays in ``time``. "Z" rather than
    "+00:00" because it is what most log tools and JavaScript's Date expect. Built without a
    datetime object: the analytics writer calls this for every request's record.
    """
    global _last_second, _last_milli
    whole = int(seconds // 1)
    # A fraction a hair below 1 can round up to 1000 ms; say .999 rather than .1000.
    millis = int((seconds - whole) * 1000)
    if millis > 999:
        millis = 999
    last = _last_milli
    if last[1] == millis and last[0] == whole:
        return last[2]
    cached = _last_second
    if cached[0] != whole:
        cached = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
        _last_second = cached
    text = cached[1] + _MILLIS[millis]
    _last_milli = (whole, millis, text)
    return text
