"""Engine, sessions and migrations for the control-plane database.

``Database.connect(url)`` builds an async engine for SQLite (``sqlite+aiosqlite:///…``, the default)
or PostgreSQL (``postgresql+asyncpg://…``), and ``migrate()`` brings the schema to the newest Alembic
revision. Both backends run the same migrations and the same test suite.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# An arbitrary constant: dashboards starting together on one PostgreSQL database take this advisory
# lock so that exactly one of them runs the migrations.
_MIGRATION_LOCK_ID = 0x5052_4F50


class DatabaseError(Exception):
    """The database could not be reached, set up or migrated."""


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite database file."""
    return f"sqlite+aiosqlite:///{path}"


def redact(url: str) -> str:
    """``url`` with any password replaced, for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


class Database:
    """An async engine plus a session factory; one per dashboard process."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @classmethod
    def connect(cls, url: str, *, echo: bool = False) -> Database:
        """Create the engine for ``url`` (no connection is opened yet)."""
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise DatabaseError(f"invalid database URL: {exc}") from exc
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise DatabaseError(f"unsupported database {backend!r}: use SQLite or PostgreSQL")
        options: dict[str, Any] = {"echo": echo}
        if backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": 30}
        else:
            options["pool_pre_ping"] = True
        try:
            engine = create_async_engine(parsed, **options)
        except (ArgumentError, ImportError) as exc:
            raise DatabaseError(f"cannot use database {redact(url)}: {exc}") from exc
        if backend == "sqlite":
            _configure_sqlite(engine)
        return cls(engine)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on any error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def migrate(self) -> None:
        """Upgrade the schema to the newest revision (idempotent; safe with concurrent starts)."""
        try:
            async with self.engine.begin() as connection:
                if self.dialect == "postgresql":
                    await connection.execute(
                        text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
                    )
                await connection.run_sync(_upgrade)
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseError(f"cannot migrate {redact(str(self.engine.url))}: {exc}") from exc

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration pointing at the packaged migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


def _configure_sqlite(engine: AsyncEngine) -> None:
    """Foreign keys on, WAL, and write transactions that take the write lock when they begin.

    pysqlite's own transaction handling begins lazily (at the first write), so two transactions
    that both read and then write deadlock and one fails at once with "database is locked", without
    waiting for ``busy_timeout``. Beginning ``IMMEDIATE`` makes the second one wait instead.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
