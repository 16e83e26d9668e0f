"""Analytics records in the control-plane database: ingest from gateways, queries, retention.

:class:`SqlAnalyticsSink` implements ``config_sync.AnalyticsSink``: each record (the JSON form of
``domain.analytics.AnalyticsRecord``) is validated on its own and the valid ones are bulk-inserted
into ``analytics_records``; a malformed record is refused without failing its batch, and the
count of refused records is logged (and returned by :meth:`SqlAnalyticsSink.ingest_counted`).

Queries select the matching rows' (time, status, latency) and aggregate them in Python, so that
buckets and percentiles are computed by the same code on SQLite and PostgreSQL and agree exactly.
That is bounded: a query matching more than :data:`MAX_QUERY_ROWS` records is refused
(:class:`TooManyRecords`) and the caller narrows the range or filters. Breakdowns (``top``) are
plain ``GROUP BY`` counts and are not bounded.

Percentiles interpolate linearly between the closest ranks, as PostgreSQL's ``percentile_cont``
does: for sorted values ``v`` and fraction ``p``, rank ``r = p * (n - 1)`` and the result is
``v[floor(r)] + (v[ceil(r)] - v[floor(r)]) * (r - floor(r))``.

Retention: :meth:`SqlAnalyticsSink.prune` deletes records older than a cut-off; nothing calls it on
a schedule yet (an operator or a future periodic task does).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import case, delete, func, insert, select
from sqlalchemy.sql.elements import ColumnElement

from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import AnalyticsRow

log = logging.getLogger(__name__)

MAX_QUERY_ROWS = 200_000
"""Most records one time-series or percentile query may aggregate."""

TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
"""Text without control characters (PostgreSQL refuses NUL in text; one such record would
otherwise fail its whole batch)."""

Breakdown = Literal["api", "client", "developer", "status"]
BREAKDOWN_COLUMNS = {
    "api": AnalyticsRow.api_id,
    "client": AnalyticsRow.client_id,
    "developer": AnalyticsRow.developer_id,
    "status": AnalyticsRow.status,
}


class TooManyRecords(Exception):
    """A query would aggregate more than :data:`MAX_QUERY_ROWS` records."""


class _Record(BaseModel):
    """One shipped record; extra fields (``timestamp``, newer gateways' additions) are ignored."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True, strict=False)

    time: float = Field(ge=0, allow_inf_nan=False)
    api_id: str | None = Field(default=None, max_length=128)
    method: str = Field(min_length=1, max_length=16)
    path: str = Field(max_length=8192)
    status: int = Field(ge=100, le=599)
    upstream_latency_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    total_latency_ms: float = Field(ge=0, allow_inf_nan=False)
    identity: str | None = Field(default=None, max_length=255)
    client_id: str | None = Field(default=None, max_length=255)
    developer_id: str | None = Field(default=None, max_length=64)
    policy: str | None = Field(default=None, max_length=512)
    bytes_in: int = Field(default=0, ge=0, le=2**62)
    bytes_out: int = Field(default=0, ge=0, le=2**62)
    error: str | None = Field(default=None, max_length=64)

    @field_validator("api_id", "method", "path", "identity", "client_id", "developer_id", "policy",
                     "error")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
            raise ValueError("must not contain control characters")
        return value

    @field_validator("status", "bytes_in", "bytes_out", mode="before")
    @classmethod
    def _no_bool(cls, value: Any) -> Any:
        # bool is an int in Python; a record saying "status": true is malformed, not 1.
        if isinstance(value, bool):
            raise ValueError("must be an integer")
        return value


@dataclass(frozen=True, slots=True)
class IngestReport:
    """How many records of a batch were stored and how many were refused as malformed."""

    accepted: int
    refused: int


@dataclass(frozen=True, slots=True)
class Filters:
    """Which records a query covers: ``start <= time < end`` plus optional equality filters."""

    start: float
    end: float
    api_id: str | None = None
    client_id: str | None = None
    developer_id: str | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        """The SQL conditions selecting these records."""
        clauses = [AnalyticsRow.time >= self.start, AnalyticsRow.time < self.end]
        if self.api_id is not None:
            clauses.append(AnalyticsRow.api_id == self.api_id)
        if self.client_id is not None:
            clauses.append(AnalyticsRow.client_id == self.client_id)
        if self.developer_id is not None:
            clauses.append(AnalyticsRow.developer_id == self.developer_id)
        return clauses


@dataclass(frozen=True, slots=True)
class Bucket:
    """Aggregates of the records in ``[start, start + interval)``."""

    start: float
    requests: int
    errors: int
    status_2xx: int
    status_3xx: int
    status_4xx: int
    status_5xx: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency percentiles (total and upstream) over a set of records."""

    requests: int
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    upstream_p50_ms: float | None
    upstream_p95_ms: float | None
    upstream_p99_ms: float | None


@dataclass(frozen=True, slots=True)
class TopItem:
    """One group of a breakdown."""

    key: str | None
    requests: int
    errors: int
    mean_latency_ms: float


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` percentile of ascending ``sorted_values`` (linear interpolation between
    closest ranks, as ``percentile_cont``); ``None`` for no values."""
    if not sorted_values:
        return None
    rank = fraction * (len(sorted_values) - 1)
    low = math.floor(rank)
    high = math.ceil(rank)
    lower = sorted_values[low]
    return lower + (sorted_values[high] - lower) * (rank - low)


class SqlAnalyticsSink:
    """Stores and queries analytics records in the dashboard's database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def ingest(self, node_id: str, records: list[dict[str, Any]]) -> None:
        """Store the valid ``records`` from ``node_id`` (``config_sync.AnalyticsSink``)."""
        await self.ingest_counted(node_id, records)

    async def ingest_counted(self, node_id: str, records: list[dict[str, Any]]) -> IngestReport:
        """Store the valid ``records``; report how many were stored and refused."""
        rows: list[dict[str, Any]] = []
        first_problem = ""
        for record in records:
            try:
                parsed = _Record.model_validate(record)
            except ValidationError as exc:
                if not first_problem:
                    err = exc.errors()[0]
                    first_problem = f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                continue
            rows.append({"node_id": node_id, **parsed.model_dump()})
        refused = len(records) - len(rows)
        if refused:
            # The record itself is not logged: paths and identities are the caller's data.
            log.warning("refused %d of %d analytics records from %s (first problem: %s)",
                        refused, len(records), node_id, first_problem)
        if rows:
            async with self.database.transaction() as session:
                await session.execute(insert(AnalyticsRow), rows)
        return IngestReport(accepted=len(rows), refused=refused)

    async def prune(self, older_than: float) -> int:
        """Delete records that arrived before Unix time ``older_than``; returns how many."""
        async with self.database.transaction() as session:
            result = await session.execute(delete(AnalyticsRow).where(AnalyticsRow.time < older_than))
        return int(getattr(result, "rowcount", 0) or 0)

    async def _samples(self, filters: Filters, *columns: Any) -> list[Any]:
        statement = select(*columns).where(*filters.clauses()).limit(MAX_QUERY_ROWS + 1)
        async with self.database.sessions() as session:
            rows = list((await session.execute(statement)).all())
        if len(rows) > MAX_QUERY_ROWS:
            raise TooManyRecords(f"more than {MAX_QUERY_ROWS} records match")
        return rows

    async def timeseries(self, filters: Filters, interval: float) -> list[Bucket]:
        """Buckets of ``interval`` seconds from ``filters.start`` to ``filters.end`` (the last one
        may be shorter), empty ones included."""
        count = max(1, math.ceil((filters.end - filters.start) / interval))
        latencies: list[list[float]] = [[] for _ in range(count)]
        classes = [[0, 0, 0, 0, 0] for _ in range(count)]  # 2xx, 3xx, 4xx, 5xx, errors
        rows = await self._samples(filters, AnalyticsRow.time, AnalyticsRow.status,
                                   AnalyticsRow.total_latency_ms)
        for when, status, latency in rows:
            index = min(int((when - filters.start) // interval), count - 1)
            latencies[index].append(latency)
            counts = classes[index]
            if 200 <= status < 600:
                counts[status // 100 - 2] += 1
            if status >= 400:
                counts[4] += 1
        buckets = []
        for index in range(count):
            values = sorted(latencies[index])
            c2, c3, c4, c5, errors = classes[index]
            buckets.append(Bucket(
                start=filters.start + index * interval, requests=len(values), errors=errors,
                status_2xx=c2, status_3xx=c3, status_4xx=c4, status_5xx=c5,
                p50_ms=percentile(values, 0.50), p95_ms=percentile(values, 0.95),
                p99_ms=percentile(values, 0.99),
            ))
        return buckets

    async def latency(self, filters: Filters) -> LatencySummary:
        """Latency percentiles over the records ``filters`` select."""
        rows = await self._samples(filters, AnalyticsRow.total_latency_ms,
                                   AnalyticsRow.upstream_latency_ms)
        total = sorted(row[0] for row in rows)
        upstream = sorted(row[1] for row in rows if row[1] is not None)
        return LatencySummary(
            requests=len(total),
            p50_ms=percentile(total, 0.50), p90_ms=percentile(total, 0.90),
            p95_ms=percentile(total, 0.95), p99_ms=percentile(total, 0.99),
            max_ms=total[-1] if total else None,
            upstream_p50_ms=percentile(upstream, 0.50), upstream_p95_ms=percentile(upstream, 0.95),
            upstream_p99_ms=percentile(upstream, 0.99),
        )

    async def top(self, filters: Filters, by: Breakdown, limit: int) -> list[TopItem]:
        """The ``limit`` largest groups of records by ``by``, most requests first (ties by key)."""
        column = BREAKDOWN_COLUMNS[by]
        requests = func.count().label("requests")
        statement = (
            select(
                column,
                requests,
                func.coalesce(func.sum(case((AnalyticsRow.status >= 400, 1), else_=0)), 0),
                func.avg(AnalyticsRow.total_latency_ms),
            )
            .where(*filters.clauses())
            .group_by(column)
            .order_by(requests.desc(), column.asc().nulls_first())
            .limit(limit)
        )
        async with self.database.sessions() as session:
            rows = (await session.execute(statement)).all()
            return [
                TopItem(key=None if key is None else str(key), requests=int(count),
                        errors=int(errors), mean_latency_ms=float(mean))
                for key, count, errors, mean in rows
            ]
