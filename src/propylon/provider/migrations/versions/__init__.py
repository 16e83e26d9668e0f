"""The provider's Alembic revision scripts, oldest first."""
