"""One dashboard process wired together: ``propylon dashboard`` and ``propylon migrate``.

:func:`build_context` connects and migrates the database, loads the encryption key, picks the
config-change notifier (in-process, or Redis when ``PROPYLON_REDIS_URL`` is set), keeps gateway
heartbeats in the database and creates the first admin. :func:`run_dashboard` binds the listening
socket *first* (a taken port is a one-line error, before anything is written or printed), then
serves :func:`~propylon.dashboard.app.create_app` with uvicorn until SIGTERM or SIGINT, and stops
gracefully: no new connections, requests in flight get up to :data:`GRACEFUL_STOP_SECONDS`.

While it serves, :func:`background_reconciler` finishes, every ``reconcile_interval`` seconds, the
client registrations and deletions that stopped half-way (``portal.registration.reconcile``,
``dashboard.oauth_clients.retry_deletions``), and stops with the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TextIO

import uvicorn
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from propylon.dashboard import changes
from propylon.dashboard.app import create_app
from propylon.dashboard.bootstrap import BootstrapError, bootstrap_admin
from propylon.dashboard.context import DashboardContext
from propylon.dashboard.notify import ConfigNotifier, InProcessNotifier, RedisNotifier
from propylon.dashboard.oauth_clients import retry_deletions
from propylon.dashboard.sql_nodes import SqlNodeRegistry
from propylon.dashboard.throttle import LoginThrottle
from propylon.portal.registration import reconcile
from propylon.settings import DashboardSettings
from propylon.storage.secret_box import SecretBox, SecretKeyError, read_or_create_secret_file
from propylon.storage.sql.database import Database, DatabaseError, redact
from propylon.web import serving

log = logging.getLogger(__name__)

GRACEFUL_STOP_SECONDS = 10.0
MIN_NODE_SECRET_LENGTH = 32
EXIT_CONFIG = 2
"""Exit status for a start-up refused for a reason the operator must fix (settings, port)."""
EXIT_FAILURE = 1


class StartupError(Exception):
    """The dashboard cannot start; the message says why and what to do, in one line."""


def settings_problems(settings: DashboardSettings) -> list[str]:
    """Why ``settings`` cannot be used to start a dashboard (empty when they can)."""
    problems = []
    node_secret = settings.node_secret.get_secret_value() if settings.node_secret else None
    if node_secret is not None and len(node_secret.strip()) < MIN_NODE_SECRET_LENGTH:
        problems.append(f"PROPYLON_NODE_SECRET must be at least {MIN_NODE_SECRET_LENGTH} characters")
    if settings.production:
        if node_secret is None:
            problems.append(
                "production mode needs PROPYLON_NODE_SECRET (at least "
                f"{MIN_NODE_SECRET_LENGTH} random characters, shared with the gateways)"
            )
        if settings.secret_key is None:
            problems.append(
                "production mode needs PROPYLON_SECRET_KEY (a Fernet key kept outside the data "
                "directory, e.g. from `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            )
    return problems


def _node_secret(settings: DashboardSettings) -> str:
    """The configured node secret, or (development) one generated once into the data directory."""
    if settings.node_secret is not None:
        return settings.node_secret.get_secret_value().strip()
    path = settings.data_dir / "node.secret"
    secret = read_or_create_secret_file(path, lambda: secrets.token_urlsafe(32).encode()).decode()
    log.warning("no PROPYLON_NODE_SECRET: gateways authenticate with the generated secret in %s "
                "(set PROPYLON_NODE_SECRET to its content for remote gateways)", path)
    return secret


def _secret_box(settings: DashboardSettings) -> SecretBox:
    if settings.secret_key is not None:
        return SecretBox.from_setting(settings.secret_key.get_secret_value())
    return SecretBox.from_key_file(settings.data_dir / "secret.key")


async def build_context(settings: DashboardSettings, out: TextIO | None = None) -> DashboardContext:
    """Everything a dashboard serves from, ready (database migrated, first admin created; a
    generated admin password is written once to ``out``, default standard output).

    Raises :class:`StartupError` with a one-line reason when it cannot.
    """
    problems = settings_problems(settings)
    if problems:
        raise StartupError("; ".join(problems))
    try:
        box = _secret_box(settings)
        node_secret = _node_secret(settings)
    except SecretKeyError as exc:
        raise StartupError(str(exc)) from exc
    except OSError as exc:
        raise StartupError(f"cannot create the encryption key file in {settings.data_dir}: "
                           f"{exc.strerror or exc}") from exc
    try:
        database = Database.connect(settings.effective_database_url)
    except (DatabaseError, OSError) as exc:
        raise StartupError(str(exc)) from exc
    notifier: ConfigNotifier | None = None
    try:
        await database.migrate()
        await changes.ensure_config_state(database)
        if settings.redis_url:
            redis_notifier = RedisNotifier(settings.redis_url)
            notifier = redis_notifier
            await redis_notifier.start()
            if not await redis_notifier.wait_subscribed(2.0):
                log.warning("redis at %s does not answer yet; config changes are announced to "
                            "this dashboard's gateways only until it does", redact(settings.redis_url))
        else:
            notifier = InProcessNotifier()
        password = settings.admin_password.get_secret_value() if settings.admin_password else None
        await bootstrap_admin(database, password, out if out is not None else sys.stdout)
    except (DatabaseError, BootstrapError, SQLAlchemyError) as exc:
        await _close(database, notifier)
        raise StartupError(str(exc)) from exc
    except BaseException:
        await _close(database, notifier)
        raise
    return DashboardContext(
        settings=settings,
        database=database,
        secrets=box,
        notifier=notifier,
        nodes=SqlNodeRegistry(database),
        login_throttle=LoginThrottle(
            max_failures=settings.admin_login_max_failures, window=settings.admin_login_window
        ),
        node_secret=node_secret,
    )


async def close_context(context: DashboardContext) -> None:
    """Release what :func:`build_context` opened (Redis subscription, database pool)."""
    await _close(context.database, context.notifier)


async def _close(database: Database, notifier: ConfigNotifier | None) -> None:
    if isinstance(notifier, RedisNotifier):
        await notifier.aclose()
    await database.aclose()


async def reconcile_once(context: DashboardContext) -> None:
    """One reconciler run: stale pending/failed registrations, then stuck deletions; each outcome
    logged (a client kept at its IdP as a warning)."""
    older_than = timedelta(seconds=context.settings.reconcile_after)
    for done in await reconcile(context, older_than):
        level = logging.WARNING if done.outcome == "kept" else logging.INFO
        log.log(level, "reconciler: OAuth client record %s (client %s): %s%s", done.record_id,
                done.client_id, done.outcome, f" ({done.error})" if done.error else "")
    for deletion in await retry_deletions(context, older_than):
        level = logging.WARNING if deletion.status == "deleting" else logging.INFO
        log.log(level, "reconciler: deleting OAuth client record %s (client %s): %s", deletion.id,
                deletion.client_id, deletion.message)


async def _reconcile_forever(context: DashboardContext, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await reconcile_once(context)
        except Exception:
            # Whatever broke this run (database or IdP down), the loop must live on to try again.
            log.exception("reconciler: this run failed; trying again in %g s", interval)


@contextlib.asynccontextmanager
async def background_reconciler(context: DashboardContext) -> AsyncIterator[asyncio.Task[None] | None]:
    """Run :func:`reconcile_once` every ``settings.reconcile_interval`` seconds (none when 0) until
    the block ends; then the task is cancelled and awaited (a run cut short leaves nothing half
    done that the next start's run would not finish)."""
    interval = context.settings.reconcile_interval
    if interval <= 0:
        yield None
        return
    task = asyncio.create_task(_reconcile_forever(context, interval), name="propylon-reconciler")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening), or :class:`StartupError`."""
    try:
        return serving.bind_socket(host, port, port_hint="--port (PROPYLON_DASHBOARD_PORT)")
    except serving.ListenError as exc:
        raise StartupError(str(exc)) from exc


def run_dashboard(settings: DashboardSettings, out: TextIO | None = None) -> int:
    """Serve the dashboard until SIGTERM/SIGINT; the process exit status (0 after a clean stop).

    Start-up problems are reported as one line on standard error, not as a traceback.
    """
    try:
        return asyncio.run(_serve(settings, out if out is not None else sys.stdout))
    except StartupError as exc:
        print(f"propylon dashboard: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG


async def _serve(settings: DashboardSettings, out: TextIO) -> int:
    sock = bind_socket(settings.dashboard_host, settings.dashboard_port)
    try:
        context = await build_context(settings, out)
    except BaseException:
        sock.close()
        raise
    try:
        config = uvicorn.Config(
            create_app(context),
            log_config=None,  # propylon.logs configured logging already
            server_header=False,
            timeout_graceful_shutdown=int(GRACEFUL_STOP_SECONDS),
            lifespan="auto",
        )

        def announce() -> None:
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            out.write(
                f"Propylon dashboard listening on http://{shown}:{port} "
                f"(admin API /api/v1, OpenAPI /api/openapi.json)\n"
            )
            out.flush()

        server = serving.AnnouncingServer(config, announce)
        loop = asyncio.get_running_loop()

        def stop() -> None:
            # A second signal while draining stops at once.
            server.force_exit = server.should_exit
            server.should_exit = True
            # Long polls would otherwise hold the graceful stop for their whole wait.
            context.notifier.release_waiters()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        try:
            async with background_reconciler(context):
                await server.serve(sockets=[sock])
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
    finally:
        sock.close()
        await close_context(context)
    log.info("dashboard stopped")
    return 0


async def migrate_database(settings: DashboardSettings) -> str:
    """Bring the database to the newest schema; the revision it is at afterwards."""
    try:
        database = Database.connect(settings.effective_database_url)
    except DatabaseError as exc:
        raise StartupError(str(exc)) from exc
    try:
        await database.migrate()
        await changes.ensure_config_state(database)
        async with database.engine.connect() as connection:
            revision = await connection.run_sync(_current_revision)
    except (DatabaseError, SQLAlchemyError) as exc:
        raise StartupError(str(exc)) from exc
    finally:
        await database.aclose()
    return revision or "(none)"


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
