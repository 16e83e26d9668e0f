"""The analytics record: one per request the gateway answers. Pure data, no I/O.

The gateway builds one of these on its hot path for every request (proxied or refused), hands it
to the analytics buffer, and the dashboard later charts them. The record is flat and made of
plain values so that it is cheap to build and trivially serialisable by any backend.
"""

from __future__ import annotations

from typing import NamedTuple

from propylon.domain.timestamps import iso_utc, micro_milliseconds, micro_seconds


# A named tuple rather than a dataclass: immutable, and writers unpack it positionally. The
# gateway does not even build this class: it hands the buffer the same fields as a plain tuple
# (RecordFields below), and writers accept either. orjson refuses both (a tuple is a JSON array):
# writers serialise the fields (analytics/jsonl.py, to_json_dict).
class AnalyticsRecord(NamedTuple):
    """What happened to one request."""

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
        """Return a JSON-ready dict: an ISO-8601 UTC ``timestamp`` plus every field.

        ``time`` and the latencies are rounded to the microsecond, as the JSON-lines writer
        writes them: sub-microsecond digits of a float clock are noise, and formatting them was
        a third of the cost of writing a record.
        """
        upstream = self.upstream_latency_ms
        return {
            "timestamp": iso_utc(self.time),
            **self._asdict(),
            "time": micro_seconds(self.time),
            "upstream_latency_ms": None if upstream is None else micro_milliseconds(upstream),
            "total_latency_ms": micro_milliseconds(self.total_latency_ms),
        }


RecordFields = tuple[
    float, str | None, str, str, int, float | None, float, str | None, str | None, str | None,
    str | None, int, int, str | None,
]
"""An :class:`AnalyticsRecord`'s fields as a plain tuple, in the same order.

What the gateway hands the analytics buffer for every request: a tuple display is one allocation,
while building the named tuple is a call of ``tuple.__new__`` that copies a tuple (about 1,500
instructions, compiled). Writers and the buffer take this type, of which every
``AnalyticsRecord`` is one; ``AnalyticsRecord._make(fields)`` gives the named view.
"""
