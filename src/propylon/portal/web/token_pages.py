"""The developer API token pages: list, create (the token is shown once), revoke.

Tokens are the credentials of the JSON API under ``/portal/api/v1``; the pages and the API share
:mod:`propylon.portal.developer_tokens`, so a token made here works there and the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter
from starlette.responses import Response

from propylon.dashboard.errors import Problem, not_found
from propylon.portal.developer_tokens import (
    DEFAULT_TOKEN_DAYS,
    create_developer_token,
    list_developer_tokens,
    revoke_developer_token,
)
from propylon.portal.web.forms import plausible_id
from propylon.portal.web.routing import CurrentVisit
from propylon.portal.web.visit import Visit


async def _tokens_page(visit: Visit, *, status: int = 200, new_token: str | None = None,
                       name: str = "", problems: Sequence[Problem] = (),
                       message: str | None = None) -> Response:
    me = visit.developer()
    tokens = await list_developer_tokens(visit.context, me.developer_id)
    return visit.page("tokens.html", "API tokens", status=status, flash=visit.flash(), tokens=tokens,
                      new_token=new_token, name=name, lifetime_days=DEFAULT_TOKEN_DAYS,
                      problems=problems, message=message)


def add_token_pages(router: APIRouter) -> None:
    """Add the token pages to ``router``."""

    @router.get("/tokens")
    async def tokens(visit: CurrentVisit) -> Response:
        return await _tokens_page(visit)

    @router.post("/tokens")
    async def create(visit: CurrentVisit) -> Response:
        me = visit.developer()
        form = await visit.posted()
        name = form.text("name", "Name", max_length=200)
        if form.problems:
            return await _tokens_page(visit, status=422, name=name, problems=form.problems,
                                      message="No token was created.")
        _row, token = await create_developer_token(visit.context, me.actor, name)
        return await _tokens_page(visit, new_token=token)

    @router.post("/tokens/{token_id}/revoke")
    async def revoke(token_id: str, visit: CurrentVisit) -> Response:
        me = visit.developer()
        if not plausible_id(token_id):
            raise not_found("developer token", token_id[:64])
        await visit.posted()
        await revoke_developer_token(visit.context, me.developer_id, token_id)
        return visit.redirect("/portal/tokens", flash="token_revoked")
