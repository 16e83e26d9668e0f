"""Alembic environment: runs on the connection ``Database.migrate`` hands over (online mode only).

Running ``alembic`` from a shell is not supported: ``propylon migrate`` (or a dashboard start) opens
the connection with the right driver and settings and runs the migrations through it.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context

from propylon.storage.sql.schema import Base, UtcDateTime


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Revisions must not import the application: a UTC column is a timezone-aware DateTime there.
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations() -> None:
    """Run the migrations on the connection ``Database.migrate`` passed in."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `propylon migrate`, not the alembic command line")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=True,
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


# Alembic executes this file during a migration; imported anywhere else (the architecture tests
# import every module) it must do nothing.
if hasattr(context, "config"):
    run_migrations()
