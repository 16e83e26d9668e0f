"""One guard in front of every dashboard route: the request body's size.

Bodies are buffered by the framework before validation; capping them here means no route ever
holds an unbounded document, whatever its own limits. (NUL characters, which PostgreSQL cannot
hold, are refused by the routes' validation, with ``errors.py`` as the backstop.)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest request body the dashboard accepts (the biggest documents are bulk imports)."""

class BodySizeGuard:
    """ASGI middleware refusing over-large request bodies with a JSON 413."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away before sending its body: nothing to serve.
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body"))
            if len(body) > MAX_BODY_BYTES:
                await _reject(send, 413, f"request bodies are limited to {MAX_BODY_BYTES} bytes")
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _reject(send: Send, status: int, message: str) -> None:
    payload = json.dumps({"error": "payload_too_large", "message": message}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
    })
    await send({"type": "http.response.body", "body": payload})
