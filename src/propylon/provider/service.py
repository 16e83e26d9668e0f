"""Starting the embedded provider: storage, keys, development defaults, the ASGI app, uvicorn.

Entry points for the CLI and for ``propylon up``:

- :func:`open_provider` — migrate the database, load (or in development create) the signing key,
  install the development demo token; a :class:`Provider` ready to serve.
- :func:`build_provider_app` — the ASGI app of a provider (built by :func:`open_provider` unless
  given).
- :func:`serve_provider` — serve until cancelled or ``stop`` is set (no signal handling; the
  caller owns the process); :func:`run_provider` — the same with SIGINT/SIGTERM, for the CLI.
- :func:`create_initial_access_token` — an initial access token for seeding, without a server.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

import uvicorn
from starlette.applications import Starlette

from propylon.provider.app import create_app
from propylon.provider.keys import KeyFileError, KeyRing
from propylon.provider.server import ProviderServer
from propylon.provider.settings import ProviderSettings
from propylon.provider.store import ProviderStore, StoreError
from propylon.web import serving

log = logging.getLogger(__name__)

GRACEFUL_STOP_SECONDS = 10
EXIT_CONFIG = 2


class StartupError(Exception):
    """The provider cannot start (database, keys, port); the message says why and what to do."""


@dataclass
class Provider:
    """An opened provider: its storage, keys and Authlib server."""

    settings: ProviderSettings
    store: ProviderStore
    keys: KeyRing
    server: ProviderServer
    demo_token: str | None
    """The development demo initial access token accepted by this run (None in production)."""

    @property
    def issuer(self) -> str:
        """The issuer identifier in use."""
        return self.server.issuer

    def close(self) -> None:
        """Release the database connections."""
        self.store.close()


def open_store(settings: ProviderSettings) -> ProviderStore:
    """The provider's database, migrated to the newest schema."""
    try:
        store = ProviderStore.connect(settings.effective_database_url)
        store.migrate()
    except StoreError as exc:
        raise StartupError(str(exc)) from exc
    return store


def key_ring(settings: ProviderSettings) -> KeyRing:
    """The provider's signing keys (files in ``{data_dir}/idp-keys``)."""
    return KeyRing(settings.keys_dir, settings.signing_alg, strict_permissions=settings.production)


def open_provider(settings: ProviderSettings, *, issuer: str | None = None) -> Provider:
    """Open storage and keys and apply the development defaults (loudly) or refuse them
    (production). ``issuer`` overrides ``settings.effective_issuer`` (a port picked at bind time)."""
    store = open_store(settings)
    try:
        keys = key_ring(settings)
        try:
            active = keys.active()
        except KeyFileError as exc:
            raise StartupError(str(exc)) from exc
        if active is None:
            if settings.production:
                raise StartupError(f"no {settings.signing_alg} signing key in {settings.keys_dir}: "
                                   "create one with `propylon idp rotate-keys` before starting "
                                   "in production mode")
            active = keys.add()
            _warn(f"generated a development signing key {active.kid} ({active.alg}) in "
                  f"{settings.keys_dir}; production mode refuses to do this")
        demo_token = _demo_token(settings, store)
        server = ProviderServer(settings, store, keys, issuer or settings.effective_issuer)
    except BaseException:
        store.close()
        raise
    return Provider(settings, store, keys, server, demo_token)


def _demo_token(settings: ProviderSettings, store: ProviderStore) -> str | None:
    if settings.production:
        if store.remove_demo_tokens():
            log.info("removed the development demo initial access token (production mode)")
        return None
    given = settings.demo_initial_access_token
    if given is not None:
        token = given.get_secret_value()
        store.replace_demo_token(token)
        _warn("accepting the demo initial access token from PROPYLON_IDP_DEMO_INITIAL_ACCESS_TOKEN "
              "(development only)")
        return token
    token = "pidp_demo_" + secrets.token_urlsafe(24)
    store.replace_demo_token(token)
    _warn(f"development demo initial access token (valid until the next start): {token}")
    return token


def _warn(message: str) -> None:
    log.warning("*** DEVELOPMENT DEFAULT *** %s", message)


def build_provider_app(settings: ProviderSettings, *, provider: Provider | None = None,
                       issuer: str | None = None) -> Starlette:
    """The provider's ASGI app. Without ``provider`` one is opened (and closed when the app's
    lifespan ends)."""
    owned = provider is None
    opened = provider if provider is not None else open_provider(settings, issuer=issuer)
    return create_app(opened.server, on_shutdown=opened.close if owned else None)


def create_initial_access_token(settings: ProviderSettings, *, expires_in: int | None = None,
                                label: str = "created by propylon") -> str:
    """A new initial access token for registering clients (only its digest is stored). Works
    whether or not the provider is running (they share the database)."""
    store = open_store(settings)
    try:
        lifetime = settings.initial_access_token_lifetime if expires_in is None else expires_in
        return store.create_initial_access_token(label, lifetime)
    finally:
        store.close()


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening), or :class:`StartupError`."""
    try:
        return serving.bind_socket(host, port, port_hint="--port (PROPYLON_IDP_PORT)")
    except serving.ListenError as exc:
        raise StartupError(str(exc)) from exc


def _issuer_for(settings: ProviderSettings, sock: socket.socket) -> str:
    if settings.issuer:
        return settings.issuer
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def serve_provider(settings: ProviderSettings, *, ready: Callable[[Provider], None] | None = None,
                         stop: asyncio.Event | None = None) -> None:
    """Serve the provider until ``stop`` is set (or the task is cancelled). The port is bound
    first; with port 0 and no issuer setting, the issuer follows the port picked. ``ready`` gets
    the opened provider once connections are accepted."""
    sock = bind_socket(settings.host, settings.port)
    try:
        provider = await asyncio.to_thread(open_provider, settings, issuer=_issuer_for(settings, sock))
    except BaseException:
        sock.close()
        raise
    try:
        config = uvicorn.Config(create_app(provider.server), log_config=None, server_header=False,
                                timeout_graceful_shutdown=GRACEFUL_STOP_SECONDS, lifespan="on")
        server = serving.AnnouncingServer(config, lambda: ready(provider) if ready is not None else None)

        async def watch() -> None:
            if stop is not None:
                await stop.wait()
                server.should_exit = True

        watcher = asyncio.create_task(watch())
        try:
            await server.serve(sockets=[sock])
        finally:
            watcher.cancel()
    finally:
        sock.close()
        provider.close()


def run_provider(settings: ProviderSettings, out: TextIO | None = None) -> int:
    """Serve until SIGINT/SIGTERM (the CLI's ``propylon idp``); the exit status."""
    stream = out if out is not None else sys.stdout

    def announce(provider: Provider) -> None:
        stream.write(f"Propylon IdP listening: issuer {provider.issuer} "
                     f"(discovery {provider.issuer}/.well-known/openid-configuration)\n")
        stream.flush()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve_provider(settings, ready=announce, stop=stop)

    try:
        asyncio.run(main())
    except StartupError as exc:
        print(f"propylon idp: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    return 0
