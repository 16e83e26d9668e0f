"""The dashboard's one place where errors become HTTP responses.

Handlers raise :class:`ApiError` (or let FastAPI's request validation fail); this module turns both
into a JSON body ``{"error": code, "message": text, "problems": [{"location", "message"}...]}`` with
a precise 4xx status. Anything unexpected is logged with its traceback and answered with a generic
500 that reveals nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a request, with where it is (a dotted path into the body)."""

    location: str
    message: str

    def to_json(self) -> dict[str, str]:
        """The JSON form used in error bodies."""
        return {"location": self.location, "message": self.message}


class ApiError(Exception):
    """An error answer: HTTP ``status``, a stable machine ``code`` and a human ``message``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        problems: Sequence[Problem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.problems = tuple(problems)
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body of this error."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.problems:
            body["problems"] = [p.to_json() for p in self.problems]
        return body


def not_found(kind: str, ident: str) -> ApiError:
    """404 for a missing resource."""
    return ApiError(404, "not_found", f"no {kind} with id {ident!r}")


def invalid(problems: Iterable[Problem], message: str = "the request is invalid") -> ApiError:
    """422 listing every problem found."""
    return ApiError(422, "invalid", message, list(problems))


def conflict(message: str, problems: Iterable[Problem] = ()) -> ApiError:
    """409: the request is valid but clashes with the stored state."""
    return ApiError(409, "conflict", message, list(problems))


def problems_from_validation(errors: Sequence[Any], *, drop_prefix: int = 0) -> list[Problem]:
    """Pydantic / FastAPI validation errors as :class:`Problem` s (``drop_prefix`` location parts
    removed, e.g. FastAPI's leading ``body``)."""
    problems = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())][drop_prefix:]
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(Problem(".".join(loc), message))
    return problems


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the JSON shape above."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = [str(part) for part in err.get("loc", ())]
            # FastAPI prefixes where the value came from; "body" is implied for JSON documents.
            if loc and loc[0] == "body":
                loc = loc[1:]
            message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            problems.append(Problem(".".join(loc), message))
        return JSONResponse(invalid(problems).body(), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            {"error": code, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        # PostgreSQL refuses NUL (U+0000) in text, even in a lookup. Routes validate their inputs,
        # and this is the backstop for a field that does not: the caller's data, so a 422.
        if "0x00" in str(exc.orig) or type(exc.orig).__name__ == "CharacterNotInRepertoireError":
            body = invalid([], "NUL characters (U+0000) are not accepted").body()
            return JSONResponse(body, status_code=422)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            {"error": "internal", "message": "internal error; the details are in the dashboard log"},
            status_code=500,
        )
