"""The first admin: there are no default credentials.

On a database without any admin, :func:`bootstrap_admin` creates user ``admin``:

- with ``PROPYLON_ADMIN_PASSWORD`` when set (at least 12 characters, else start-up is refused), or
- with a random one-time password, printed once on standard output in a box (never logged), which
  must be changed before anything but ``GET /api/v1/me`` and ``POST /api/v1/me/password`` works.

It is idempotent: once any admin exists it does nothing and prints nothing. Two dashboards starting
together on one database create one admin: the unique username makes the second insert fail, and
the loser prints nothing (only the winner's password is valid, and only the winner shows it).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from propylon.dashboard import changes
from propylon.storage.sql.database import Database
from propylon.storage.sql.schema import AdminUserRow
from propylon.web.credentials import generate_password, hash_password, password_problem

log = logging.getLogger(__name__)

FIRST_ADMIN = "admin"


class BootstrapError(Exception):
    """The first admin cannot be created as configured (e.g. the given password is too short)."""


@dataclass(frozen=True)
class Bootstrapped:
    """The admin that :func:`bootstrap_admin` created."""

    admin_id: str
    username: str
    generated: bool
    """Whether the password was generated (and printed) rather than taken from the settings."""


async def bootstrap_admin(database: Database, password: str | None, out: TextIO) -> Bootstrapped | None:
    """Create the first admin if there is none; ``None`` when an admin already existed.

    ``password`` is ``PROPYLON_ADMIN_PASSWORD`` (or ``None`` to generate one, which is then written
    to ``out`` once the admin is committed).
    """
    async with database.sessions() as session:
        if await session.scalar(select(AdminUserRow.id).limit(1)) is not None:
            return None
    generated = password is None
    if password is None:
        password = generate_password()
    elif (problem := password_problem(password)) is not None:
        raise BootstrapError(f"PROPYLON_ADMIN_PASSWORD {problem}")
    password_hash = await asyncio.to_thread(hash_password, password)
    timestamp = changes.now()
    row = AdminUserRow(
        id=str(uuid.uuid4()), username=FIRST_ADMIN, password_hash=password_hash,
        must_change_password=generated, created_at=timestamp, updated_at=timestamp,
    )
    try:
        async with database.transaction() as session:
            # Checked again inside the write transaction: another dashboard may have won meanwhile.
            if await session.scalar(select(AdminUserRow.id).limit(1)) is not None:
                return None
            session.add(row)
            await session.flush()
            await changes.record_change(
                session, changes.SYSTEM, "create", "admin_user", row.id,
                {"username": FIRST_ADMIN, "bootstrap": True, "generated_password": generated},
                versioned=False,
            )
    except IntegrityError:
        return None
    if generated:
        log.warning("created the first admin %r with a one-time password, printed on standard "
                    "output; it must be changed at first login", FIRST_ADMIN)
        out.write(_box(FIRST_ADMIN, password))
        out.flush()
    else:
        log.info("created the first admin %r with the password from PROPYLON_ADMIN_PASSWORD",
                 FIRST_ADMIN)
    return Bootstrapped(row.id, FIRST_ADMIN, generated)


def _box(username: str, password: str) -> str:
    lines = [
        "Propylon: the first admin was created.",
        "",
        f"    username: {username}",
        f"    password: {password}",
        "",
        "This one-time password is shown ONCE and is not stored anywhere",
        "readable. Change it before anything else:",
        "    POST /api/v1/me/password",
        '    {"current_password": "…", "new_password": "…"}',
    ]
    width = max(len(line) for line in lines) + 4
    border = "#" * (width + 2)
    body = "\n".join(f"# {line.ljust(width - 2)} #" for line in lines)
    return f"\n{border}\n{body}\n{border}\n\n"
