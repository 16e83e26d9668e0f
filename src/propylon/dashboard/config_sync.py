"""The endpoints gateways use to talk to the dashboard: config snapshot, heartbeat, analytics.

``GET /system/config`` serves the current configuration as one signed JSON document
``{"version": N, "config": {...}}``. The body is serialised once per version and signed over its
exact bytes (header :data:`~propylon.domain.config_signing.SIGNATURE_HEADER`); ``ETag`` is
``"N"``. With ``?after=N&wait=S`` it is a long poll: a newer version is answered at once, otherwise
the request waits up to ``S`` seconds (at most 30) for :class:`ConfigNotifier` to announce one and
answers ``304`` if nothing changed. ``POST /system/heartbeat`` records a gateway's
:class:`NodeReport`; ``POST /system/analytics`` hands a batch of analytics records to an
:class:`AnalyticsSink`.

Every endpoint needs ``Authorization: Bearer <node secret>``. Errors are JSON
``{"error": code, "message": text}``, produced here rather than by the application's exception
handlers so the contract does not depend on how the app is assembled. The database sits behind
:class:`SnapshotSource` and the sinks, which other modules implement.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from propylon.dashboard.nodes import NodeRegistry, NodeReport
from propylon.dashboard.notify import ConfigNotifier
from propylon.domain.config_signing import MIN_SECRET_LENGTH, SIGNATURE_HEADER, sign_snapshot

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 30.0
"""Longest long poll; proxies commonly cut idle requests at 60 s."""
MAX_HEARTBEAT_BYTES = 64 * 1024
MAX_ANALYTICS_BYTES = 8 * 1024 * 1024
MAX_ANALYTICS_RECORDS = 20_000
NODE_HEADER = "X-Propylon-Node-Id"
"""Request header naming the gateway that posts an analytics batch."""

_NODE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


@dataclass(frozen=True)
class ConfigSnapshot:
    """One published configuration: its version and the GatewayConfig-shaped data."""

    version: int
    config: dict[str, Any]


class SnapshotSource(Protocol):
    """Builds the current snapshot (from the database, in the dashboard)."""

    async def snapshot(self) -> ConfigSnapshot:
        """The configuration currently in force and its version."""
        ...


class AnalyticsSink(Protocol):
    """Stores analytics records shipped by gateways."""

    async def ingest(self, node_id: str, records: list[dict[str, Any]]) -> None:
        """Store ``records`` (the gateway's JSON record form) received from ``node_id``."""
        ...


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _Heartbeat(BaseModel):
    # Unknown fields are ignored so that a newer gateway can report more to an older dashboard.
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    node_id: str = Field(pattern=_NODE_ID_PATTERN)
    hostname: str = Field(min_length=1, max_length=255)
    pid: int = Field(ge=0)
    address: str = Field(default="", max_length=300)
    config_version: int | None = Field(default=None, ge=0)
    started_at: float = Field(ge=0)
    status: Literal["ok", "degraded", "starting", "stopping"]
    details: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class _Published:
    version: int
    body: bytes
    signature: str


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def _bounded_float(raw: str | None, name: str, low: float, high: float) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _Refused(400, "invalid_parameter", f"{name} must be a number") from None
    if not low <= value <= high:  # also refuses NaN
        raise _Refused(400, "invalid_parameter", f"{name} must be between {low:g} and {high:g}")
    return value


def _version_param(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise _Refused(400, "invalid_parameter", "after must be a non-negative integer version")
    return int(raw)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _Refused(400, "invalid_request", "Content-Length is not a number")
        if int(declared) > limit:
            raise _Refused(413, "too_large", f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(413, "too_large", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _Refused(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc


def sync_router(
    *,
    source: SnapshotSource,
    notifier: ConfigNotifier,
    nodes: NodeRegistry,
    analytics: AnalyticsSink | None,
    node_secret: str,
) -> APIRouter:
    """The ``/system/*`` endpoints gateways call, bound to their collaborators.

    ``analytics=None`` leaves ``POST /system/analytics`` out (gateways then get 404 and drop
    their batches). Raises ``ValueError`` for a node secret shorter than
    :data:`~propylon.domain.config_signing.MIN_SECRET_LENGTH`.
    """
    if len(node_secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"the node secret must be at least {MIN_SECRET_LENGTH} characters")
    expected = f"Bearer {node_secret}".encode()
    router = APIRouter(prefix="/system", tags=["gateway sync"])
    cache: list[_Published] = []

    def authorised(request: Request) -> bool:
        given = request.headers.get("authorization", "").encode("utf-8", "replace")
        return hmac.compare_digest(given, expected)

    def unauthorised() -> Response:
        return _error(
            401, "unauthorized", "a valid node secret is required (Authorization: Bearer ...)",
            {"WWW-Authenticate": 'Bearer realm="propylon-gateways"'},
        )

    async def current() -> _Published:
        try:
            snap = await source.snapshot()
        except Exception as exc:
            logger.exception("could not build the configuration snapshot")
            raise _Refused(503, "unavailable", "the configuration is unavailable; retry") from exc
        if cache and cache[0].version == snap.version:
            return cache[0]
        # The inner version is forced to the outer one: a gateway refuses a snapshot where the
        # two disagree, and the source should not have to remember that rule.
        document = {"version": snap.version, "config": {**snap.config, "version": str(snap.version)}}
        body = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        published = _Published(snap.version, body, sign_snapshot(body, node_secret))
        cache[:] = [published]
        return published

    def not_modified(version: int) -> Response:
        return Response(status_code=304, headers={"ETag": f'"{version}"', "Cache-Control": "no-store"})

    @router.get("/config", summary="Signed configuration snapshot (long poll with after/wait)")
    async def get_config(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        try:
            after = _version_param(request.query_params.get("after"))
            wait = _bounded_float(request.query_params.get("wait"), "wait", 0.0, MAX_WAIT_SECONDS)
            published = await current()
            if after is not None and published.version <= after:
                if wait and await notifier.wait_for_change(after, wait) is not None:
                    published = await current()
                if published.version <= after:
                    return not_modified(published.version)
        except _Refused as refused:
            return _error(refused.status, refused.code, refused.message)
        return Response(
            published.body,
            media_type="application/json",
            headers={
                "ETag": f'"{published.version}"',
                SIGNATURE_HEADER: published.signature,
                "Cache-Control": "no-store",
            },
        )

    @router.post("/heartbeat", status_code=204, summary="A gateway reports its state")
    async def heartbeat(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        try:
            data = _decode_json(await _read_body(request, MAX_HEARTBEAT_BYTES))
            report = _Heartbeat.model_validate(data)
        except _Refused as refused:
            return _error(refused.status, refused.code, refused.message)
        except ValidationError as exc:
            return _error(422, "invalid_heartbeat", _describe(exc))
        await nodes.report(
            NodeReport(
                node_id=report.node_id, hostname=report.hostname, pid=report.pid,
                address=report.address, config_version=report.config_version,
                started_at=report.started_at, last_seen=time.time(), status=report.status,
                details=report.details,
            )
        )
        return Response(status_code=204)

    if analytics is not None:
        sink = analytics

        @router.post("/analytics", status_code=202, summary="A gateway ships analytics records")
        async def ship_analytics(request: Request) -> Response:
            if not authorised(request):
                return unauthorised()
            try:
                node_id = request.headers.get(NODE_HEADER, "")
                if not _valid_node_id(node_id):
                    raise _Refused(400, "invalid_request", f"the {NODE_HEADER} header is required")
                records = _decode_json(await _read_body(request, MAX_ANALYTICS_BYTES))
                if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                    raise _Refused(422, "invalid_records", "the body must be a JSON list of objects")
                if len(records) > MAX_ANALYTICS_RECORDS:
                    raise _Refused(
                        413, "too_large", f"at most {MAX_ANALYTICS_RECORDS} records per request"
                    )
            except _Refused as refused:
                return _error(refused.status, refused.code, refused.message)
            try:
                await sink.ingest(node_id, records)
            except Exception:
                # 503 rather than 500: the gateway keeps the batch and sends it again later.
                logger.exception("could not store %d analytics records from %s", len(records), node_id)
                return _error(503, "unavailable", "analytics storage is unavailable; retry later")
            return Response(status_code=202)

    return router


def _valid_node_id(value: str) -> bool:
    return re.fullmatch(_NODE_ID_PATTERN, value) is not None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)

