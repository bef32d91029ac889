"""The README's browser widget, unchanged, on a page from another origin: headless Chromium
runs it against a real Daphne, through CORS preflights to the API and to the SSE relay.

Chromium is the Debian package (/usr/bin/chromium, installed by ``make test`` and CI);
Playwright drives it and downloads no browser. A missing Chromium fails the test.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from genie.models import AccessToken
from genie.services import create_access_token
from tests.conftest import ROOT

pytestmark = pytest.mark.live

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
SNIPPET = re.compile(r"Browser widget.*?```html\n(?P<code>.*?)```", re.DOTALL)  # its first html block
SETTINGS_LINE = re.compile(r'const API = "[^"]*", KEY = "[^"]*";')


def readme_widget(*, api: str, key: str) -> str:
    """The README's widget snippet with only the values of ``API`` and ``KEY`` replaced."""
    match = SNIPPET.search((ROOT / "README.md").read_text())
    assert match, "README.md has no ```html widget snippet under 'Browser widget'"
    code, replaced = SETTINGS_LINE.subn(f'const API = "{api}", KEY = "{key}";', match["code"])
    assert replaced == 1, "the snippet should set API and KEY on one line, as the test rewrites it"
    return code


class PageServer:
    """Serves ``html`` at ``http://localhost:<port>/``: an origin other than the API's
    ``http://127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self.html = ""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = owner.html.encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def page_server() -> Iterator[PageServer]:
    server = PageServer()
    yield server
    server.stop()


@dataclass
class BrowserRun:
    origin: str
    body: str
    errors: list[str]


def open_in_chromium(url: str, *, expect: str | None, timeout_ms: int = 20_000) -> BrowserRun:
    """Load ``url`` in headless Chromium; wait for ``expect`` in the body (or, with None, for
    the page's script to fail). No database work in here: Playwright's sync API runs an
    event loop on this thread, where Django refuses queries."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (make test does)"
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.goto(url)
            if expect is None:
                page.wait_for_event("pageerror", timeout=timeout_ms)
            else:
                try:
                    page.wait_for_function(
                        "text => document.body.innerText.includes(text)", arg=expect, timeout=timeout_ms
                    )
                except Exception as exc:
                    raise AssertionError(f"{expect!r} never appeared; page errors: {errors}") from exc
            return BrowserRun(origin=page.evaluate("location.origin"), body=page.inner_text("body"), errors=errors)
        finally:
            browser.close()


def widget_page(snippet: str) -> str:
    return f'<!doctype html>\n<html><head><meta charset="utf-8"><title>Shop</title></head>\n<body>\n{snippet}</body></html>\n'


def test_readme_widget_streams_the_reply_into_a_page_from_another_origin(live, page_server):
    _, key = create_access_token(
        team=live.agent.team, kind=AccessToken.Kind.PUBLISHABLE, allowed_origins=[page_server.origin]
    )
    # The delay keeps the run active until the page has opened its stream.
    live.script([("delay", 1.5), ("text", "Hello from "), ("text", "the README widget")])
    page_server.html = widget_page(readme_widget(api=f"{live.base_url}/api/v1", key=key))

    run = open_in_chromium(f"{page_server.origin}/", expect="Hello from the README widget")

    assert run.origin == page_server.origin != live.base_url
    assert "Hello from the README widget" in run.body


def test_readme_widget_is_refused_on_an_origin_its_key_does_not_list(live, page_server):
    _, key = create_access_token(
        team=live.agent.team, kind=AccessToken.Kind.PUBLISHABLE, allowed_origins=["https://shop.example"]
    )
    page_server.html = widget_page(readme_widget(api=f"{live.base_url}/api/v1", key=key))

    run = open_in_chromium(f"{page_server.origin}/", expect=None)

    assert any("blocked by CORS policy" in error for error in run.errors), run.errors
    assert any("Failed to fetch" in error for error in run.errors), run.errors
    assert run.body.strip() == ""
