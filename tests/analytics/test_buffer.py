"""The analytics buffer: cheap adds, batching, bounded memory, retries, lossless close."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from propylon.analytics.buffer import AnalyticsBuffer, AnalyticsWriteError
from propylon.analytics.jsonl import JsonLinesWriter
from propylon.domain.analytics import AnalyticsRecord, RecordFields
from tests.analytics.factory import make_record

FAST = 0.02


class FakeWriter:
    """Records batches; can fail a number of times, or block until released."""

    on_loop = False

    def __init__(self, *, failures: int = 0) -> None:
        self.batches: list[list[AnalyticsRecord]] = []
        self.failures = failures
        self.calls = 0
        self.closed = False
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def prepare(self, records: Sequence[RecordFields]) -> list[AnalyticsRecord]:
        return [AnalyticsRecord._make(record) for record in records]

    def write_batch(self, records: list[AnalyticsRecord]) -> None:
        self.calls += 1
        self.entered.set()
        assert self.gate.wait(5), "test never released the writer"
        if self.failures:
            self.failures -= 1
            raise AnalyticsWriteError("disk full")
        self.batches.append(list(records))

    def close(self) -> None:
        self.closed = True

    @property
    def records(self) -> list[AnalyticsRecord]:
        return [record for batch in self.batches for record in batch]


async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def paths(records: Sequence[AnalyticsRecord]) -> list[str]:
    return [record.path for record in records]


def expected_paths(indices: range) -> list[str]:
    return [f"/orders/items/{i}" for i in indices]


async def test_add_is_cheap_and_never_waits_for_the_writer() -> None:
    writer = FakeWriter()
    writer.gate.clear()  # the writer hangs, as a slow disk would
    buffer = AnalyticsBuffer(writer, batch_size=10, flush_interval=FAST)
    task = asyncio.create_task(buffer.run())
    for index in range(10):
        buffer.add(make_record(index))
    await eventually(writer.entered.is_set)

    records = [make_record(index) for index in range(10, 20_010)]
    started = time.perf_counter()
    for record in records:
        buffer.add(record)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5  # ~1 ms in practice: appends only, no I/O, no waiting
    assert buffer.pending == 20_000

    writer.gate.set()
    await buffer.aclose()
    await task
    assert buffer.written == 20_010
    assert paths(writer.records) == expected_paths(range(20_010))


async def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    writer = FakeWriter()
    buffer = AnalyticsBuffer(writer, batch_size=10, flush_interval=60)
    task = asyncio.create_task(buffer.run())
    for index in range(9):
        buffer.add(make_record(index))
    await asyncio.sleep(FAST)
    assert writer.batches == []
    buffer.add(make_record(9))
    await eventually(lambda: buffer.written == 10)
    assert [len(batch) for batch in writer.batches] == [10]
    await buffer.aclose()
    await task


async def test_a_partial_batch_is_written_after_the_interval() -> None:
    writer = FakeWriter()
    buffer = AnalyticsBuffer(writer, batch_size=1000, flush_interval=FAST)
    task = asyncio.create_task(buffer.run())
    for index in range(3):
        buffer.add(make_record(index))
    await eventually(lambda: buffer.written == 3)
    assert paths(writer.records) == expected_paths(range(3))
    assert buffer.pending == 0
    await buffer.aclose()
    await task


async def test_aclose_flushes_everything_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "analytics" / "records.jsonl"
    buffer = AnalyticsBuffer(JsonLinesWriter(path), batch_size=100, flush_interval=FAST)
    task = asyncio.create_task(buffer.run())
    count = 2_537
    for index in range(count):
        buffer.add(make_record(index))
        if index % 500 == 0:
            await asyncio.sleep(0)  # let the loop interleave some flushes
    await buffer.aclose()
    await task
    lines = path.read_text().splitlines()
    assert len(lines) == count
    decoded = [json.loads(line) for line in lines]
    assert [d["path"] for d in decoded] == expected_paths(range(count))
    assert buffer.written == count
    assert buffer.dropped == 0


async def test_aclose_without_run_still_writes_and_closes() -> None:
    writer = FakeWriter()
    buffer = AnalyticsBuffer(writer)
    for index in range(5):
        buffer.add(make_record(index))
    await buffer.aclose()
    assert paths(writer.records) == expected_paths(range(5))
    assert writer.closed


async def test_aclose_is_idempotent_and_later_records_count_as_dropped() -> None:
    writer = FakeWriter()
    buffer = AnalyticsBuffer(writer)
    task = asyncio.create_task(buffer.run())
    buffer.add(make_record())
    await asyncio.gather(buffer.aclose(), buffer.aclose())
    await task
    buffer.add(make_record())
    assert (buffer.written, buffer.dropped, buffer.pending) == (1, 1, 0)
    await buffer.aclose()
    assert writer.calls == 1


async def test_max_pending_drops_the_oldest_and_counts_them() -> None:
    writer = FakeWriter()
    buffer = AnalyticsBuffer(writer, batch_size=2, max_pending=5)
    for index in range(8):
        buffer.add(make_record(index))
    assert buffer.pending == 5
    assert buffer.dropped == 3
    await buffer.aclose()
    assert paths(writer.records) == expected_paths(range(3, 8))
    assert buffer.written == 5


async def test_a_writer_failure_is_retried_on_the_next_cycle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = FakeWriter(failures=1)
    buffer = AnalyticsBuffer(writer, flush_interval=FAST)
    task = asyncio.create_task(buffer.run())
    for index in range(3):
        buffer.add(make_record(index))
    await eventually(lambda: writer.calls >= 1)
    buffer.add(make_record(3))
    await eventually(lambda: buffer.written == 4)
    # The failed batch comes first, then what arrived meanwhile, in arrival order.
    assert paths(writer.records) == expected_paths(range(4))
    assert buffer.dropped == 0
    assert any(
        r.levelno == logging.ERROR and "writer failed" in r.getMessage() for r in caplog.records
    )
    assert not task.done()
    await buffer.aclose()
    await task


async def test_records_failing_twice_are_dropped_and_the_loop_survives() -> None:
    writer = FakeWriter(failures=1_000_000)
    buffer = AnalyticsBuffer(writer, flush_interval=FAST)
    task = asyncio.create_task(buffer.run())
    for index in range(3):
        buffer.add(make_record(index))
    await eventually(lambda: buffer.dropped == 3)
    assert buffer.written == 0
    assert not task.done()

    writer.failures = 0  # the disk is back
    buffer.add(make_record(10))
    await eventually(lambda: buffer.written == 1)
    assert paths(writer.records) == ["/orders/items/10"]
    await buffer.aclose()
    await task


async def test_the_final_flush_retries_once() -> None:
    writer = FakeWriter(failures=1)
    buffer = AnalyticsBuffer(writer)
    for index in range(4):
        buffer.add(make_record(index))
    await buffer.aclose()
    assert (buffer.written, buffer.dropped) == (4, 0)
    assert writer.closed


async def test_the_final_flush_gives_up_after_two_failures() -> None:
    writer = FakeWriter(failures=2)
    buffer = AnalyticsBuffer(writer)
    for index in range(4):
        buffer.add(make_record(index))
    await buffer.aclose()
    assert (buffer.written, buffer.dropped, writer.calls) == (0, 4, 2)
    assert writer.closed


async def test_a_batch_in_flight_when_run_is_cancelled_is_accounted_once() -> None:
    writer = FakeWriter()
    writer.gate.clear()
    buffer = AnalyticsBuffer(writer, batch_size=5, flush_interval=60)
    task = asyncio.create_task(buffer.run())
    for index in range(5):
        buffer.add(make_record(index))
    await eventually(writer.entered.is_set)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    buffer.add(make_record(5))
    writer.gate.set()
    await buffer.aclose()
    assert paths(writer.records) == expected_paths(range(6))  # no loss, no duplicate
    assert (buffer.written, buffer.dropped) == (6, 0)


async def test_a_failing_close_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class BadClose(FakeWriter):
        def close(self) -> None:
            raise AnalyticsWriteError("cannot close")

    buffer = AnalyticsBuffer(BadClose())
    await buffer.aclose()
    assert any("closing the analytics writer" in r.getMessage() for r in caplog.records)


async def test_run_twice_is_refused() -> None:
    buffer = AnalyticsBuffer(FakeWriter(), flush_interval=FAST)
    task = asyncio.create_task(buffer.run())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already running"):
        await buffer.run()
    await buffer.aclose()
    await task


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"flush_interval": 0},
        {"batch_size": 10, "max_pending": 5},
    ],
)
def test_settings_are_checked(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        AnalyticsBuffer(FakeWriter(), **kwargs)  # type: ignore[arg-type]


class LoopWriter(FakeWriter):
    """A writer that declares its writes fast enough for the event loop."""

    on_loop = True

    def __init__(self, *, failures: int = 0) -> None:
        super().__init__(failures=failures)
        self.threads: set[int] = set()

    def write_batch(self, records: list[AnalyticsRecord]) -> None:
        self.threads.add(threading.get_ident())
        super().write_batch(records)


@pytest.mark.parametrize("on_loop", [True, False])
async def test_writes_run_on_the_loop_only_for_writers_that_say_so(on_loop: bool) -> None:
    writer = LoopWriter()
    writer.on_loop = on_loop
    buffer = AnalyticsBuffer(writer, batch_size=5, flush_interval=FAST)
    task = asyncio.create_task(buffer.run())
    for index in range(12):
        buffer.add(make_record(index))
    await buffer.aclose()
    await task
    assert paths(writer.records) == expected_paths(range(12))
    loop_thread = threading.get_ident()
    assert writer.threads == {loop_thread} if on_loop else loop_thread not in writer.threads


async def test_a_failed_write_on_the_loop_is_retried_like_a_threaded_one() -> None:
    writer = LoopWriter(failures=1)
    buffer = AnalyticsBuffer(writer, batch_size=5, flush_interval=FAST)
    task = asyncio.create_task(buffer.run())
    for index in range(5):
        buffer.add(make_record(index))
    await eventually(lambda: len(writer.records) == 5)
    assert writer.calls == 2
    assert (buffer.written, buffer.dropped) == (5, 0)
    await buffer.aclose()
    await task
