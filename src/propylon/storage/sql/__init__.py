"""The control plane's relational store: SQLAlchemy 2 (async) tables, engine set-up and Alembic
migrations. SQLite is the default backend; PostgreSQL is used when the database URL says so.
Only the dashboard (and the CLI wiring it) uses this package: gateways never touch the database."""
