# mypy: disallow-subclassing-any=False
"""Starlette requests made into what Authlib's server components read.

Authlib's integrations exist for Flask and Django; this is the Starlette one. The async side
(:func:`read_form`, :func:`read_json`, :func:`read_query`) reads and checks a request in full —
size cap (413), UTF-8, no NUL characters, no repeated parameters, a JSON object — and produces a
:class:`ParsedRequest`. Authlib's calls then run in a worker thread on that plain data, through
:class:`FormRequest` (``OAuth2Request``) and :class:`JsonBodyRequest` (``JsonRequest``).
Problems found here are :class:`RequestProblem` (rendered as OAuth-style JSON errors).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import orjson
from authlib.oauth2.rfc6749 import (  # type: ignore[import-untyped]
    InsecureTransportError,
    JsonPayload,
    JsonRequest,
    OAuth2Payload,
    OAuth2Request,
)
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request

MAX_PARAMETERS = 100


class RequestProblem(Exception):
    """A request this provider will not process; ``status`` 400 or 413, an OAuth ``error`` code."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


@dataclass
class ParsedRequest:
    """A request read in full and checked, ready for a worker thread."""

    method: str
    uri: str
    """The public URL of the request (the issuer's origin, the request's path and query)."""
    headers: Headers
    params: list[tuple[str, str]] = field(default_factory=list)
    """Form or query parameters, in order."""
    json: dict[str, Any] | None = None
    path_params: dict[str, str] = field(default_factory=dict)


def public_uri(issuer: str, request: Request) -> str:
    """The URL the client used, as the issuer names the server (a proxy in front may terminate
    TLS, so the request's own scheme and host are not the public ones)."""
    base = urlsplit(issuer)
    return urlunsplit((base.scheme, base.netloc, request.url.path, request.url.query, ""))


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it exceeds ``limit`` (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestProblem(413, "invalid_request", f"the request body is larger than {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise RequestProblem(413, "invalid_request",
                                     f"the request body is larger than {limit} bytes")
    except ClientDisconnect as exc:
        raise RequestProblem(400, "invalid_request", "the client went away") from exc
    return bytes(body)


def _parameters(text: str, what: str, *, unique: bool) -> list[tuple[str, str]]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                          max_num_fields=MAX_PARAMETERS, errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestProblem(400, "invalid_request", f"the {what} is not valid form encoding "
                             f"(UTF-8, at most {MAX_PARAMETERS} parameters)") from exc
    seen: set[str] = set()
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise RequestProblem(400, "invalid_request", f"the {what} contains a NUL character")
        if unique and name in seen:
            raise RequestProblem(400, "invalid_request", f"parameter {_safe(name)} is repeated")
        seen.add(name)
    return pairs


def _safe(name: str) -> str:
    cleaned = "".join(ch for ch in name if (ch.isascii() and ch.isalnum()) or ch in "_-.")
    return repr(cleaned[:40])


async def read_form(request: Request, issuer: str, limit: int, *, unique: bool = True) -> ParsedRequest:
    """A form POST (``application/x-www-form-urlencoded``) as a :class:`ParsedRequest`."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = await read_body(request, limit)
    if media != "application/x-www-form-urlencoded":
        raise RequestProblem(400, "invalid_request",
                             "the body must be application/x-www-form-urlencoded")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestProblem(400, "invalid_request", "the body is not UTF-8") from exc
    return ParsedRequest(request.method, public_uri(issuer, request), request.headers,
                         params=_parameters(text, "body", unique=unique))


def read_query(request: Request, issuer: str) -> ParsedRequest:
    """A GET's query parameters as a :class:`ParsedRequest` (repeats are Authlib's to refuse)."""
    return ParsedRequest(request.method, public_uri(issuer, request), request.headers,
                         params=_parameters(request.url.query, "query", unique=False))


async def read_json(request: Request, issuer: str, limit: int, *, body_expected: bool = True
                    ) -> ParsedRequest:
    """A JSON request (registration, RFC 7592 update) as a :class:`ParsedRequest`."""
    parsed = ParsedRequest(request.method, public_uri(issuer, request), request.headers,
                           path_params=dict(request.path_params))
    body = await read_body(request, limit)
    if not body_expected:
        return parsed
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise RequestProblem(400, "invalid_request", "the body must be application/json")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestProblem(400, "invalid_request", "the body is not valid JSON") from exc
    if not isinstance(document, dict):
        raise RequestProblem(400, "invalid_client_metadata", "the body must be a JSON object")
    if _has_nul(document):
        raise RequestProblem(400, "invalid_client_metadata", "the metadata contains a NUL character")
    parsed.json = document
    return parsed


def _has_nul(value: Any, depth: int = 0) -> bool:
    if depth > 32:
        return True
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k, depth + 1) or _has_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item, depth + 1) for item in value)
    return False


class _Payload(OAuth2Payload):
    def __init__(self, params: list[tuple[str, str]]) -> None:
        self._data: dict[str, str] = {}
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for name, value in params:
            self._data.setdefault(name, value)
            self._datalist[name].append(value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class FormRequest(OAuth2Request):
    """Authlib's ``OAuth2Request`` over a :class:`ParsedRequest`.

    Authlib refuses plain http off loopback (``insecure_transport``); with ``allow_insecure``
    (development mode, where settings allow such an issuer) the check is passed with the https
    form of the URL and the real one is kept.
    """

    def __init__(self, parsed: ParsedRequest, *, allow_insecure: bool = False) -> None:
        try:
            super().__init__(parsed.method, parsed.uri, headers=parsed.headers)
        except InsecureTransportError:
            if not allow_insecure:
                raise
            super().__init__(parsed.method, "https" + parsed.uri.removeprefix("http"),
                             headers=parsed.headers)
            self.uri = parsed.uri
        self.parsed = parsed
        self.payload = _Payload(parsed.params)

    @property
    def args(self) -> dict[str, str]:
        """Query parameters (GET) — the same data as the payload here."""
        return dict(self.payload.data)

    @property
    def form(self) -> dict[str, str]:
        """Form parameters (POST)."""
        return dict(self.payload.data)


class _JsonPayload(JsonPayload):
    def __init__(self, document: dict[str, Any]) -> None:
        self._document = document

    @property
    def data(self) -> dict[str, Any]:
        return self._document


class JsonBodyRequest(JsonRequest):
    """Authlib's ``JsonRequest`` over a :class:`ParsedRequest`."""

    def __init__(self, parsed: ParsedRequest) -> None:
        super().__init__(parsed.method, parsed.uri, headers=parsed.headers)
        self.parsed = parsed
        self.payload = _JsonPayload(parsed.json if parsed.json is not None else {})
