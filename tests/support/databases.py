"""Database fixtures: every storage and dashboard test runs on SQLite and on PostgreSQL.

``database_url`` is parametrised over both backends. PostgreSQL is the real server on
127.0.0.1:5432 (``PROPYLON_TEST_POSTGRES_URL`` overrides it); each test gets a fresh database copied
from a migrated template, so tests are isolated and the migrations run once per session. Without a
reachable server the PostgreSQL half skips with a reason, which CI (``PROPYLON_REQUIRE_SERVICES=1``)
turns into a failure.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from propylon.storage.sql.database import Database, sqlite_url

POSTGRES_URL = os.environ.get(
    "PROPYLON_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
_counter = itertools.count()


def _admin_dsn(database: str) -> str:
    """asyncpg DSN for ``database`` on the test server."""
    url = make_url(POSTGRES_URL).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


async def _execute(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(_admin_dsn(make_url(POSTGRES_URL).database or "test"), timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """Name of a migrated template database (created once per session), or skip."""
    name = f"propylon_tpl_{os.getpid()}"
    try:
        asyncio.run(_execute(f'DROP DATABASE IF EXISTS "{name}"'))
        asyncio.run(_execute(f'CREATE DATABASE "{name}"'))
    except (OSError, ImportError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    except Exception as exc:  # asyncpg's own errors (auth, permissions) have no common base here
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} refused the test set-up: {exc}")

    async def migrate() -> None:
        database = Database.connect(str(make_url(POSTGRES_URL).set(database=name)))
        try:
            await database.migrate()
        finally:
            await database.aclose()

    asyncio.run(migrate())
    yield name
    asyncio.run(_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty, migrated database of each backend, private to the test."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "propylon.db")
        return
    request.applymarker(pytest.mark.services)
    template = request.getfixturevalue("postgres_template")
    name = f"propylon_t_{os.getpid()}_{next(_counter)}"
    asyncio.run(_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield str(make_url(POSTGRES_URL).set(database=name))
    finally:
        asyncio.run(_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A connected, migrated :class:`Database` on each backend."""
    db = Database.connect(database_url)
    await db.migrate()
    try:
        yield db
    finally:
        await db.aclose()
