"""Alembic migrations of the embedded provider's own database (version table
``propylon_idp_alembic_version``), run by ``ProviderStore.migrate``."""
