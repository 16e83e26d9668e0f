"""The config watcher: applies valid changes, ignores touches, keeps the last good config."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from propylon.domain.config import GatewayConfig
from propylon.gateway.config_source import ConfigWatcher, load_config_file

INTERVAL = 0.01
LOGGER = "propylon.gateway.config_source"


def valid(version: str) -> str:
    return f"version: {version!r}\napis: []\n"


# Three problems: an unknown key, a bad listen path and a non-http upstream.
INVALID = """
version: bad
colour: blue
apis:
  - id: a
    listen_path: nope
    upstream: ftp://x/
    auth: {type: keyless}
"""


class Recorder:
    """Collects the configurations the watcher applies."""

    def __init__(self) -> None:
        self.configs: list[GatewayConfig] = []

    def __call__(self, config: GatewayConfig) -> None:
        self.configs.append(config)

    @property
    def versions(self) -> list[str | None]:
        return [c.version for c in self.configs]


async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(INTERVAL / 2)


async def polls(count: int = 5) -> None:
    """Let the watcher poll a few times."""
    await asyncio.sleep(INTERVAL * count)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(valid("1"))
    return path


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def watcher(config_path: Path, recorder: Recorder) -> AsyncIterator[ConfigWatcher]:
    load_config_file(config_path)  # what the gateway does at startup, before watching
    watcher = ConfigWatcher(config_path, recorder, interval=INTERVAL)
    task = asyncio.create_task(watcher.run())
    yield watcher
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_applies_a_valid_change(
    watcher: ConfigWatcher, config_path: Path, recorder: Recorder
) -> None:
    await polls()
    assert recorder.configs == []  # the content in force at startup is not re-applied
    config_path.write_text(valid("2"))
    await eventually(lambda: recorder.versions == ["2"])
    config_path.write_text(valid("3"))
    await eventually(lambda: recorder.versions == ["2", "3"])


async def test_atomic_replace_is_noticed(
    watcher: ConfigWatcher, config_path: Path, recorder: Recorder
) -> None:
    staged = config_path.with_name("staged.yaml")
    staged.write_text(valid("2"))
    staged.replace(config_path)
    await eventually(lambda: recorder.versions == ["2"])


async def test_touch_without_change_does_not_reload(
    watcher: ConfigWatcher, config_path: Path, recorder: Recorder
) -> None:
    stat = config_path.stat()
    os.utime(config_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    config_path.write_text(valid("1"))  # same bytes rewritten
    await polls(10)
    assert recorder.configs == []
    assert watcher.reload_now() is False


async def test_bad_file_keeps_the_old_config_and_logs_each_problem(
    watcher: ConfigWatcher,
    config_path: Path,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    config_path.write_text(INVALID)
    await eventually(lambda: any("rejected" in r.getMessage() for r in caplog.records))
    await polls()
    assert recorder.configs == []
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == LOGGER]
    messages = [r.getMessage() for r in errors]
    expected = [
        f"{config_path}: colour: Extra inputs are not permitted",
        f"{config_path}: apis.0.listen_path: listen_path must start with '/'",
        f"{config_path}: apis.0.upstream: upstream must be an absolute http(s) URL, "
        "got 'ftp://x/'",
    ]
    for line in expected:
        assert line in messages
    # One report per bad content, not one per poll.
    assert len(messages) == len(expected) + 1
    assert str(config_path) in messages[-1]

    config_path.write_text(valid("2"))
    await eventually(lambda: recorder.versions == ["2"])


async def test_bad_file_then_revert_to_the_content_in_force(
    watcher: ConfigWatcher, config_path: Path, recorder: Recorder
) -> None:
    config_path.write_text("apis: [\n")
    await polls()
    config_path.write_text(valid("1"))
    await polls()
    assert recorder.configs == []


async def test_survives_deletion_then_recreation(
    watcher: ConfigWatcher,
    config_path: Path,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    config_path.unlink()
    await eventually(lambda: any("disappeared" in r.getMessage() for r in caplog.records))
    await polls()
    disappeared = [r for r in caplog.records if "disappeared" in r.getMessage()]
    assert len(disappeared) == 1  # logged once, not on every poll
    assert disappeared[0].levelno == logging.ERROR
    assert watcher.reload_now() is False
    assert recorder.configs == []

    config_path.write_text(valid("2"))
    await eventually(lambda: recorder.versions == ["2"])


async def test_recreated_with_the_same_content_does_not_reload(
    watcher: ConfigWatcher, config_path: Path, recorder: Recorder
) -> None:
    config_path.unlink()
    await polls()
    config_path.write_text(valid("1"))
    await polls(10)
    assert recorder.configs == []


async def test_failing_callback_does_not_stop_the_watcher(
    config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str | None] = []

    def explode_once(config: GatewayConfig) -> None:
        calls.append(config.version)
        if len(calls) == 1:
            raise RuntimeError("compile failed")

    watcher = ConfigWatcher(config_path, explode_once, interval=INTERVAL)
    task = asyncio.create_task(watcher.run())
    try:
        config_path.write_text(valid("2"))
        await eventually(lambda: calls == ["2"])
        await polls()
        assert calls == ["2"]  # the same content is not retried on every poll
        assert any("compile failed" in (r.exc_text or "") for r in caplog.records)
        config_path.write_text(valid("3"))
        await eventually(lambda: calls == ["2", "3"])
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_reload_now(config_path: Path, recorder: Recorder) -> None:
    watcher = ConfigWatcher(config_path, recorder, interval=INTERVAL)
    assert watcher.reload_now() is False  # unchanged
    config_path.write_text(valid("2"))
    assert watcher.reload_now() is True
    assert recorder.versions == ["2"]
    assert watcher.reload_now() is False


def test_reload_now_reads_even_when_stat_looks_unchanged(
    config_path: Path, recorder: Recorder
) -> None:
    old = 1_000_000_000_000_000_000  # 2001, outside any "just modified" window
    os.utime(config_path, ns=(old, old))
    watcher = ConfigWatcher(config_path, recorder, interval=INTERVAL)
    config_path.write_text(valid("9"))  # same size as valid("1"), same inode
    os.utime(config_path, ns=(old, old))
    assert watcher.reload_now() is True
    assert recorder.versions == ["9"]


def test_reload_now_with_a_bad_file(
    config_path: Path, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = ConfigWatcher(config_path, recorder, interval=INTERVAL)
    config_path.write_text("apis: [\n")
    assert watcher.reload_now() is False
    assert watcher.reload_now() is False
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == 2  # an explicit reload always reports
    assert recorder.configs == []


def test_watcher_starting_without_a_file_applies_the_first_valid_one(
    tmp_path: Path, recorder: Recorder
) -> None:
    path = tmp_path / "later.json"
    watcher = ConfigWatcher(path, recorder, interval=INTERVAL)
    assert watcher.reload_now() is False
    path.write_text('{"version": "first"}')
    assert watcher.reload_now() is True
    assert recorder.versions == ["first"]


def test_interval_must_be_positive(config_path: Path, recorder: Recorder) -> None:
    with pytest.raises(ValueError, match="interval"):
        ConfigWatcher(config_path, recorder, interval=0)


def test_watcher_starting_on_a_bad_file_applies_it_once_fixed(
    config_path: Path, recorder: Recorder
) -> None:
    config_path.write_text("apis: [\n")
    watcher = ConfigWatcher(config_path, recorder, interval=INTERVAL)
    assert watcher.reload_now() is False
    config_path.write_text(valid("1"))
    assert watcher.reload_now() is True
    assert recorder.versions == ["1"]
