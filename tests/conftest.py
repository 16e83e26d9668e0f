"""Suite-wide hooks: under ``PROPYLON_REQUIRE_SERVICES=1`` (CI) a skipped test fails the run.

A test that needs an external service (Redis, PostgreSQL, Chromium, a third-party IdP) skips with a
reason on a laptop that lacks it; in CI every such service must be there, so a skip means the suite
silently stopped testing something, and that is a failure.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Generator, Iterator

import pytest

pytest_plugins = ["tests.support.databases"]

REQUIRE_SERVICES = os.environ.get("PROPYLON_REQUIRE_SERVICES") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if REQUIRE_SERVICES and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under PROPYLON_REQUIRE_SERVICES=1: {reason}"


@pytest.fixture(autouse=True, scope="module")
def _collect_all_garbage_after_each_module() -> Iterator[None]:
    """A full collection once per module, after its module-scoped fixtures are gone, so that what
    they leaked warns too (see the per-test collection below for why it examines less)."""
    yield
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect at the end of every test, so that an unclosed socket or transport warns (and fails,
    warnings being errors) in the test that leaked it, not in a random later one.

    Whatever survives a collection is frozen (``gc.freeze``), so each collection examines only what
    the test itself allocated: a full collection of the suite's heap after each of 1,500 tests cost
    several minutes of CPU time in all (0.14 s per test), the frozen variant under a second.
    """
    yield
    gc.collect()
    gc.freeze()
