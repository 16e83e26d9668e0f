"""The migrations build exactly the schema the code declares, on both backends, and re-run safely."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import Base


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_match_the_schema(database: Database) -> None:
    async with database.engine.connect() as connection:
        diff = await connection.run_sync(_diff)
    assert diff == [], "schema.py and the migrations disagree: run `make migration`"


async def test_every_table_exists_and_migrating_again_changes_nothing(database: Database) -> None:
    await database.migrate()
    async with database.engine.connect() as connection:
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        revision = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    assert set(Base.metadata.tables) <= tables
    assert revision == "0001"
