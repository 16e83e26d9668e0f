"""Alembic migrations of the control-plane schema (run by ``Database.migrate``)."""
