"""Builds analytics records for the tests."""

from __future__ import annotations

from propylon.domain.analytics import AnalyticsRecord


def make_record(index: int = 0, **overrides: object) -> AnalyticsRecord:
    """A plausible record whose ``path`` carries ``index`` so order can be checked."""
    fields: dict[str, object] = {
        "time": 1_700_000_000.0 + index,
        "api_id": "orders",
        "method": "GET",
        "path": f"/orders/items/{index}",
        "status": 200,
        "upstream_latency_ms": 1.5,
        "total_latency_ms": 2.25,
        "identity": "abc123",
        "client_id": "abc123",
        "developer_id": "dev-1",
        "policy": "bronze,gold",
        "bytes_in": 0,
        "bytes_out": 512,
        "error": None,
    }
    fields.update(overrides)
    return AnalyticsRecord(**fields)  # type: ignore[arg-type]
