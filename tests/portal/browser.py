"""Headless Chromium for the portal's browser tests: Debian's `chromium`, driven by
Playwright for Python (never `playwright install`), and the gateway on a thread of its own
so the synchronous Playwright API runs in the test's thread.

Under CI=true a missing browser or Playwright fails the tests instead of skipping them.
"""

import asyncio
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from app.settings import Settings
from tests.fixtures.databases import in_ci
from tests.fixtures.gateway import running_gateway

CHROMIUM = os.environ.get("PORTAL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Where the screenshots go (git-ignored): a known path, the same on every run.
T = TypeVar("T")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "output" / "portal"


def _unusable(message: str) -> None:
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


class BrowserThread:
    """One headless Chromium for the whole session, on a thread of its own: Playwright's
    synchronous API runs an event loop in the thread that calls it, which must not be the
    test's (the suite's async fixtures and tests run their own loops there)."""

    def __init__(self) -> None:
        self._calls: queue.Queue[tuple[Callable[[Any], Any], Future[Any]] | None] = queue.Queue()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="chromium", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(timeout=60)
        if self._failure is not None:
            _unusable(f"Chromium did not start: {self._failure}")
        if not self._ready.is_set():
            _unusable("Chromium did not start within a minute")

    def run(self, journey: Callable[[Any], T]) -> T:
        """`journey(browser)` on the browser's thread; its result, or its exception."""
        future: Future[T] = Future()
        self._calls.put((journey, future))
        return future.result(timeout=300)

    def stop(self) -> None:
        self._calls.put(None)
        self._thread.join(timeout=60)

    def _serve(self) -> None:
        from playwright.sync_api import sync_playwright

        try:
            playwright = sync_playwright().start()
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while (call := self._calls.get()) is not None:
                journey, future = call
                try:
                    future.set_result(journey(browser))
                except BaseException as exc:
                    future.set_exception(exc)
        finally:
            browser.close()
            playwright.stop()


@contextmanager
def chromium() -> Iterator[BrowserThread]:
    """The session's browser, or a skip (a failure under CI=true) when it cannot run."""
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        _unusable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        _unusable(f"Playwright for Python is not installed: {exc}")
    browser = BrowserThread()
    browser.start()
    try:
        yield browser
    finally:
        browser.stop()


@contextmanager
def gateway_thread(settings: Settings) -> Iterator[str]:
    """The gateway on a real socket, served from its own thread and event loop; its URL."""
    ready = threading.Event()
    url: list[str] = []
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with running_gateway(settings) as gateway:
                url.append(gateway.url)
                ready.set()
                await stop.wait()
        except BaseException as exc:
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        ready.wait(timeout=60)
        if failure:
            raise failure[0]
        assert url, "the gateway did not start within a minute"
        yield url[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=90)
        loop.close()
