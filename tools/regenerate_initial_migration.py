"""Regenerate the initial Alembic migration from ``storage/sql/schema.py`` (before the first release).

Autogenerates against an empty temporary SQLite database, so the revision creates every table.
Run with ``make migration``; ``tests/storage/test_migrations.py`` fails when the committed revision
and the schema disagree.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from propylon.storage.sql.database import MIGRATIONS_DIR, alembic_config

TARGET = MIGRATIONS_DIR / "versions" / "0001_initial.py"


def main() -> int:
    """Delete and re-create the initial revision file."""
    TARGET.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{Path(tmp) / 'empty.db'}")
        with engine.begin() as connection:
            config = alembic_config(connection)
            command.revision(
                config, message="initial schema", autogenerate=True, rev_id="0001",
            )
        engine.dispose()
    generated = next((MIGRATIONS_DIR / "versions").glob("0001_*.py"))
    generated.rename(TARGET)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
