"""The provider's storage: clients, users, initial access tokens, authorization codes, revocations.

Synchronous SQLAlchemy on purpose: Authlib's server components call their storage hooks
synchronously, so the app runs each Authlib call in a worker thread and the store is an ordinary
blocking one (SQLite by default, ``{data_dir}/idp.db``). Every public method is one transaction.
The schema is created and upgraded by the provider's own Alembic migrations
(``provider/migrations``, version table ``propylon_idp_alembic_version``).
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, delete, event, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from propylon.provider.models import (
    AuthorizationCodeRow,
    ClientRow,
    InitialAccessTokenRow,
    RevokedTokenRow,
    UserRow,
)
from propylon.web.credentials import hash_password, token_digest, verify_password

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
IAT_PREFIX = "pidp_iat_"
"""Prefix of initial access tokens made here (recognisable in logs and secret scanners)."""


class StoreError(Exception):
    """The provider's database could not be opened, migrated or written."""


class UserExists(StoreError):
    """A user with that name already exists."""


def _now() -> int:
    return int(time.time())


class ProviderStore:
    """Blocking access to the provider's database (thread-safe: one session per call)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def connect(cls, url: str) -> ProviderStore:
        """An engine for ``url`` (SQLite: the file's directory is created, WAL mode)."""
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StoreError(f"invalid database URL: {exc}") from exc
        options: dict[str, Any] = {}
        sqlite = parsed.get_backend_name() == "sqlite"
        if sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": 30, "check_same_thread": False}
        try:
            engine = create_engine(parsed, **options)
        except (ArgumentError, ImportError) as exc:
            raise StoreError(f"cannot use database {parsed.render_as_string(hide_password=True)}: "
                             f"{exc}") from exc
        if sqlite:
            _configure_sqlite(engine)
        return cls(engine)

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        try:
            with self.engine.begin() as connection:
                command.upgrade(_alembic_config(connection), "head")
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"cannot migrate the provider database: {exc}") from exc

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    # -- initial access tokens -------------------------------------------------------------

    def create_initial_access_token(self, label: str, expires_in: int | None) -> str:
        """A new initial access token (returned once; only its digest is stored)."""
        token = IAT_PREFIX + secrets.token_urlsafe(32)
        now = _now()
        with self._transaction() as session:
            session.add(InitialAccessTokenRow(
                digest=token_digest(token), label=label[:200], created_at=now,
                expires_at=None if expires_in is None else now + expires_in, demo=False))
        return token

    def replace_demo_token(self, token: str) -> None:
        """Make ``token`` the (only) development demo initial access token."""
        digest = token_digest(token)
        with self._transaction() as session:
            session.execute(delete(InitialAccessTokenRow).where(InitialAccessTokenRow.demo.is_(True)))
            session.execute(delete(InitialAccessTokenRow).where(InitialAccessTokenRow.digest == digest))
            session.add(InitialAccessTokenRow(digest=digest, label="development demo token",
                                              created_at=_now(), expires_at=None, demo=True))

    def remove_demo_tokens(self) -> int:
        """Delete any development demo token (production start); how many there were."""
        with self._transaction() as session:
            result = session.execute(
                delete(InitialAccessTokenRow).where(InitialAccessTokenRow.demo.is_(True)))
            return int(getattr(result, "rowcount", 0) or 0)

    def initial_access_token_state(self, token: str) -> str:
        """``valid``, ``expired`` or ``unknown``."""
        with self._transaction() as session:
            row = session.get(InitialAccessTokenRow, token_digest(token))
            if row is None:
                return "unknown"
            if row.expires_at is not None and row.expires_at <= _now():
                return "expired"
            return "valid"

    # -- users -----------------------------------------------------------------------------

    def add_user(self, username: str, password: str) -> str:
        """Create a user (argon2id password hash); its id. :class:`UserExists` if the name is taken."""
        user_id = str(uuid.uuid4())
        try:
            with self._transaction() as session:
                if session.scalar(select(UserRow.user_id).where(UserRow.username == username)):
                    raise UserExists(f"user {username!r} already exists")
                session.add(UserRow(user_id=user_id, username=username,
                                    password_hash=hash_password(password), created_at=_now()))
        except IntegrityError as exc:
            raise UserExists(f"user {username!r} already exists") from exc
        return user_id

    def authenticate_user(self, username: str, password: str) -> UserRow | None:
        """The user if ``password`` is theirs (same cost whether or not the user exists)."""
        with self._transaction() as session:
            row = session.scalar(select(UserRow).where(UserRow.username == username))
        if verify_password(row.password_hash if row else None, password) and row is not None:
            return row
        return None

    def user(self, user_id: str) -> UserRow | None:
        """The user with this id, if any."""
        with self._transaction() as session:
            return session.get(UserRow, user_id)

    # -- clients ---------------------------------------------------------------------------

    def client(self, client_id: str) -> ClientRow | None:
        """The registered client, if any."""
        with self._transaction() as session:
            return session.get(ClientRow, client_id)

    def add_client(self, row: ClientRow) -> ClientRow:
        """Store a newly registered client."""
        with self._transaction() as session:
            session.add(row)
        return row

    def update_client(self, client_id: str, metadata: dict[str, object]) -> ClientRow | None:
        """Replace the client's metadata (RFC 7592 update); None if it is gone."""
        with self._transaction() as session:
            row = session.get(ClientRow, client_id)
            if row is None:
                return None
            row.client_metadata = metadata
            return row

    def delete_client(self, client_id: str) -> bool:
        """Delete the client and its pending authorization codes; whether it existed."""
        with self._transaction() as session:
            session.execute(delete(AuthorizationCodeRow).where(AuthorizationCodeRow.client_id == client_id))
            result = session.execute(delete(ClientRow).where(ClientRow.client_id == client_id))
            return bool(getattr(result, "rowcount", 0))

    # -- authorization codes ---------------------------------------------------------------

    def add_code(self, code: str, **fields: Any) -> None:
        """Store an authorization code (by digest)."""
        with self._transaction() as session:
            session.add(AuthorizationCodeRow(code_digest=token_digest(code), **fields))

    def take_code(self, code: str, client_id: str) -> AuthorizationCodeRow | None:
        """Consume the code: it is deleted whatever happens next, so it can be redeemed at most
        once even by two concurrent requests. None if unknown, expired or another client's."""
        with self._transaction() as session:
            row = session.get(AuthorizationCodeRow, token_digest(code))
            if row is None:
                return None
            session.delete(row)
        if row.client_id != client_id or row.expires_at <= _now():
            return None
        return row

    # -- revocation ------------------------------------------------------------------------

    def revoke(self, jti: str, client_id: str, expires_at: int) -> None:
        """Record a revoked access token (idempotent); expired records are swept on the way."""
        now = _now()
        with self._transaction() as session:
            session.execute(delete(RevokedTokenRow).where(RevokedTokenRow.expires_at <= now))
            session.execute(delete(AuthorizationCodeRow).where(AuthorizationCodeRow.expires_at <= now))
            if session.get(RevokedTokenRow, jti) is None:
                session.add(RevokedTokenRow(jti=jti, client_id=client_id, expires_at=expires_at))

    def is_revoked(self, jti: str) -> bool:
        """Whether the token with this ``jti`` was revoked."""
        with self._transaction() as session:
            return session.get(RevokedTokenRow, jti) is not None


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _configure_sqlite(engine: Engine) -> None:
    """Foreign keys on, WAL, and transactions that take the write lock when they begin (so that two
    writers wait for each other instead of failing with "database is locked")."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
