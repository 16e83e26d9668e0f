"""The Redis pub/sub channel that announces configuration versions, read with reconnects.

Both planes listen on it: every dashboard relays versions published by the others to its own
long-polling gateways, and a gateway may listen too so that it fetches a new snapshot without
waiting for its long poll. A message is the decimal version number, nothing else; anything else
on the channel is ignored. Pub/sub is fire-and-forget, so a subscriber that was disconnected
misses messages: both planes therefore treat it as a hint that shortens a wait, never as the only
way to learn about a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

DEFAULT_CHANNEL = "propylon:config"
"""Channel name used unless a deployment sets another (tests use one per test)."""

_BACKOFF_MIN = 0.1
_BACKOFF_MAX = 5.0


def parse_version(data: object) -> int | None:
    """The version carried by a channel message, or ``None`` when it is not one."""
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(data, str) or not data.isdigit() or len(data) > 19:
        return None
    return int(data)


class ChannelSubscriber:
    """Call ``on_version`` for every version announced on ``channel`` until cancelled.

    Reconnects with exponential back-off (0.1 s up to 5 s) when Redis is unreachable or drops
    the connection; ``on_connect`` runs after each (re)subscription so that the caller can catch
    up on what it missed while disconnected.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        channel: str,
        on_version: Callable[[int], None],
        *,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_version = on_version
        self._on_connect = on_connect
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        """Subscribe and relay messages forever; never raises except on cancellation."""
        backoff = _BACKOFF_MIN
        failing = False
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if not failing:
                    logger.warning(
                        "config channel %r unavailable (%s); retrying with back-off",
                        self._channel, exc,
                    )
                failing = True
            except Exception:
                # A bug here must not end config notifications for the life of the process.
                logger.exception("unexpected error on config channel %r", self._channel)
            else:
                failing = False
            if self.subscribed.is_set():
                backoff = _BACKOFF_MIN  # it worked until now: the first retry comes quickly
            self.subscribed.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _listen(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._channel)
            self.subscribed.set()
            logger.info("listening for config versions on redis channel %r", self._channel)
            if self._on_connect is not None:
                self._on_connect()
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                version = parse_version(message.get("data"))
                if version is None:
                    logger.debug("ignoring a malformed message on %r", self._channel)
                    continue
                self._on_version(version)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8
