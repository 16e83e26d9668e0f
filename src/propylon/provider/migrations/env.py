"""Alembic environment of the provider's database: runs on the connection ``ProviderStore.migrate``
hands over (online mode only), with its own version table so that it can share a database with
the control plane without either one's migrations seeing the other's."""

from __future__ import annotations

from alembic import context

from propylon.provider.models import ProviderBase

VERSION_TABLE = "propylon_idp_alembic_version"


def run_migrations() -> None:
    """Run the migrations on the connection ``ProviderStore.migrate`` passed in."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run the provider's migrations with `propylon idp`, not the alembic command line")
    context.configure(
        connection=connection,
        target_metadata=ProviderBase.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


# Alembic executes this file during a migration; imported anywhere else (the architecture tests
# import every module) it must do nothing.
if hasattr(context, "config"):
    run_migrations()
