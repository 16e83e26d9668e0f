"""The analytics record: one per request the gateway answers. Pure data, no I/O.

The gateway builds one of these on its hot path for every request (proxied or refused), hands it
to the analytics buffer, and the dashboard later charts them. The record is flat and made of
plain values so that it is cheap to build and trivially serialisable by any backend.
"""

from __future__ import annotations

from typing import NamedTuple

from propylon.domain.timestamps import iso_utc


# A named tuple rather than a dataclass: immutable, and the gateway builds one per request with
# tuple.__new__ (no Python-level __init__), while writers unpack it positionally. orjson refuses it
# (a tuple subclass): writers serialise its fields (analytics/jsonl.py, to_json_dict).
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
        """Return a JSON-ready dict: an ISO-8601 UTC ``timestamp`` plus every field."""
        return {"timestamp": iso_utc(self.time), **self._asdict()}
