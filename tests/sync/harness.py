"""A real dashboard for sync tests: the sync router in uvicorn on loopback, with in-memory parts.

:class:`TestDashboard` serves :func:`~propylon.dashboard.config_sync.sync_router` backed by an
in-memory snapshot source, notifier, node registry and analytics sink. It can be stopped and
started again on the same port (a dashboard outage), and can rewrite its snapshot responses
(a tampering proxy, a misbehaving dashboard).
"""

from __future__ import annotations

import asyncio
import copy
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from propylon.dashboard.config_sync import ConfigSnapshot, sync_router
from propylon.dashboard.nodes import MemoryNodeRegistry
from propylon.dashboard.notify import ConfigNotifier, InProcessNotifier
from propylon.domain.config_signing import SIGNATURE_HEADER

NODE_SECRET = "test-node-secret-0123456789abcdef-xyz"

Rewrite = Callable[[bytes, str], tuple[bytes, str]]


class MemorySnapshotSource:
    """The configuration "in the database": a dict and a version number."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.version = 1
        self.config = config

    async def snapshot(self) -> ConfigSnapshot:
        """The current configuration (a copy, as a database read would give)."""
        return ConfigSnapshot(self.version, copy.deepcopy(self.config))


class MemoryAnalyticsSink:
    """Keeps every record received, tagged with the node that sent it."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    async def ingest(self, node_id: str, records: list[dict[str, Any]]) -> None:
        """Store the batch."""
        self.records.extend((node_id, record) for record in records)


class _RewriteSnapshots:
    """ASGI middleware applying ``dashboard.rewrite`` to 200 answers of ``/system/config``."""

    def __init__(self, app: ASGIApp, dashboard: TestDashboard) -> None:
        self.app = app
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rewrite = self.dashboard.rewrite
        if rewrite is None or scope["type"] != "http" or scope["path"] != "/system/config":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                held.append(message)
                return
            start = held.pop()
            if start["status"] != 200:
                await send(start)
                await send(message)
                return
            headers = dict((k.decode().lower(), v.decode()) for k, v in start["headers"])
            body, signature = rewrite(message["body"], headers[SIGNATURE_HEADER.lower()])
            headers[SIGNATURE_HEADER.lower()] = signature
            headers["content-length"] = str(len(body))
            start = {**start, "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
            await send(start)
            await send({**message, "body": body})

        await self.app(scope, receive, capture)


class TestDashboard:
    """The sync endpoints on ``127.0.0.1:port``; stoppable and restartable on the same port."""

    __test__ = False  # not a test class, whatever its name says

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        source: MemorySnapshotSource | None = None,
        notifier: ConfigNotifier | None = None,
        collect_analytics: bool = True,
    ) -> None:
        self.source = source or MemorySnapshotSource(config or {})
        self.notifier = notifier or InProcessNotifier()
        self.nodes = MemoryNodeRegistry()
        self.sink = MemoryAnalyticsSink()
        self.rewrite: Rewrite | None = None
        app = FastAPI()
        app.include_router(
            sync_router(
                source=self.source, notifier=self.notifier, nodes=self.nodes,
                analytics=self.sink if collect_analytics else None, node_secret=NODE_SECRET,
            )
        )
        self.app = _RewriteSnapshots(app, self)
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Base URL gateways are given."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (on the previous port when restarting) and wait until serving."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_config=None, log_level="warning", lifespan="off", ws="none",
            timeout_graceful_shutdown=0,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Stop serving; open long polls are cut."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        await task

    async def publish(self, config: dict[str, Any]) -> int:
        """Commit a new configuration and announce it, as the admin API does."""
        self.source.config = config
        self.source.version += 1
        await self.notifier.publish(self.source.version)
        return self.source.version
