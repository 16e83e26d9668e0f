"""Configuration from the dashboard: signed snapshots, long polling, last-good copy on disk.

In dashboard mode a gateway never reads the database. :class:`DashboardConfigSource` fetches
``GET {dashboard}/system/config`` with the node secret, checks the HMAC signature over the exact
body bytes (:mod:`propylon.domain.config_signing`), validates the configuration with
:func:`~propylon.domain.config.parse_config` and hands it to ``apply``. After each apply it saves
body and signature to ``{state_dir}/config-snapshot.json`` (temporary file, then ``os.replace``),
so a restart while the dashboard is down serves the last good configuration; the saved copy is
verified again when read, so an edited file is refused like a tampered response.

Then it long-polls (``?after=<version in force>&wait=25``) and applies each newer version. A
snapshot that fails verification, validation or apply is refused with every problem logged, and
the configuration in force stays. Network trouble means exponential back-off, and the gateway
keeps serving. With a Redis URL the source also listens on the config channel, which cuts a long
poll short (the poll alone already delivers a change within a round trip; the channel covers a
dashboard whose own notifications are not shared). A heartbeat reports the node's state every
``heartbeat_interval`` seconds and right after each apply.

This module must not import ``propylon.dashboard``: the data plane only knows the HTTP contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from propylon.domain.config import GatewayConfig
from propylon.domain.config_signing import SIGNATURE_HEADER
from propylon.gateway.snapshot_file import (
    SNAPSHOT_FILE,
    SnapshotRejected,
    VerifiedSnapshot,
    decode_snapshot,
    load_snapshot,
    save_snapshot,
)
from propylon.storage.redis_channel import DEFAULT_CHANNEL, ChannelSubscriber

logger = logging.getLogger(__name__)

_START_RETRY_DELAYS = (0.2, 0.5, 1.0)
_BACKOFF_MIN = 0.25
_BACKOFF_MAX = 5.0
_MIN_POLL_SECONDS = 0.5
_HEARTBEAT_TIMEOUT = 5.0
_GOODBYE_TIMEOUT = 1.0


class DashboardUnavailable(Exception):
    """The dashboard could not be reached or did not answer with a snapshot."""


class DashboardConfigSource:
    """Keeps a gateway's configuration in step with the dashboard.

    Call :meth:`start` (first configuration, from the dashboard or the saved copy), then run
    :meth:`run` as a task until shutdown, then :meth:`aclose`. ``address`` (``host:port``) is
    reported in heartbeats; set it once the gateway listens.
    """

    def __init__(
        self,
        url: str,
        node_secret: str,
        node_id: str,
        state_dir: Path,
        http: httpx.AsyncClient,
        apply: Callable[[GatewayConfig], Awaitable[None]],
        redis_url: str | None = None,
        *,
        channel: str = DEFAULT_CHANNEL,
        poll_wait: float = 25.0,
        heartbeat_interval: float = 10.0,
        details: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.node_id = node_id
        self.address = ""
        self.version: int | None = None
        self.snapshot_path = state_dir / SNAPSHOT_FILE
        self._secret = node_secret
        self._auth = {"Authorization": f"Bearer {node_secret}"}
        self._http = http
        self._apply = apply
        self._redis_url = redis_url
        self._channel = channel
        self._poll_wait = poll_wait
        self._heartbeat_interval = heartbeat_interval
        self._details = details
        self._started_at = time.time()
        self._hostname = socket.gethostname()
        self._from_disk = False
        self._last_error: str | None = None
        self._rejected: int | None = None
        self._reported: tuple[int | None, tuple[str, ...]] | None = None
        self._nudge = asyncio.Event()
        self._report_now = asyncio.Event()
        self._redis: aioredis.Redis | None = None
        self._subscriber: ChannelSubscriber | None = None
        self._closed = False

    @property
    def healthy(self) -> bool:
        """In step with a reachable dashboard, nothing refused."""
        return not (self._from_disk or self._last_error or self._rejected is not None)

    @property
    def subscribed(self) -> bool:
        """Whether the Redis config channel is being listened to right now."""
        return self._subscriber is not None and self._subscriber.subscribed.is_set()

    def refresh_now(self) -> None:
        """Cut the current long poll short and ask for the latest snapshot (SIGHUP)."""
        self._nudge.set()

    async def start(self) -> None:
        """Put the first configuration in force: the dashboard's, else the saved last-good one.

        Raises :class:`DashboardUnavailable` when neither can be had.
        """
        failure: Exception | None = None
        for delay in (*_START_RETRY_DELAYS, None):
            try:
                snapshot = await self._fetch(None, 0.0)
                if snapshot is None:
                    failure = DashboardUnavailable("the dashboard answered 304 to a plain fetch")
                elif await self._install(snapshot):
                    return
                else:
                    failure = DashboardUnavailable(f"version {snapshot.version} could not be applied")
                    break
            except DashboardUnavailable as exc:
                failure = exc
            except SnapshotRejected as exc:
                self._report_rejection(exc)
                failure = exc
                break  # the same snapshot would be refused again
            if delay is not None:
                await asyncio.sleep(delay)
        self._last_error = str(failure)
        saved = self._load_saved()
        if saved is None:
            raise DashboardUnavailable(
                f"no configuration: the dashboard at {self.url} gave none ({failure}) and there "
                f"is no usable saved snapshot at {self.snapshot_path}"
            )
        logger.warning(
            "dashboard at %s unavailable (%s); serving the saved snapshot, version %d, and "
            "retrying in the background", self.url, failure, saved.version,
        )
        if not await self._install(saved, persist=False):
            raise DashboardUnavailable(f"the saved snapshot at {self.snapshot_path} could not be applied")
        self._from_disk = True

    async def run(self) -> None:
        """Long-poll, listen on the channel and send heartbeats until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._poll_loop(), name="propylon-config-poll")
            group.create_task(self._heartbeat_loop(), name="propylon-heartbeat")
            if self._redis_url is not None:
                self._redis = aioredis.Redis.from_url(self._redis_url, socket_connect_timeout=2.0)
                self._subscriber = ChannelSubscriber(
                    self._redis, self._channel, self._announced, on_connect=self._nudge.set
                )
                group.create_task(self._subscriber.run(), name="propylon-config-channel")

    async def aclose(self) -> None:
        """Tell the dashboard this node is stopping (best effort) and release connections.

        Idempotent; the HTTP client passed in stays open (its owner closes it).
        """
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_GOODBYE_TIMEOUT):
                await self._heartbeat(status="stopping")
        redis, self._redis = self._redis, None
        if redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await redis.aclose()

    def _announced(self, version: int) -> None:
        if self.version is None or version > self.version:
            self._nudge.set()

    def _after(self) -> int | None:
        if self.version is None:
            return self._rejected
        return max(self.version, self._rejected or 0)

    async def _poll_loop(self) -> None:
        backoff = _BACKOFF_MIN
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            try:
                snapshot = await self._next(self._after())
                if snapshot is not None and self.version is not None and snapshot.version <= self.version:
                    raise SnapshotRejected(
                        [f"version {snapshot.version} is not newer than {self.version}, in force"],
                        snapshot.version,
                    )
            except DashboardUnavailable as exc:
                self._note_failure(str(exc))
                await self._pause(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            except SnapshotRejected as exc:
                self._note_reachable()
                self._report_rejection(exc)
                if exc.version is None:
                    # Untrusted content: fetch again later rather than skip a version on its say.
                    await self._pause(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX)
                else:
                    self._rejected = max(exc.version, self._rejected or 0)
                    self._report_now.set()  # report the refusal in a heartbeat now
                continue
            except Exception:
                # A bug here must not end configuration updates for the life of the process.
                logger.exception("unexpected error while polling the dashboard")
                await self._pause(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            backoff = _BACKOFF_MIN
            if self._last_error is not None or self._from_disk:
                self._report_now.set()  # tell the dashboard at once that this node is in step
            self._note_reachable()
            self._from_disk = False  # whatever the answer, we now hold the dashboard's latest
            if snapshot is not None:
                await self._install(snapshot)
            elif loop.time() - asked < _MIN_POLL_SECONDS:
                # "Not modified" at once (a proxy or dashboard ignoring `wait`): do not spin.
                await self._pause(_MIN_POLL_SECONDS)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._nudge.wait()

    async def _next(self, after: int | None) -> VerifiedSnapshot | None:
        # Whatever was announced before this fetch starts is reflected by the fetch itself.
        self._nudge.clear()
        # Just back from an outage (or serving the saved copy): ask without waiting, so that the
        # heartbeat stops reporting trouble as soon as the dashboard answers.
        wait = 0.0 if self._last_error is not None or self._from_disk else self._poll_wait
        poll = asyncio.create_task(self._fetch(after, wait))
        nudge = asyncio.create_task(self._nudge.wait())
        try:
            await asyncio.wait({poll, nudge}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (poll, nudge):
                if not task.done():
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await nudge
            if not poll.done() or poll.cancelled():
                with contextlib.suppress(asyncio.CancelledError, DashboardUnavailable, SnapshotRejected):
                    await poll
        if poll.done() and not poll.cancelled():
            return poll.result()
        self._nudge.clear()
        return await self._fetch(after, 0.0)

    async def _fetch(self, after: int | None, wait: float) -> VerifiedSnapshot | None:
        params = {} if after is None else {"after": str(after), "wait": f"{wait:g}"}
        try:
            response = await self._http.get(
                f"{self.url}/system/config", params=params, headers=self._auth,
                timeout=httpx.Timeout(wait + 10.0, connect=5.0),
            )
        except httpx.HTTPError as exc:
            raise DashboardUnavailable(_describe(exc)) from exc
        if response.status_code == 304:
            return None
        if response.status_code == 401:
            raise DashboardUnavailable("the dashboard refused the node secret (HTTP 401)")
        if response.status_code != 200:
            raise DashboardUnavailable(f"HTTP {response.status_code} from {self.url}/system/config")
        return decode_snapshot(
            response.content, response.headers.get(SIGNATURE_HEADER, ""), self._secret
        )

    async def _install(self, snapshot: VerifiedSnapshot, *, persist: bool = True) -> bool:
        try:
            await self._apply(snapshot.config)
        except Exception:
            logger.exception(
                "configuration version %d could not be applied; the previous one stays",
                snapshot.version,
            )
            self._rejected = max(snapshot.version, self._rejected or 0)
            return False
        self.version = snapshot.version
        self._from_disk = self._from_disk and not persist
        if self._rejected is not None and self._rejected <= snapshot.version:
            self._rejected = None
        self._reported = None
        if persist:
            self._save(snapshot)
        self._report_now.set()
        logger.info("configuration version %d from the dashboard in force", snapshot.version)
        return True

    def _save(self, snapshot: VerifiedSnapshot) -> None:
        try:
            save_snapshot(self.snapshot_path, snapshot)
        except OSError as exc:
            # Serving matters more than the saved copy; the next version tries again.
            logger.error("could not save the configuration snapshot to %s: %s", self.snapshot_path, exc)

    def _load_saved(self) -> VerifiedSnapshot | None:
        try:
            return load_snapshot(self.snapshot_path, self._secret)
        except SnapshotRejected as exc:
            logger.error(
                "the saved snapshot %s is refused: %s", self.snapshot_path, "; ".join(exc.problems)
            )
            return None

    def _report_rejection(self, exc: SnapshotRejected) -> None:
        key = (exc.version, tuple(exc.problems))
        if key == self._reported:
            return  # the same refusal again (e.g. a tampering proxy): said once is enough
        self._reported = key
        label = f"version {exc.version}" if exc.version is not None else "a snapshot"
        for problem in exc.problems:
            logger.error("dashboard snapshot %s: %s", label, problem)
        logger.error(
            "refused %s from the dashboard (%d problem%s); keeping version %s",
            label, len(exc.problems), "" if len(exc.problems) == 1 else "s", self.version,
        )

    def _note_failure(self, reason: str) -> None:
        if self._last_error is None:
            logger.warning(
                "dashboard at %s unavailable (%s); serving version %s and retrying",
                self.url, reason, self.version,
            )
        self._last_error = reason

    def _note_reachable(self) -> None:
        if self._last_error is not None:
            logger.info("dashboard at %s reachable again", self.url)
            self._last_error = None

    async def _heartbeat_loop(self) -> None:
        while True:
            self._report_now.clear()
            await self._heartbeat()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat_interval):
                    await self._report_now.wait()

    async def _heartbeat(self, *, status: str | None = None) -> None:
        details: dict[str, Any] = {
            "config_source": "saved snapshot" if self._from_disk else "dashboard",
            "last_error": self._last_error,
            "rejected_version": self._rejected,
        }
        if self._details is not None:
            try:
                details.update(self._details())
            except Exception:
                logger.exception("collecting heartbeat details failed")
        report = {
            "node_id": self.node_id,
            "hostname": self._hostname,
            "pid": os.getpid(),
            "address": self.address,
            "config_version": self.version,
            "started_at": self._started_at,
            "status": status or ("ok" if self.healthy else "degraded"),
            "details": details,
        }
        try:
            response = await self._http.post(
                f"{self.url}/system/heartbeat", json=report, headers=self._auth,
                timeout=_HEARTBEAT_TIMEOUT,
            )
        except httpx.HTTPError as exc:
            logger.debug("heartbeat not delivered: %s", _describe(exc))
            return
        if response.status_code != 204:
            logger.warning("the dashboard refused the heartbeat: HTTP %d %s",
                           response.status_code, response.text[:200])


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
