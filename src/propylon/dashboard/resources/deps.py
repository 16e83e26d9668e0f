"""What the resource routes share: the dashboard context, resource ids in paths, and the documented
error answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path
from pydantic import BaseModel, Field

from propylon.dashboard.context import DashboardContext, get_context

Context = Annotated[DashboardContext, Depends(get_context)]
"""The dashboard context of the app serving the request."""

IdPath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", description="The resource's id.")
]
"""A resource id in the URL path (same rule as ids in documents)."""


class ProblemBody(BaseModel):
    """One problem of a refused request."""

    location: str = Field(description="Dotted path into the body (or `kind/id.field` for another resource).")
    message: str


class ErrorBody(BaseModel):
    """Every error answer of the admin API."""

    error: str = Field(description="Stable machine code, e.g. `invalid`, `conflict`, `not_found`.")
    message: str = Field(description="What went wrong, for people.")
    problems: list[ProblemBody] | None = Field(default=None, description="Each problem, when several.")


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("The body could not be read."),
    401: _error("Admin credentials are missing or wrong."),
    404: _error("No such resource."),
    409: _error("The change clashes with stored resources (duplicate id, still referenced)."),
    422: _error("The document is invalid; `problems` lists every reason."),
}
"""Error answers every resource route may give, documented once for the OpenAPI document."""
