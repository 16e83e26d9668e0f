"""Analytics queries of the admin API (``/api/v1/analytics``): time series, breakdowns, latency.

Every query covers ``from <= time < to``. ``from`` and ``to`` are Unix seconds or ISO-8601
date-times (``2026-11-28T15:00:00Z``); ``to`` defaults to now and ``from`` to one hour before ``to``.
Query parameters are read as text and checked together, so that a bad request is answered with a
422 listing every problem (``from`` after ``to``, an interval under 1 s, an unknown ``by``...).
The aggregation itself is in ``analytics_store.py``; a query matching too many records is a 422
asking for a narrower range.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from propylon.dashboard.admin_auth import AdminActor
from propylon.dashboard.analytics_store import (
    BREAKDOWN_COLUMNS,
    MAX_QUERY_ROWS,
    TEXT_PATTERN,
    Breakdown,
    Filters,
    SqlAnalyticsSink,
    TooManyRecords,
)
from propylon.dashboard.context import DashboardContext, get_context
from propylon.dashboard.errors import Problem, invalid

MAX_BUCKETS = 10_000
"""Most buckets one time series may have (range / interval)."""
DEFAULT_RANGE_SECONDS = 3600.0
MAX_TOP = 100

Context = Annotated[DashboardContext, Depends(get_context)]
FromParam = Annotated[str | None, Query(alias="from", description="Start (inclusive): Unix seconds "
                                        "or ISO-8601 date-time. Default: one hour before `to`.")]
ToParam = Annotated[str | None, Query(alias="to", description="End (exclusive): Unix seconds or "
                                      "ISO-8601 date-time. Default: now.")]
ApiParam = Annotated[str | None, Query(description="Only records of this API.", max_length=128,
                                       pattern=TEXT_PATTERN)]
ClientParam = Annotated[str | None, Query(description="Only records of this OAuth client id.",
                                          max_length=255, pattern=TEXT_PATTERN)]
DeveloperParam = Annotated[str | None, Query(description="Only records of this developer.",
                                             max_length=64, pattern=TEXT_PATTERN)]


class BucketView(BaseModel):
    """One time-series bucket: ``[start, start + interval)``."""

    start: float = Field(description="Unix seconds.")
    requests: int
    errors: int = Field(description="Responses with status >= 400.")
    status_2xx: int
    status_3xx: int
    status_4xx: int
    status_5xx: int
    p50_ms: float | None = Field(description="Median total latency; null for an empty bucket.")
    p95_ms: float | None
    p99_ms: float | None


class TimeSeries(BaseModel):
    """Requests over time."""

    start: float = Field(alias="from")
    end: float = Field(alias="to")
    interval: float
    buckets: list[BucketView]


class TopItemView(BaseModel):
    """One group of a breakdown."""

    key: str | None = Field(description="API id, client id, developer id or status code; null "
                            "for records without one (e.g. no API matched).")
    requests: int
    errors: int
    mean_latency_ms: float


class TopList(BaseModel):
    """Records grouped by API, client, developer or status, most requests first."""

    by: Breakdown
    start: float = Field(alias="from")
    end: float = Field(alias="to")
    items: list[TopItemView]


class LatencyView(BaseModel):
    """Latency percentiles in milliseconds (null when no record matched)."""

    start: float = Field(alias="from")
    end: float = Field(alias="to")
    requests: int
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    upstream_p50_ms: float | None
    upstream_p95_ms: float | None
    upstream_p99_ms: float | None


def parse_time(raw: str) -> float | None:
    """Unix seconds from ``raw`` (a number or an ISO-8601 date-time with a zone, or UTC), or
    ``None`` when it is neither."""
    if not raw.isprintable():
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(raw.strip())
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        value = parsed.timestamp()
    if not math.isfinite(value) or not 0 <= value < 253402300800:  # year 10000
        return None
    return value


def _filters(raw_from: str | None, raw_to: str | None, api_id: str | None, client_id: str | None,
             developer_id: str | None, problems: list[Problem]) -> Filters:
    end = time.time() if raw_to is None else parse_time(raw_to)
    if end is None:
        problems.append(Problem("to", "must be Unix seconds or an ISO-8601 date-time"))
    start = (end or time.time()) - DEFAULT_RANGE_SECONDS if raw_from is None else parse_time(raw_from)
    if start is None:
        problems.append(Problem("from", "must be Unix seconds or an ISO-8601 date-time"))
    if start is not None and end is not None and start >= end:
        problems.append(Problem("from", "must be before `to`"))
    return Filters(start or 0.0, end or 0.0, api_id, client_id, developer_id)


def _too_many(exc: TooManyRecords) -> Exception:
    return invalid([Problem("from", f"{exc}: narrow the time range or add a filter (at most "
                            f"{MAX_QUERY_ROWS} records per query)")], "the query covers too many records")


def analytics_router() -> APIRouter:
    """The ``/api/v1/analytics`` routes."""
    router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])

    @router.get("/timeseries", summary="Requests, errors, status classes and latency over time")
    async def timeseries(
        _actor: AdminActor, context: Context, raw_from: FromParam = None, raw_to: ToParam = None,
        interval: Annotated[str | None, Query(description="Bucket width in seconds (>= 1, "
                                              "default 60).")] = None,
        api_id: ApiParam = None, client_id: ClientParam = None, developer_id: DeveloperParam = None,
    ) -> TimeSeries:
        problems: list[Problem] = []
        filters = _filters(raw_from, raw_to, api_id, client_id, developer_id, problems)
        width = 60.0
        if interval is not None:
            try:
                width = float(interval)
            except ValueError:
                width = math.nan
            if not math.isfinite(width) or width < 1:
                problems.append(Problem("interval", "must be a number of seconds >= 1"))
        if not problems and (filters.end - filters.start) / width > MAX_BUCKETS:
            problems.append(Problem("interval", f"gives more than {MAX_BUCKETS} buckets over this "
                                    "range: use a wider interval or a shorter range"))
        if problems:
            raise invalid(problems)
        try:
            buckets = await SqlAnalyticsSink(context.database).timeseries(filters, width)
        except TooManyRecords as exc:
            raise _too_many(exc) from exc
        return TimeSeries.model_validate({
            "from": filters.start, "to": filters.end, "interval": width,
            "buckets": [BucketView.model_validate(b, from_attributes=True) for b in buckets],
        })

    @router.get("/top", summary="Requests grouped by API, client, developer or status")
    async def top(
        _actor: AdminActor, context: Context,
        by: Annotated[str | None, Query(description="api, client, developer or status.")] = None,
        raw_from: FromParam = None, raw_to: ToParam = None,
        limit: Annotated[str | None, Query(description=f"Groups to return (1-{MAX_TOP}, "
                                           "default 10).")] = None,
        api_id: ApiParam = None, client_id: ClientParam = None, developer_id: DeveloperParam = None,
    ) -> TopList:
        problems: list[Problem] = []
        if by not in BREAKDOWN_COLUMNS:
            problems.append(Problem("by", f"must be one of {', '.join(BREAKDOWN_COLUMNS)}"))
        filters = _filters(raw_from, raw_to, api_id, client_id, developer_id, problems)
        count = 10
        if limit is not None:
            count = int(limit) if limit.isdigit() and len(limit) < 6 else 0
            if not 1 <= count <= MAX_TOP:
                problems.append(Problem("limit", f"must be an integer from 1 to {MAX_TOP}"))
        if problems:
            raise invalid(problems)
        breakdown = cast(Breakdown, by)
        items = await SqlAnalyticsSink(context.database).top(filters, breakdown, count)
        return TopList.model_validate({
            "by": breakdown, "from": filters.start, "to": filters.end,
            "items": [TopItemView.model_validate(i, from_attributes=True) for i in items],
        })

    @router.get("/latency", summary="Latency percentiles (total and upstream)")
    async def latency(
        _actor: AdminActor, context: Context, raw_from: FromParam = None, raw_to: ToParam = None,
        api_id: ApiParam = None, client_id: ClientParam = None, developer_id: DeveloperParam = None,
    ) -> LatencyView:
        problems: list[Problem] = []
        filters = _filters(raw_from, raw_to, api_id, client_id, developer_id, problems)
        if problems:
            raise invalid(problems)
        try:
            summary = await SqlAnalyticsSink(context.database).latency(filters)
        except TooManyRecords as exc:
            raise _too_many(exc) from exc
        data: dict[str, Any] = {"from": filters.start, "to": filters.end}
        data.update({name: getattr(summary, name) for name in LatencyView.model_fields
                     if name not in ("start", "end")})
        return LatencyView.model_validate(data)

    return router
