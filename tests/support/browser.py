"""Real-browser tests: Playwright (sync API) driving Debian's Chromium, with screenshots as artifacts.

Playwright's Python package is only the driver; no browser is downloaded: :data:`CHROMIUM` is the
distribution's build (``apt-get install chromium``; ``.ci/run`` installs it). Without it the
``browser`` fixture skips with the reason, which ``PROPYLON_REQUIRE_SERVICES=1`` (CI) turns into a
failure (``tests/conftest.py``), like every other missing service.

Screenshots land in ``{artifacts}/screenshots/<test name>/NN-<step>.png``, where ``{artifacts}`` is
``PROPYLON_ARTIFACTS_DIR`` or ``test-artifacts/`` in the repository root (git-ignored). A test
takes one per step with :meth:`Steps.shot`; a failing test gets a last ``NN-failure.png`` of each
page it opened, taken by the ``steps`` fixture.

A test directory uses these by importing the fixtures and the report hook into its conftest.py::

    from tests.support.browser import browser, pytest_runtest_makereport, steps  # noqa: F401

The sync API runs its own event loop in a greenlet and refuses to start inside a running one, so
browser tests are plain ``def`` tests (the processes they drive are real, nothing needs asyncio).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
)
"""Exactly these switches: a headless, sandbox-less (CI runs as root in a container) Chromium that
calls no Google service while the tests run."""
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT_MS = 10_000
"""Longest wait for one page action or navigation: a test hangs at most this long on a broken page,
not for pytest-timeout's two minutes."""

_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


def artifacts_dir() -> Path:
    """Where test artifacts go: ``PROPYLON_ARTIFACTS_DIR`` or ``test-artifacts/`` in the repository."""
    configured = os.environ.get("PROPYLON_ARTIFACTS_DIR")
    return Path(configured) if configured else REPO_ROOT / "test-artifacts"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "-", text).strip("-").lower()[:80] or "step"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """Keep the report of the test's body, so that the ``steps`` fixture knows whether it failed."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.stash[_CALL_REPORT] = report


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module (a launch costs about a second), or skip."""
    if not os.access(CHROMIUM, os.X_OK):
        # tests/conftest.py turns this skip into a failure under PROPYLON_REQUIRE_SERVICES=1.
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install -y chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS),
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Steps:
    """A test's browser contexts and its numbered screenshots."""

    browser: Browser
    directory: Path
    contexts: list[BrowserContext] = field(default_factory=list)
    count: int = 0

    def page(self, *, javascript: bool = True) -> Page:
        """A page in a new, isolated context (own cookies), with JavaScript on or off."""
        context = self.browser.new_context(java_script_enabled=javascript)
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        self.contexts.append(context)
        return context.new_page()

    def shot(self, page: Page, step: str) -> Path:
        """Save a full-page screenshot of ``page`` as the next step, ``NN-<step>.png``."""
        self.count += 1
        path = self.directory / f"{self.count:02d}-{_slug(step)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def close(self, failed: bool) -> None:
        """Screenshot every open page if the test failed, then close the contexts."""
        for context in self.contexts:
            if failed:
                for page in context.pages:
                    # A crashed page cannot be photographed; the failure itself says enough then.
                    with contextlib.suppress(PlaywrightError):
                        self.shot(page, "failure")
            context.close()
        self.contexts.clear()


@pytest.fixture
def steps(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Steps]:
    """Pages for this test and a screenshot recorder writing to ``screenshots/<test name>/``."""
    directory = artifacts_dir() / "screenshots" / _slug(request.node.name)
    # Only this run's pictures: a directory left from an earlier run would mix steps.
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    recorder = Steps(browser, directory)
    yield recorder
    report = request.node.stash.get(_CALL_REPORT, None)
    recorder.close(failed=report is None or report.failed)
