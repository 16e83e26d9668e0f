"""Telling long-polling gateways that the configuration changed.

After committing a change the dashboard calls :meth:`ConfigNotifier.publish` with the new version;
``GET /system/config?after=N&wait=S`` waits in :meth:`ConfigNotifier.wait_for_change`.

- :class:`InProcessNotifier`: one dashboard process (the embedded default).
- :class:`RedisNotifier`: several dashboards. A publication wakes the local waiters at once and
  goes out on a Redis channel; a subscriber task relays the other dashboards' publications to the
  local waiters. Redis being down never fails a publication (the change is already committed):
  waiters elsewhere then learn of it at the end of their long poll, which re-reads the version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from propylon.storage.redis_channel import DEFAULT_CHANNEL, ChannelSubscriber

logger = logging.getLogger(__name__)


class ConfigNotifier(Protocol):
    """Publishes configuration versions and lets requests wait for the next one.

    ``wait_for_change`` takes its timeout as an argument (rather than leaving it to the caller's
    ``asyncio.timeout``) because "nothing changed" is an answer, not an error.
    """

    async def publish(self, version: int) -> None:
        """Announce that ``version`` is now the current configuration version."""
        ...

    async def wait_for_change(self, after: int, timeout: float) -> int | None:  # noqa: ASYNC109
        """Wait until a version greater than ``after`` is announced (or already was).

        Returns the latest version seen, or ``None`` when ``timeout`` seconds pass first.
        """
        ...

    def release_waiters(self) -> None:
        """The dashboard is stopping: every waiting and later ``wait_for_change`` returns at once
        (a long-polling gateway gets "not modified" instead of holding the shutdown up)."""
        ...


class InProcessNotifier:
    """Waiters and publishers in one process, on one event loop."""

    def __init__(self) -> None:
        self._latest = 0
        # One event per "generation": publishing sets the current one and replaces it, so every
        # waiter wakes exactly once and a later waiter never sees a stale set event.
        self._changed = asyncio.Event()
        self._released = False

    @property
    def latest(self) -> int:
        """The highest version announced so far (0 before any)."""
        return self._latest

    def release_waiters(self) -> None:
        """Wake every waiter for good (see :meth:`ConfigNotifier.release_waiters`)."""
        self._released = True
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def announce(self, version: int) -> None:
        """Record ``version`` and wake the waiters (synchronous; for relays and publishers)."""
        if version <= self._latest:
            return
        self._latest = version
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def publish(self, version: int) -> None:
        """Announce ``version`` to the waiters of this process."""
        self.announce(version)

    async def wait_for_change(self, after: int, timeout: float) -> int | None:  # noqa: ASYNC109
        """Latest version once it exceeds ``after``; ``None`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while self._latest <= after:
            if self._released:
                return None
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                return None
        return self._latest


class RedisNotifier:
    """Announcements shared by every dashboard through a Redis pub/sub channel.

    Call :meth:`start` once on the serving event loop and :meth:`aclose` on shutdown.
    """

    def __init__(self, url: str, channel: str = DEFAULT_CHANNEL) -> None:
        self.channel = channel
        self._url = url
        self._local = InProcessNotifier()
        self._client: aioredis.Redis | None = None
        self._subscriber: ChannelSubscriber | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def latest(self) -> int:
        """The highest version seen, published here or relayed from the channel."""
        return self._local.latest

    async def start(self) -> None:
        """Connect and start relaying the channel; returns without waiting for Redis to answer."""
        if self._task is not None:
            raise RuntimeError("RedisNotifier.start() was already called")
        self._client = aioredis.Redis.from_url(self._url, socket_connect_timeout=2.0)
        self._subscriber = ChannelSubscriber(self._client, self.channel, self._local.announce)
        self._task = asyncio.create_task(self._subscriber.run(), name="propylon-config-channel")

    async def wait_subscribed(self, within: float) -> bool:
        """Whether the subscription is live within ``within`` seconds (for start-up and tests)."""
        if self._subscriber is None:
            return False
        try:
            async with asyncio.timeout(within):
                await self._subscriber.subscribed.wait()
        except TimeoutError:
            return False
        return True

    async def publish(self, version: int) -> None:
        """Wake local waiters at once, then announce ``version`` on the channel (best effort)."""
        self._local.announce(version)
        if self._client is None:
            raise RuntimeError("RedisNotifier.start() must be called before publish()")
        try:
            await self._client.publish(self.channel, str(version))
        except (RedisError, OSError) as exc:
            # The change is committed; gateways polling other dashboards see it when their long
            # poll ends. Failing the admin request would suggest the change did not happen.
            logger.warning(
                "could not announce config version %d on redis channel %r: %s",
                version, self.channel, exc,
            )

    async def wait_for_change(self, after: int, timeout: float) -> int | None:  # noqa: ASYNC109
        """Latest version once it exceeds ``after``; ``None`` after ``timeout`` seconds."""
        return await self._local.wait_for_change(after, timeout)

    def release_waiters(self) -> None:
        """Wake every waiter for good (see :meth:`ConfigNotifier.release_waiters`)."""
        self._local.release_waiters()

    async def aclose(self) -> None:
        """Stop relaying and close the connection. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
