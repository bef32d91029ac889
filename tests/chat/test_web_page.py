"""The web chat page at ``/`` and the embeddable widget (``/widget.js``) in headless
Chromium against the live stack (Daphne, a Celery worker, the scripted fake LLM): one
browser for the module, a fresh browser context per test.

With ``GENIE_SCREENSHOTS=<folder>`` (``make screenshots``) the tests also write the docs'
screenshots there at the moments they show.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import expect

from chat.models import Message, Session
from feedback.models import Feedback
from genie.models import AccessToken, Member
from genie.services import create_access_token
from runs.models import Run, ToolCall
from tests.browser import BrowserThread, Remote
from tests.conftest import ROOT

pytestmark = pytest.mark.live
# What the page shows after a turn (a worker, the model, the title's call) may take longer
# than Playwright's 5 s default on a loaded machine; a wait still ends at the first match.
expect.set_options(timeout=15_000)

PASSWORD = "correct horse battery staple"
PHONE = {"width": 390, "height": 844}
SHOTS = Path(os.environ["GENIE_SCREENSHOTS"]) if os.environ.get("GENIE_SCREENSHOTS") else None
WIDGET_TAG = re.compile(
    r"Browser widget.*?```html\n(?P<tag><script src=\"[^\"]*\" data-key=\"[^\"]*\"[^>]*></script>)\n```", re.DOTALL
)


def shoot(page: Remote, name: str, *, full_page: bool = False) -> None:
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


@pytest.fixture(scope="module")
def chromium() -> Iterator[BrowserThread]:
    browser = BrowserThread()
    yield browser
    browser.stop()


@dataclass
class Tab:
    page: Remote
    errors: list[str] = field(default_factory=list)

    def text_of(self, selector: str) -> str:
        return self.page.locator(selector).inner_text()

    def expect(self, check: Callable) -> None:
        """``check(page)`` with Playwright's ``expect`` on the browser thread."""
        self.page.call(check)


@pytest.fixture
def open_tab(chromium) -> Iterator[Callable[..., Tab]]:
    contexts: list[Remote] = []

    def open_tab(url: str, *, viewport: dict | None = None, **options) -> Tab:
        """``options``: Playwright's context options (``color_scheme``, ``permissions``)."""
        context = chromium.browser.new_context(viewport=viewport or {"width": 1200, "height": 800}, **options)
        contexts.append(context)
        tab = Tab(context.new_page())
        tab.page.set_default_timeout(20_000)
        tab.page.call(lambda page: page.on("pageerror", lambda error: tab.errors.append(str(error))))
        tab.page.call(
            lambda page: page.on(
                "console", lambda message: tab.errors.append(message.text) if message.type == "error" else None
            )
        )
        tab.page.goto(url)
        return tab

    yield open_tab
    for context in contexts:
        context.close()


@pytest.fixture
def sign_in(live, open_tab) -> Callable[..., Tab]:
    """Sign the live stack's member in through the login form; the page then shows ``/``.
    ``base_url``: the server under another name than its GENIE_PUBLIC_URL."""
    user = Member.objects.select_related("user").get(team=live.agent.team).user
    user.set_password(PASSWORD)
    user.save()

    def sign_in(*, base_url: str = live.base_url, **options) -> Tab:
        tab = open_tab(f"{base_url}/", **options)
        assert tab.page.url.startswith(f"{base_url}/login/")  # anonymous: sent to sign in
        tab.page.get_by_label("Username").fill(user.username)
        tab.page.get_by_label("Password").fill(PASSWORD)
        tab.page.get_by_role("button", name="Sign in").click()
        tab.page.wait_for_url(f"{base_url}/")
        return tab

    sign_in.user = user
    return sign_in


def send(tab: Tab, text: str) -> None:
    """Type a message and send it with Enter, as a keyboard user does."""
    box = tab.page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def wait_complete(tab: Tab) -> None:
    tab.expect(lambda page: expect(page.locator("#status")).to_have_text("The reply is complete."))


def agent_bubbles(tab: Tab) -> Remote:
    return tab.page.locator("#messages .message.agent .body")


def wait_until(predicate: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sign_in_chat_and_see_the_reply_stream_as_sanitised_markdown(live, sign_in):
    live.script(
        [("text", "**Hello** "), ("delay", 1.5), ("text", 'and <img src="data:," onerror="window.pwned=1"> *welcome*')],
        [("text", "Greetings")],  # the title
    )
    tab = sign_in()

    send(tab, "Hi there")
    tab.page.locator("#messages .agent strong").wait_for()
    midway = agent_bubbles(tab).inner_text()
    still_streaming = tab.page.locator("#messages .agent").get_attribute("aria-busy")
    focused = tab.page.evaluate("document.activeElement.id")
    wait_complete(tab)

    assert midway.strip() == "Hello"
    assert still_streaming == "true"
    assert focused == "message-text"  # the composer keeps the keyboard focus
    assert " ".join(agent_bubbles(tab).inner_text().split()) == "Hello and welcome"
    assert tab.page.locator("#messages .agent em").inner_text() == "welcome"
    assert tab.page.locator("#messages img[onerror]").count() == 0
    assert tab.page.evaluate("window.pwned") is None
    session = Session.objects.get(owner=sign_in.user)
    assert tab.page.url.endswith(f"?session={session.uuid}")
    assert tab.page.locator("#session-list a[aria-current=page]").count() == 1
    assert tab.errors == [], tab.errors


def test_model_html_beyond_markdown_is_dropped(live, sign_in):
    # A prompt injection's image would send the chat to its URL as soon as it is drawn.
    live.script(
        [
            ("text", f'Look <img src="{live.base_url}/leak?q=secret"> ![chart]({live.base_url}/leak.png)\n\n'),
            (
                "text",
                '<style>body { display: none }</style><form action="/x"><input name="q"><button>Go</button></form>\n\n',
            ),
            ("text", '<b style="color: red">bold</b> [docs](https://example.com/docs) [bad](javascript:alert(1))'),
        ],
        [("text", "Pictures")],
    )
    tab = sign_in()
    requested: list[str] = []
    tab.page.call(lambda page: page.on("request", lambda request: requested.append(request.url)))

    send(tab, "Show me")
    wait_complete(tab)

    reply = tab.page.locator("#messages .agent .markdown")
    assert reply.locator("img, style, form, input, button, [style]").count() == 0
    assert reply.locator("a").evaluate_all(
        "links => links.map(a => [a.textContent, a.getAttribute('href'), a.rel])"
    ) == [
        ["docs", "https://example.com/docs", "noopener noreferrer"],
        ["bad", None, "noopener noreferrer"],
    ]
    assert "Look" in reply.inner_text()
    assert not [url for url in requested if "/leak" in url], requested
    assert tab.page.locator("body").is_visible()
    assert tab.errors == [], tab.errors


def test_reload_mid_reply_on_a_phone_shows_the_reply_once(live, sign_in):
    live.script(
        [("text", "Alpha "), ("delay", 1.5), ("text", "Beta "), ("delay", 0.5), ("text", "Gamma")],
        [("text", "Letters")],
    )
    tab = sign_in(viewport=PHONE)

    send(tab, "Three words please")
    tab.expect(lambda page: expect(page.locator("#messages .agent")).to_contain_text("Alpha"))
    tab.page.reload()
    wait_complete(tab)
    shoot(tab.page, "chat-page-phone")

    assert agent_bubbles(tab).all_inner_texts() == ["Alpha Beta Gamma"]
    assert tab.page.locator("#messages .message.user .body").all_inner_texts() == ["Three words please"]
    assert not tab.page.locator("#sessions").is_visible()  # the chats list is behind its button
    chats = tab.page.get_by_role("button", name="Chats", exact=True)
    chats.click()
    tab.expect(lambda page: expect(page.locator("#sessions")).to_be_visible())
    assert chats.get_attribute("aria-expanded") == "true"


def test_an_empty_chat_shows_the_agent_and_sends_a_suggested_prompt(live, sign_in):
    live.agent.name = "Help desk"
    live.agent.description = "Orders, returns and refunds."
    live.agent.greeting = "Hello! Ask me about **your order**."
    live.agent.suggested_prompts = ["Where is my order?", "Return an item"]
    live.agent.save()
    live.script([("text", "It ships tomorrow.")], [("text", "Order")])
    tab = sign_in()

    empty = tab.page.locator("#empty-state")
    tab.expect(lambda page: expect(page.locator("#empty-state")).to_be_visible())
    shown = (
        empty.get_by_role("heading").inner_text(),
        tab.text_of("#empty-description"),
        tab.text_of("#empty-greeting"),
        tab.page.locator("#empty-greeting strong").inner_text(),
        empty.get_by_role("button").all_inner_texts(),
    )
    empty.get_by_role("button", name="Where is my order?").click()
    wait_complete(tab)

    assert shown == (
        "Help desk",
        "Orders, returns and refunds.",
        "Hello! Ask me about your order.",
        "your order",
        ["Where is my order?", "Return an item"],
    )
    assert not empty.is_visible()
    assert tab.page.locator("#messages .message.user .body").all_inner_texts() == ["Where is my order?"]
    assert Message.objects.get(session__owner=sign_in.user, sender_role="user").text == "Where is my order?"
    tab.page.get_by_role("button", name="New chat").click()  # empty again
    tab.expect(lambda page: expect(page.locator("#empty-state")).to_be_visible())
    assert tab.errors == [], tab.errors


def stored_chat(user, agent, *, title: str, turns: list[tuple[str, str]]) -> Session:
    """A finished chat of ``user``'s, written as the API would have stored it."""
    session = Session.objects.create(team=agent.team, agent=agent, owner=user, title=title)
    for question, answer in turns:
        Message.objects.create(session=session, sender_role="user", text=question)
        Message.objects.create(session=session, sender_role="agent", text=answer, status=Message.Status.COMPLETE)
    return session


SCROLL = "m => ({top: m.scrollTop, height: m.scrollHeight, view: m.clientHeight})"


def at_end(tab: Tab) -> bool:
    where = tab.page.locator("#messages").evaluate(SCROLL)
    return where["height"] - where["top"] - where["view"] < 40


def in_view(tab: Tab, selector: str) -> bool:
    """Whether the element is (at least partly) inside the conversation's visible part."""
    return tab.page.locator(selector).evaluate(
        """el => { const box = el.getBoundingClientRect(), list = document.getElementById('messages').getBoundingClientRect();
                   return box.bottom > list.top && box.top < list.bottom; }"""
    )


def test_a_chat_opens_at_its_end_and_what_you_send_stays_in_view(live, sign_in):
    long = "\n\n".join(f"Paragraph {n} of a long answer." for n in range(1, 13))
    stored_chat(sign_in.user, live.agent, title="Long chat", turns=[(f"Question {n}", long) for n in range(1, 6)])
    reply = [("text", "Line 1 of the next answer.\n\n")]
    reply += [step for n in range(2, 25) for step in (("delay", 0.05), ("text", f"Line {n} of the next answer.\n\n"))]
    live.script(reply)
    tab = sign_in()

    tab.page.locator("#session-list a", has_text="Long chat").click()
    tab.expect(lambda page: expect(page.locator("#messages .message")).to_have_count(10))
    opened_at_end = at_end(tab)
    last_in_view = in_view(tab, "#messages .message:last-child")
    tab.page.locator("#messages").evaluate("m => m.scrollTo(0, 0)")  # the user scrolls up
    tab.expect(lambda page: expect(page.get_by_role("button", name="Jump to latest")).to_be_visible())
    tab.page.get_by_role("button", name="Jump to latest").click()
    tab.expect(lambda page: expect(page.get_by_role("button", name="Jump to latest")).to_be_hidden())
    jumped_to_end = at_end(tab)
    tab.page.locator("#messages").evaluate("m => m.scrollTo(0, m.scrollHeight / 2)")  # up again, then send
    tab.expect(lambda page: expect(page.get_by_role("button", name="Jump to latest")).to_be_visible())
    send(tab, "One more question")
    tab.expect(lambda page: expect(page.locator("#messages .agent").last).to_contain_text("Line 1 of"))
    sent_in_view = in_view(tab, "#messages .message.user >> nth=-1")
    wait_complete(tab)

    assert opened_at_end
    assert last_in_view
    assert jumped_to_end
    assert sent_in_view
    assert at_end(tab)  # the reply it started was followed to its end
    assert in_view(tab, "#messages .message:last-child")
    assert tab.page.get_by_role("button", name="Jump to latest").is_hidden()
    assert tab.errors == [], tab.errors


def test_dark_mode_follows_the_system(live, sign_in):
    stored_chat(sign_in.user, live.agent, title="Code", turns=[("Show code", "```python\nprint('hi')  # greet\n```")])
    dark = sign_in(color_scheme="dark")
    light = sign_in()
    colours = "() => [getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]"
    for tab in (dark, light):
        tab.page.locator("#session-list a", has_text="Code").click()
        tab.page.locator(".code-block").wait_for()
    shoot(dark.page, "chat-page-dark")

    def brightness(rgb: str) -> float:
        red, green, blue = (int(part) for part in re.findall(r"\d+", rgb)[:3])
        return (red * 299 + green * 587 + blue * 114) / 1000

    dark_background, dark_text = dark.page.evaluate(colours)
    light_background, light_text = light.page.evaluate(colours)
    assert brightness(dark_background) < 60 < 200 < brightness(dark_text)
    assert brightness(light_background) > 200 > 60 > brightness(light_text)
    agent_bubble = "el => getComputedStyle(el).backgroundColor"
    assert brightness(dark.page.locator(".message.agent").evaluate(agent_bubble)) < 80
    comment = ".code-block .hljs-comment"
    assert dark.page.locator(comment).evaluate("el => getComputedStyle(el).color") != light.page.locator(
        comment
    ).evaluate("el => getComputedStyle(el).color")
    assert dark.errors == light.errors == []


def test_regenerate_the_last_reply_then_edit_a_sent_message(live, sign_in):
    live.script([("text", "Miso")], [("text", "Cats")], [("text", "Tom")], [("text", "Rex")])
    tab = sign_in()
    send(tab, "Name a cat")
    wait_complete(tab)
    wait_until(lambda: Session.objects.filter(owner=sign_in.user).exclude(title="").exists())  # the title's call

    tab.page.get_by_role("button", name="Regenerate the reply").click()
    tab.expect(lambda page: expect(page.locator("#messages .agent .body")).to_have_text(["Tom"]))
    wait_complete(tab)
    tab.page.get_by_role("button", name="Edit your message").click()
    box = tab.page.get_by_label("The new text of your message")
    box.fill("Name a dog")
    box.press("Enter")
    tab.expect(lambda page: expect(page.locator("#messages .agent .body")).to_have_text(["Rex"]))
    wait_complete(tab)
    shown = (
        tab.page.locator("#messages .user .body").all_inner_texts(),
        agent_bubbles(tab).all_inner_texts(),
    )
    tab.page.reload()
    tab.page.get_by_role("button", name="Good reply").wait_for()

    assert shown == (["Name a dog"], ["Rex"])
    assert tab.page.locator("#messages .user .body").all_inner_texts() == ["Name a dog"]
    assert agent_bubbles(tab).all_inner_texts() == ["Rex"]
    stored = list(Message.objects.filter(session__owner=sign_in.user).order_by("created_at", "id"))
    by_text = {message.text: message for message in stored}
    assert [message.text for message in stored] == ["Name a cat", "Miso", "Tom", "Name a dog", "Rex"]
    assert by_text["Miso"].replaced_by == by_text["Tom"]  # regenerated
    assert by_text["Name a cat"].replaced_by == by_text["Tom"].replaced_by == by_text["Name a dog"]  # edited
    assert by_text["Name a dog"].replaced_by is None
    assert by_text["Rex"].replaced_by is None
    assert tab.errors == [], tab.errors


def test_rename_delete_and_search_chats_from_the_sidebar(live, sign_in):
    stored_chat(sign_in.user, live.agent, title="Cats", turns=[("Name a cat", "Miso")])
    stored_chat(sign_in.user, live.agent, title="Dogs", turns=[("Name a dog", "Rex")])
    untitled = stored_chat(sign_in.user, live.agent, title="", turns=[("Where is my parcel? It is late.", "Here.")])
    long_title = "A very long title about the many cats and dogs of the neighbourhood and their names"
    stored_chat(sign_in.user, live.agent, title=long_title, turns=[("Hello", "Hi")])
    tab = sign_in()
    names = tab.page.locator("#session-list .session-title")
    tab.expect(lambda page: expect(page.locator("#session-list .session-title")).to_have_count(4))
    listed = names.all_inner_texts()
    cut = tab.page.locator("#session-list .session-title", has_text="A very long").evaluate(
        "el => [getComputedStyle(el).textOverflow, el.scrollWidth > el.clientWidth]"
    )

    tab.page.get_by_label("Search chats").fill("dog")
    tab.expect(lambda page: expect(page.locator("#session-list .session-title")).to_have_text([long_title, "Dogs"]))
    tab.page.get_by_label("Search chats").fill("")
    tab.expect(lambda page: expect(page.locator("#session-list .session-title")).to_have_count(4))
    tab.page.get_by_role("button", name="Rename Cats").click()
    tab.page.get_by_label("New title").fill("Kittens")
    tab.page.get_by_label("New title").press("Enter")
    tab.expect(lambda page: expect(page.locator("#session-list .session-title", has_text="Kittens")).to_be_visible())
    tab.page.locator("#session-list a[title='Dogs']").click()
    tab.expect(lambda page: expect(page.locator("#chat-title")).to_have_text("Dogs"))
    tab.page.get_by_role("button", name="Delete Dogs").click()
    tab.page.get_by_role("group", name="Delete Dogs?").get_by_role("button", name="Delete").click()
    tab.expect(lambda page: expect(page.locator("#status")).to_have_text("The chat was deleted."))

    assert listed == [long_title, "Where is my parcel? It is late.", "Dogs", "Cats"]
    assert tab.page.locator("#session-list .session-title").all_inner_texts() == [
        long_title,
        "Where is my parcel? It is late.",
        "Kittens",
    ]
    assert cut == ["ellipsis", True]
    assert set(Session.objects.filter(owner=sign_in.user).values_list("title", flat=True)) == {
        "Kittens",
        "",
        long_title,
    }
    assert Session.objects.filter(uuid=untitled.uuid).exists()
    assert tab.page.locator("#chat-title").inner_text() == "New chat"  # the open chat was the one deleted
    assert "?session=" not in tab.page.url
    assert tab.errors == [], tab.errors


def test_copy_a_reply_and_its_code_with_language_times_and_table_borders(live, sign_in):
    answer = "Use this:\n\n```python\nprint('hi')\n```\n\n| Name | Age |\n|---|---|\n| Miso | 2 |"
    live.script([("text", answer)], [("text", "Code")])
    tab = sign_in(permissions=["clipboard-read", "clipboard-write"])
    send(tab, "Show me code")
    wait_complete(tab)
    clipboard = "() => navigator.clipboard.readText()"

    block = tab.page.locator(".message.agent .code-block")
    language = block.locator(".code-language").inner_text()
    highlighted = block.locator("code.hljs span").count()
    block.get_by_role("button", name="Copy the python code").click()
    code_copied = tab.page.evaluate(clipboard)
    tab.page.get_by_role("button", name="Copy the reply").click()
    reply_copied = tab.page.evaluate(clipboard)
    border = tab.page.locator(".message.agent td").first.evaluate("el => getComputedStyle(el).borderTopStyle")
    times = tab.page.locator("#messages .message .who time").evaluate_all("els => els.map(t => t.dateTime)")

    assert language == "python"
    assert highlighted > 0
    assert code_copied == "print('hi')\n"
    assert reply_copied == answer
    assert border == "solid"
    assert len(times) == 2
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", when) for when in times)
    assert tab.errors == [], tab.errors


def test_files_attached_before_the_first_message_go_with_it(live, sign_in, tmp_path):
    live.script([("text", "Read it.")], [("text", "Notes")])
    notes = tmp_path / "notes.txt"
    notes.write_text("Milk, eggs, flour.")
    tab = sign_in()

    tab.page.locator("#file-input").set_input_files(str(notes))
    tab.expect(lambda page: expect(page.locator("#attachments")).to_contain_text("notes.txt"))
    chats_before_sending = Session.objects.filter(owner=sign_in.user).count()
    send(tab, "Read my notes")
    wait_complete(tab)

    session = Session.objects.get(owner=sign_in.user)
    first = session.messages.get(sender_role="user")
    assert chats_before_sending == 0  # nothing is stored before the message is sent
    assert (first.text, [upload.filename for upload in first.attachments.all()]) == ("Read my notes", ["notes.txt"])
    assert tab.page.locator("#messages .user .files a").inner_text() == "notes.txt"
    assert tab.page.url.endswith(f"?session={session.uuid}")
    assert tab.page.locator("#attachments li").count() == 0
    assert tab.errors == [], tab.errors


def test_keyboard_shortcuts_new_chat_focus_and_stop_listed_in_a_help(live, sign_in):
    stored_chat(sign_in.user, live.agent, title="Old chat", turns=[("Hello", "Hi")])
    live.script([("text", "Slow "), *[step for n in range(6) for step in (("delay", 1.0), ("text", f"w{n} "))]])
    tab = sign_in()

    def press(key: str) -> None:
        tab.page.call(lambda page: page.keyboard.press(key))

    tab.page.locator("#session-list a", has_text="Old chat").click()
    tab.expect(lambda page: expect(page.locator("#chat-title")).to_have_text("Old chat"))
    tab.page.locator("#chat-title").click()  # the focus off the message box
    press("?")
    help_lines = tab.page.get_by_role("dialog", name="Keyboard shortcuts").locator("dd").all_inner_texts()
    press("Escape")
    tab.expect(lambda page: expect(page.get_by_role("dialog")).to_be_hidden())
    press("Control+Shift+O")
    tab.expect(lambda page: expect(page.locator("#chat-title")).to_have_text("New chat"))
    tab.page.locator("#chat-title").click()
    press("/")
    focused = tab.page.evaluate("document.activeElement.id")
    send(tab, "Tell me slowly")
    tab.expect(lambda page: expect(page.locator("#messages .agent")).to_contain_text("Slow"))
    press("Escape")
    tab.expect(lambda page: expect(page.locator("#messages .agent .note")).to_have_text("Stopped."))

    assert help_lines == ["New chat", "Focus the message box", "Stop the reply", "Send · a new line", "This list"]
    assert focused == "message-text"
    run = Run.objects.get(session__owner=sign_in.user)
    assert live.wait_run(str(run.uuid)).status == Run.Status.STOPPED
    assert tab.errors == [], tab.errors


class Cable:
    """A TCP relay in front of the live server, for the browser to reach it through:
    ``unplug()`` resets every open connection (the stream's too) and each new one until
    ``plug()``, as a dropped network does. Playwright's ``set_offline`` (CDP's offline
    emulation) fails only new requests in Chromium: a response already streaming goes on."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit("//", 1)[1].rsplit(":", 1)
        self.target = (host, int(port))
        self.plugged = True
        self.cut = 0  # connections reset by unplug()
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                browser, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self.lock:
                if not self.plugged:
                    self._reset(browser)
                    continue
                server = socket.create_connection(self.target)
                self.open |= {browser, server}
            for source, sink in ((browser, server), (server, browser)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            if self.plugged:  # the other side closed: pass it on (unplug() resets both instead)
                sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # reset by unplug(), or the other side went

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with an RST
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)  # wakes its pump's recv(), which holds the socket open
        sock.close()

    def unplug(self) -> None:
        with self.lock:
            self.plugged = False
            sockets, self.open = self.open, set()
        for sock in sockets:
            self.cut += 1
            self._reset(sock)

    def plug(self) -> None:
        self.plugged = True

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self.listener.close()
        self.unplug()


@pytest.fixture
def cable(live) -> Iterator[Cable]:
    relay = Cable(live.base_url)
    yield relay
    relay.stop()


def test_a_dropped_connection_mid_reply_resumes_with_last_event_id_and_shows_the_reply_once(live, sign_in, cable):
    words = ["Opening ", *(f"word{n:02d} " for n in range(1, 13)), "Closing."]
    # The words come 0.3 s apart (under the provider timeout, 2 s): about 4 s of reply.
    live.script(
        [("text", words[0]), *[step for word in words[1:] for step in (("delay", 0.3), ("text", word))]],
        [("text", "Dropped")],
    )
    tab = sign_in(base_url=cable.base_url)
    stream = re.compile(r"/api/v1/sessions/[^/]+/runs/[^/]+/stream$")
    opened: list[dict[str, str]] = []  # each request for the run's stream: its headers
    failed: list[str] = []  # how those that did not finish failed
    tab.page.call(
        lambda page: page.on(
            "request", lambda request: opened.append(request.headers) if stream.search(request.url) else None
        )
    )
    tab.page.call(
        lambda page: page.on(
            "requestfailed", lambda request: failed.append(request.failure) if stream.search(request.url) else None
        )
    )

    send(tab, "Count slowly")
    tab.expect(lambda page: expect(page.locator("#messages .agent")).to_contain_text("word01"))
    cable.unplug()  # mid-reply: the open stream is reset
    wait_until(lambda: tab.page.wait_for_timeout(50) or failed, timeout=5)  # events come while Playwright runs
    time.sleep(1.5)  # the run goes on meanwhile; the page's first retry (after 1 s) is refused too
    shown_offline = agent_bubbles(tab).inner_text()
    cable.plug()
    wait_complete(tab)

    stored = Message.objects.get(session__owner=sign_in.user, sender_role="agent").text
    shown = agent_bubbles(tab).inner_text()
    assert stored == "".join(words)
    assert " ".join(shown.split()) == " ".join(stored.split())  # nothing missing, nothing twice
    assert all(shown.count(word.strip()) == 1 for word in words)
    assert tab.page.locator("#messages .message.agent").count() == 1
    # The drop cut the stream midway: the rest of the reply came through a resumed one.
    assert cable.cut
    assert failed
    assert "word01" in shown_offline
    assert "Closing." not in shown_offline, shown_offline
    # Every stream after the first asked for what followed the last event shown.
    assert len(opened) >= 2, opened
    assert "last-event-id" not in opened[0]
    resumed = {int(headers.get("last-event-id", 0)) for headers in opened[1:]}
    assert len(resumed) == 1, opened
    assert resumed.pop() > 0
    # The console's only errors are the dropped requests' own.
    assert all(error.startswith("Failed to load resource: net::ERR_") for error in tab.errors), tab.errors
    wait_until(lambda: Session.objects.filter(owner=sign_in.user).exclude(title="").exists())  # the title's call


def test_a_reply_that_ended_before_its_stream_opened_is_read_again(live, sign_in):
    live.script([("text", "All done here.")], [("text", "Done")])
    tab = sign_in()
    send(tab, "Finish quickly")
    wait_complete(tab)

    def as_still_streaming(route) -> None:
        # The messages as read while the run still went: the reply empty and streaming.
        response = route.fetch()
        body = response.json()
        for message in body["results"]:
            if message["sender_role"] == "agent":
                message.update(status="streaming", text="", tool_calls=[])
        route.fulfill(response=response, json=body)

    tab.page.route(re.compile(r"/messages\?page_size=100$"), as_still_streaming)
    tab.page.reload()  # the run has ended: the session's stream answers 204
    tab.page.get_by_role("button", name="Good reply").wait_for()

    assert agent_bubbles(tab).all_inner_texts() == ["All done here."]
    assert tab.page.locator("#messages .agent").get_attribute("aria-busy") == "false"
    assert tab.page.get_by_role("button", name="Send").is_enabled()
    assert tab.errors == [], tab.errors


def test_a_reply_cut_at_the_token_limit_says_so_live_and_after_a_reload(live, sign_in):
    live.script([("text", "The first half of")], [("text", "Cut")])
    tab = sign_in()

    def finished_at_the_length(route) -> None:
        # The fake model always stops by itself: make its finish the token cap's.
        response = route.fetch()
        lines = []
        for line in response.text().split("\n"):
            if line.startswith("data: {"):
                chunk = json.loads(line[len("data: ") :])
                if chunk["type"] == "finish":
                    line = "data: " + json.dumps({**chunk, "finishReason": "length"})
            lines.append(line)
        route.fulfill(response=response, body="\n".join(lines))

    tab.page.route(re.compile(r"/runs/[^/]+/stream$"), finished_at_the_length)
    send(tab, "Write a long essay")
    tab.expect(lambda page: expect(page.locator("#messages .agent .note")).to_have_text("Cut at the token limit."))
    tab.page.get_by_role("button", name="Good reply").wait_for()

    Message.objects.filter(session__owner=sign_in.user, sender_role="agent").update(status=Message.Status.INCOMPLETE)
    tab.page.reload()
    tab.expect(lambda page: expect(page.locator("#messages .agent .note")).to_have_text("Cut at the token limit."))

    assert tab.page.get_by_role("button", name="Good reply").is_visible()
    assert tab.page.locator("#messages .agent").get_attribute("aria-busy") == "false"
    assert agent_bubbles(tab).inner_text().strip() == "The first half of"
    assert tab.errors == [], tab.errors


def test_switching_chats_quickly_shows_only_the_last_one(live, sign_in):
    live.script([("text", "An answer")])
    for text in ("Question A", "Question B"):
        live.wait_run(live.start_session(text)["run_uuid"])
    tab = sign_in()
    tab.expect(lambda page: expect(page.locator("#session-list a")).to_have_count(2))
    first, second = (Session.objects.get(messages__text=text).uuid for text in ("Question A", "Question B"))

    # Both clicks before either chat has loaded: the first one's answers arrive too late.
    tab.page.evaluate(
        "([a, b]) => { for (const uuid of [a, b]) document.querySelector(`a[data-uuid='${uuid}']`).click(); }",
        [str(first), str(second)],
    )
    tab.page.get_by_role("button", name="Good reply").wait_for()
    time.sleep(0.5)

    assert tab.page.locator("#messages .message.user .body").all_inner_texts() == ["Question B"]
    assert tab.page.locator("#messages .message.agent").count() == 1
    assert tab.page.url.endswith(f"?session={second}")
    assert tab.errors == [], tab.errors


def test_stop_keeps_the_partial_reply(live, sign_in):
    # Pauses shorter than the live stack's provider timeout (2 s).
    live.script(
        [
            ("text", "Partial "),
            *[step for word in ("one ", "two ", "three ", "end") for step in (("delay", 1.5), ("text", word))],
        ]
    )
    tab = sign_in()

    send(tab, "Tell me a long story")
    tab.expect(lambda page: expect(page.locator("#messages .agent")).to_contain_text("Partial"))
    tab.page.get_by_role("button", name="Stop").click()
    tab.expect(lambda page: expect(page.locator("#messages .agent .note")).to_have_text("Stopped."))

    run = Run.objects.get(session__owner=sign_in.user)
    assert live.wait_run(str(run.uuid)).status == Run.Status.STOPPED
    shown = agent_bubbles(tab).inner_text().strip()
    assert shown.startswith("Partial")
    assert "end" not in shown
    assert Message.objects.get(uuid=run.agent_message.uuid).text.strip() == shown
    tab.expect(lambda page: expect(page.get_by_role("button", name="Stop")).to_be_hidden())
    assert tab.page.get_by_role("button", name="Send").is_enabled()


def test_rate_a_reply_with_a_comment(live, sign_in):
    live.script([("text", "Here are **five** cat names: Miso, Juniper, Pixel, Tofu and Biscuit.")], [("text", "Cats")])
    tab = sign_in()

    send(tab, "Name five cats")
    wait_complete(tab)
    tab.page.get_by_role("button", name="Good reply").click()
    tab.page.get_by_label("Comment (optional)").fill("Lovely names")
    tab.page.get_by_role("button", name="Send feedback").click()
    tab.expect(lambda page: expect(page.locator(".rating .saved")).to_have_text("Thanks, feedback saved."))
    wait_until(lambda: Session.objects.filter(owner=sign_in.user).exclude(title="").exists())
    tab.page.reload()  # the rating is shown from the transcript
    tab.expect(
        lambda page: expect(page.get_by_role("button", name="Good reply")).to_have_attribute("aria-pressed", "true")
    )
    shoot(tab.page, "chat-page")

    feedback = Feedback.objects.get(message__session__owner=sign_in.user)
    assert (feedback.rating, feedback.body) == ("positive", "Lovely names")
    assert tab.page.get_by_label("Comment (optional)").input_value() == "Lovely names"
    assert tab.page.locator("#chat-title").inner_text() == "Cats"

    if SHOTS is not None:  # the admin's conversation view, where it exists
        sign_in.user.is_staff = sign_in.user.is_superuser = True
        sign_in.user.save()
        session = Session.objects.get(owner=sign_in.user)
        conversation = f"{live.base_url}/admin/chat/session/{session.pk}/conversation/"
        answer = tab.page.goto(conversation)
        if answer.status == 200 and tab.page.url == conversation:  # not the admin's redirect to the change page
            shoot(tab.page, "admin-conversation", full_page=True)


def test_approve_a_tool_then_answer_it_as_a_client_tool(live, sign_in):
    # The page on "localhost" while the server's public URL (in the events' approval_url and
    # result_url) says 127.0.0.1: the page posts to its own origin all the same.
    localhost = live.base_url.replace("127.0.0.1", "localhost")
    live.agent.tools = [
        {"name": "delete_order", "kind": "client", "requires_approval": True, "description": "Delete an order."}
    ]
    live.agent.save()
    live.script(
        [("tool_call", {"id": "a", "name": "delete_order", "arguments": '{"order": 7}'})],
        [("text", "Order 7 is deleted.")],
        [("text", "Orders")],
    )
    tab = sign_in(base_url=localhost)

    send(tab, "Delete order 7")
    tab.page.get_by_role("button", name="Approve").wait_for()
    shoot(tab.page, "chat-page-approval")
    tab.page.get_by_role("button", name="Approve").click()
    result = tab.page.get_by_label(re.compile("Its result"))
    result.fill('{"deleted": 7}')
    tab.page.get_by_role("button", name="Send result").click()
    wait_complete(tab)

    call = ToolCall.objects.get(run__session__owner=sign_in.user)
    assert call.status == ToolCall.Status.SUCCEEDED
    assert call.output == {"deleted": 7}
    assert call.decided_by == f"user:{sign_in.user.member.uuid}"
    assert "Order 7 is deleted." in agent_bubbles(tab).inner_text()
    assert tab.page.locator(".tool .tool-state").inner_text() == "done"
    assert tab.page.get_by_role("button", name="Approve").count() == 0
    assert tab.errors == [], tab.errors


def test_upload_a_file_see_context_usage_and_compact(live, sign_in, tmp_path):
    live.script([("text", "First answer")], [("text", "Notes")], [("text", "Read it.")])
    tab = sign_in()
    send(tab, "Hello")
    wait_complete(tab)
    wait_until(lambda: Session.objects.filter(owner=sign_in.user).exclude(title="").exists())  # the title's call

    notes = tmp_path / "notes.txt"
    notes.write_text("Milk, eggs, flour.")
    tab.page.locator("#file-input").set_input_files(str(notes))
    tab.expect(lambda page: expect(page.locator("#attachments")).to_contain_text("notes.txt"))
    send(tab, "Read my notes")
    wait_complete(tab)
    tab.page.get_by_role("button", name="Compact").click()
    tab.expect(lambda page: expect(page.locator("#status")).to_contain_text("Nothing to compact yet"))

    stored = Message.objects.get(session__owner=sign_in.user, text="Read my notes")
    assert [upload.filename for upload in stored.attachments.all()] == ["notes.txt"]
    assert tab.page.locator("#messages .user .files a").inner_text() == "notes.txt"
    assert re.fullmatch(r"\d+% · [\d,]+ of [\d,]+ tokens", tab.page.locator("#context-text").inner_text())
    assert tab.page.locator("#attachments li").count() == 0  # sent with the message


# --- the widget, on a page from another origin ----------------------------------------------


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
def shop(live) -> Iterator[PageServer]:
    """A shop's page with the documented widget tag (docs/api/keys.md), its ``src`` and key made real."""
    server = PageServer()
    yield server
    server.stop()


def readme_widget_page(*, base_url: str, key: str) -> str:
    match = WIDGET_TAG.search((ROOT / "docs" / "api" / "keys.md").read_text())
    assert match, "docs/api/keys.md has no widget <script> tag under 'Browser widget'"
    tag = (
        match["tag"].replace("https://genie.example.com", base_url).replace('data-key="pk_live_…"', f'data-key="{key}"')
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Shop</title></head>\n'
        f"<body><h1>The shop</h1><p>Everything for your cat.</p>\n{tag}\n</body></html>\n"
    )


def widget(tab: Tab) -> Remote:
    return tab.page.locator("#genie-widget")


def test_widget_on_another_origin_chats_rates_and_resumes_after_a_reload(live, shop, open_tab):
    _, key = create_access_token(team=live.agent.team, kind=AccessToken.Kind.PUBLISHABLE, allowed_origins=[shop.origin])
    live.script([("text", "Hello from "), ("delay", 1.0), ("text", "the widget")], [("text", "Widget chat")])
    shop.html = readme_widget_page(base_url=live.base_url, key=key)
    tab = open_tab(f"{shop.origin}/")

    tab.page.get_by_role("button", name="Chat").click()
    box = tab.page.get_by_label("Message", exact=True)
    box.fill("Hi")
    box.press("Enter")
    tab.expect(lambda page: expect(page.locator("#genie-widget li.agent")).to_contain_text("Hello from"))
    tab.page.reload()  # mid-reply: the widget reopens, replays the reply and finishes it once
    tab.page.get_by_role("button", name="Good reply").click()
    tab.expect(lambda page: expect(page.get_by_role("status")).to_have_text("Thanks for the feedback."))
    shoot(tab.page, "widget")

    assert tab.page.evaluate("location.origin") == shop.origin != live.base_url
    assert tab.page.locator("#genie-widget li.agent").all_inner_texts()[0].startswith("Hello from the widget")
    assert tab.page.locator("#genie-widget li.agent").count() == 1
    assert tab.page.locator("#genie-widget li.user").all_inner_texts() == ["Hi"]
    session = Session.objects.get(team=live.agent.team, owner=None)
    assert session.messages.get(sender_role="agent").feedback.rating == "positive"
    assert tab.errors == []


def test_widget_refuses_a_secret_key_without_sending_it(live, shop, open_tab):
    _, key = create_access_token(team=live.agent.team, kind=AccessToken.Kind.SECRET)
    shop.html = readme_widget_page(base_url=live.base_url, key=key)
    tab = open_tab(f"{shop.origin}/")
    requested: list[str] = []
    tab.page.call(lambda page: page.on("request", lambda request: requested.append(request.url)))

    tab.page.get_by_role("button", name="Chat").click()
    tab.expect(lambda page: expect(page.get_by_role("status")).to_have_text("The chat is not available on this site."))

    assert key.startswith("sk_live_")
    assert tab.page.get_by_label("Message", exact=True).is_disabled()
    assert tab.page.get_by_role("button", name="Send").is_disabled()
    assert requested == []
    assert tab.errors == ["Genie widget: data-key must be a publishable key (pk_live_…); it was not sent."]


def test_widget_is_refused_on_an_origin_its_key_does_not_list(live, shop, open_tab):
    _, key = create_access_token(
        team=live.agent.team, kind=AccessToken.Kind.PUBLISHABLE, allowed_origins=["https://shop.example"]
    )
    shop.html = readme_widget_page(base_url=live.base_url, key=key)
    tab = open_tab(f"{shop.origin}/")

    tab.page.get_by_role("button", name="Chat").click()
    box = tab.page.get_by_label("Message", exact=True)
    box.fill("Hi")
    box.press("Enter")
    tab.expect(lambda page: expect(page.get_by_role("status")).to_have_text("The chat is not available on this site."))

    assert any("blocked by CORS policy" in error for error in tab.errors), tab.errors
    assert not Session.objects.filter(team=live.agent.team).exists()


def test_widget_greets_and_shows_markdown_without_letting_model_html_out(live, shop, open_tab):
    _, key = create_access_token(team=live.agent.team, kind=AccessToken.Kind.PUBLISHABLE, allowed_origins=[shop.origin])
    live.agent.greeting = "Hi, I am the **shop's** helper."
    live.agent.suggested_prompts = ["Opening hours?"]
    live.agent.save()
    live.script(
        [
            ("text", "Here is **bold**, `code <b>`, a [link](https://example.com/a) and "),
            ("text", "[bad](javascript:window.pwned=1) ![pixel](https://example.com/leak.png)\n\n"),
            ("text", '<img src="x" onerror="window.pwned=1"><script>window.pwned=2</script>'),
            ("text", "<style>body { display: none }</style>\n\n"),
            ("text", "| Day | Hours |\n|---|---|\n| Mon | 9-5 |\n\n```python\nprint('<hi>')\n```\n\n"),
            ("text", '- one\n- two &amp; three\n\n<iframe src="https://example.com"></iframe>'),
        ],
        [("text", "Hours")],
    )
    shop.html = readme_widget_page(base_url=live.base_url, key=key)
    tab = open_tab(f"{shop.origin}/")
    requested: list[str] = []
    tab.page.call(lambda page: page.on("request", lambda request: requested.append(request.url)))
    light_dom = "() => document.querySelectorAll('*').length"
    before = tab.page.evaluate(light_dom)

    tab.page.get_by_role("button", name="Chat").click()
    greeting = tab.page.locator("#genie-widget li.greeting")
    tab.expect(
        lambda page: expect(page.locator("#genie-widget li.greeting")).to_have_text("Hi, I am the shop's helper.")
    )
    greeted_in_bold = greeting.locator("strong").inner_text()
    tab.page.get_by_role("button", name="Opening hours?").click()
    tab.page.get_by_role("button", name="Good reply").wait_for()
    shoot(tab.page, "widget-markdown")

    reply = tab.page.locator("#genie-widget li.agent:not(.greeting)")
    assert greeted_in_bold == "shop's"
    assert tab.page.locator("#genie-widget li.user").all_inner_texts() == ["Opening hours?"]
    assert not tab.page.get_by_role("button", name="Opening hours?").is_visible()
    assert reply.locator("strong").inner_text() == "bold"
    assert reply.locator("p code").inner_text() == "code <b>"
    assert reply.locator("table td").all_inner_texts() == ["Mon", "9-5"]
    assert reply.locator("pre code").inner_text() == "print('<hi>')"
    assert reply.locator("li").all_inner_texts() == ["one", "two & three"]
    assert reply.locator("a").evaluate_all("links => links.map(a => [a.textContent, a.getAttribute('href')])") == [
        ["link", "https://example.com/a"],
        ["pixel", "https://example.com/leak.png"],  # an image is a link, never loaded
    ]
    # The HTML is shown as the text it is: no element of the model's, inside or out.
    assert reply.locator("img, script, style, iframe, [onerror]").count() == 0
    assert '<img src="x" onerror="window.pwned=1">' in reply.inner_text()
    assert tab.page.evaluate("window.pwned") is None
    assert tab.page.evaluate(light_dom) == before
    assert tab.page.locator("body").is_visible()
    assert not [url for url in requested if "leak" in url or "example.com" in url], requested
    assert tab.errors == [], tab.errors
