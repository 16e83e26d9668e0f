"""Helpers of the JWT/JWKS tests: a controllable clock and a bounded wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest


class FakeClock:
    """A clock that only moves when told to, so tests exercise TTLs without sleeping."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait (briefly polling) until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.01)
