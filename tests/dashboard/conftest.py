"""Fixtures for admin-API tests: a real dashboard app on a real, migrated database (SQLite and
PostgreSQL, see ``tests/support/databases.py``), called in-process through httpx's ASGI transport.

``admin`` is an HTTP client holding a valid admin API token; ``anonymous`` has no credentials.
The admin and token are inserted directly so that these fixtures do not depend on the code under
test for authentication set-up.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI

from propylon.dashboard.app import create_app
from propylon.dashboard.changes import ensure_config_state, now
from propylon.dashboard.context import DashboardContext
from propylon.dashboard.nodes import MemoryNodeRegistry
from propylon.dashboard.notify import InProcessNotifier
from propylon.settings import DashboardSettings
from propylon.storage.secret_box import SecretBox
from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import AdminUserRow, ApiTokenRow
from propylon.web.credentials import hash_password, new_token, token_digest

ADMIN_PASSWORD = "correct horse battery staple"


@dataclass
class Dashboard:
    """A dashboard under test: its context, app, and the admin's credentials."""

    context: DashboardContext
    app: FastAPI
    admin_token: str
    admin_password: str = ADMIN_PASSWORD


@pytest.fixture
async def dashboard(database: Database, database_url: str, tmp_path: Path) -> Dashboard:
    """A dashboard app on a fresh database with one admin (``admin``) and one API token."""
    # The test IdPs listen on loopback, which the SSRF guard refuses unless allowed.
    settings = DashboardSettings(data_dir=tmp_path, database_url=database_url,
                                 outbound_allowed_networks=("127.0.0.0/8",))
    await ensure_config_state(database)
    context = DashboardContext(
        settings=settings,
        database=database,
        secrets=SecretBox([Fernet.generate_key()]),
        notifier=InProcessNotifier(),
        nodes=MemoryNodeRegistry(),
    )
    token = new_token()
    async with database.transaction() as session:
        admin = AdminUserRow(
            id=str(uuid.uuid4()), username="admin", password_hash=hash_password(ADMIN_PASSWORD),
            must_change_password=False, created_at=now(), updated_at=now(),
        )
        session.add(admin)
        await session.flush()
        session.add(ApiTokenRow(
            id=str(uuid.uuid4()), admin_user_id=admin.id, name="tests", token_digest=token_digest(token),
            prefix=token[:12], created_at=now(), last_used_at=None, expires_at=None, revoked_at=None,
        ))
    return Dashboard(context=context, app=create_app(context), admin_token=token)


@pytest.fixture
async def admin(dashboard: Dashboard) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client authenticated as the admin (Bearer API token)."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=dashboard.app),
        base_url="http://dashboard.test",
        headers={"Authorization": f"Bearer {dashboard.admin_token}"},
    ) as client:
        yield client


@pytest.fixture
async def anonymous(dashboard: Dashboard) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client without credentials."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=dashboard.app), base_url="http://dashboard.test"
    ) as client:
        yield client
