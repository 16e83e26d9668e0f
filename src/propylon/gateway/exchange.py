"""One request/response exchange as the chain's steps see it.

An :class:`Exchange` is created by the HTTP front end when a request head is complete. The chain's
steps read the request fields and fill in who the caller is and which policy applies; the proxy
code adds the upstream side. It is a plain slotted class rather than a dataclass because one is
allocated per request on the hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from propylon.gateway.chain import CompiledApi
    from propylon.policy.combine import EffectivePolicy


class Exchange:
    """Request fields (set by the front end) and authentication results (set by the steps)."""

    __slots__ = (
        "api",
        "authorization",
        "body_bytes",
        "bytes_out",
        "claims",
        "client_id",
        "client_ip",
        "developer_id",
        "error",
        "headers",
        "host",
        "identity",
        "keep_alive",
        "method",
        "path",
        "policy",
        "query",
        "rel_path",
        "response_headers",
        "started",
        "status",
        "upstream_latency",
        "upstream_started",
        "version",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        *,
        version: str,
        keep_alive: bool,
        client_ip: str,
        host: bytes,
        authorization: bytes,
        started: float,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.version = version
        self.keep_alive = keep_alive
        self.client_ip = client_ip
        self.host = host
        self.authorization = authorization
        self.started = started
        self.api: CompiledApi | None = None
        self.rel_path = path
        self.claims: dict[str, Any] | None = None
        self.identity: str | None = None
        self.client_id: str | None = None
        self.developer_id: str | None = None
        self.policy: EffectivePolicy | None = None
        # Complete header lines (b"name: value\r\n") the gateway adds to the upstream's response.
        self.response_headers: list[bytes] = []
        self.status = 0
        self.error: str | None = None
        self.body_bytes = 0
        self.bytes_out = 0
        self.upstream_started = 0.0
        self.upstream_latency: float | None = None
