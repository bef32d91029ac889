"""Headless Chromium for the browser tests, driven by Playwright from a thread of its own.

Playwright's sync API keeps an event loop running on the thread that started it, and
Django refuses ORM calls on such a thread; the live fixtures and the assertions on what is
stored need the ORM on the test's thread. So one thread owns Playwright for the whole
module, and ``Remote`` proxies run each call there: ``page.get_by_role(...).click()``
reads as usual in a test.

Chromium is the Debian package (/usr/bin/chromium, installed by ``make test`` and CI);
Playwright downloads no browser. A missing Chromium fails the tests.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PLAYWRIGHT_TYPES = ("Browser", "BrowserContext", "Page", "Locator", "FrameLocator", "ElementHandle", "Response")


class BrowserThread:
    """One Chromium, launched and driven on a dedicated thread."""

    def __init__(self) -> None:
        assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (make test does)"
        self.calls: queue.Queue[tuple[Callable[[], Any], Future] | None] = queue.Queue()
        self.started: Future = Future()
        self.thread = threading.Thread(target=self._serve, daemon=True, name="chromium")
        self.thread.start()
        self.browser = Remote(self, self.started.result(timeout=60))

    def _serve(self) -> None:
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
                self.started.set_result(browser)
                while (call := self.calls.get()) is not None:
                    work, result = call
                    try:
                        result.set_result(work())
                    except BaseException as exc:  # handed to the test's thread
                        result.set_exception(exc)
                browser.close()
        except BaseException as exc:
            if not self.started.done():
                self.started.set_exception(exc)

    def run(self, work: Callable[[], Any], timeout: float = 90) -> Any:
        result: Future = Future()
        self.calls.put((work, result))
        return result.result(timeout=timeout)

    def stop(self) -> None:
        self.calls.put(None)
        self.thread.join(timeout=30)


class Remote:
    """A Playwright object living on the browser thread; its methods run there, and the
    Playwright objects they return come back as ``Remote`` too."""

    def __init__(self, owner: BrowserThread, target: Any) -> None:
        self._owner = owner
        self._target = target

    def call(self, work: Callable[[Any], Any]) -> Any:
        """``work(target)`` on the browser thread (for ``expect(...)`` and callbacks)."""
        return self._wrap(self._owner.run(lambda: work(self._target)))

    def _wrap(self, value: Any) -> Any:
        if type(value).__name__ in PLAYWRIGHT_TYPES:
            return Remote(self._owner, value)
        return value

    def __getattr__(self, name: str) -> Any:
        value = self._owner.run(lambda: getattr(self._target, name))
        if not callable(value):
            return self._wrap(value)
        return lambda *args, **kwargs: self._wrap(self._owner.run(lambda: value(*args, **kwargs)))
