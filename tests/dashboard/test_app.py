"""The dashboard app's common behaviour: OpenAPI document, JSON errors, admin authentication."""

from __future__ import annotations

import base64
from typing import Annotated

import httpx
import pytest
from fastapi import Depends

from propylon.dashboard.context import DashboardContext, get_context
from tests.dashboard.conftest import Dashboard


async def test_openapi_document_is_served(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "Propylon dashboard"


async def test_unknown_route_is_a_json_404(admin: httpx.AsyncClient) -> None:
    response = await admin.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_bad_credentials_get_the_same_401(dashboard: Dashboard, anonymous: httpx.AsyncClient) -> None:
    from propylon.dashboard.admin_auth import authenticate
    from propylon.dashboard.errors import ApiError

    wrong_password = "Basic " + base64.b64encode(b"admin:wrong password!").decode()
    unknown_user = "Basic " + base64.b64encode(b"nobody:" + dashboard.admin_password.encode()).decode()
    for header in (None, "", "Bearer ppl_nope", "Bearer", "Basic !!!", wrong_password, unknown_user):
        with pytest.raises(ApiError) as caught:
            await authenticate(dashboard.context, header)
        assert caught.value.status == 401, header
        assert "Bearer" in caught.value.headers["WWW-Authenticate"]
    good = "Basic " + base64.b64encode(f"admin:{dashboard.admin_password}".encode()).decode()
    assert (await authenticate(dashboard.context, good)).name == "admin"
    assert (await authenticate(dashboard.context, f"Bearer {dashboard.admin_token}")).kind == "token"


async def test_nul_characters_are_refused_on_every_backend(admin: httpx.AsyncClient) -> None:
    """PostgreSQL cannot hold NUL in a text column; the routes refuse it on both backends alike."""
    responses = [
        await admin.get("/api/v1/developers/a%00b"),
        await admin.get("/api/v1/audit", params={"actor": "x\x00y"}),
        await admin.post("/api/v1/developers", json={"email": "a\x00@example.com", "name": "n"}),
    ]
    for response in responses:
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid"
    assert (await admin.get("/api/v1/developers")).json()["items"] == []


async def test_a_database_refusing_nul_is_a_422_not_a_500(dashboard: Dashboard) -> None:
    """The backstop in errors.py, for any field a route forgets to check."""
    from sqlalchemy import text


    @dashboard.app.get("/test-only/echo")
    async def echo(value: str, context: Annotated[DashboardContext, Depends(get_context)]) -> str:
        async with context.database.sessions() as session:
            return str(await session.scalar(text("SELECT CAST(:v AS TEXT)"), {"v": value}))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=dashboard.app),
                                 base_url="http://dashboard.test") as client:
        response = await client.get("/test-only/echo", params={"value": "a\x00b"})
    if dashboard.context.database.dialect == "postgresql":
        assert response.status_code == 422, response.text
        assert "NUL" in response.json()["message"]
    else:
        assert response.status_code == 200, response.text


async def test_an_oversized_body_gets_413(admin: httpx.AsyncClient) -> None:
    from propylon.dashboard.request_guard import MAX_BODY_BYTES

    response = await admin.post(
        "/api/v1/developers", content=b" " * (MAX_BODY_BYTES + 1),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
