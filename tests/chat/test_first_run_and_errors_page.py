"""In headless Chromium against the live stack: the first account made from the sign-in
page of an empty database; a failed reply's error still shown after a reload, with
"Retry"; and the admin's conversation view rendering a reply's Markdown safely."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from chat.models import Message, Session
from genie.models import Member
from genie.services import DEFAULT_TEAM_SLUG
from runs.models import Run
from tests.browser import BrowserThread, Remote
from tests.factories import RunFactory

pytestmark = pytest.mark.live
expect.set_options(timeout=15_000)

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def chromium() -> Iterator[BrowserThread]:
    browser = BrowserThread()
    yield browser
    browser.stop()


@pytest.fixture
def open_tab(chromium) -> Iterator[Callable[[str], tuple[Remote, list[str]]]]:
    """A page in a fresh browser context, and the page's script errors as they come."""
    contexts: list[Remote] = []

    def open_tab(url: str) -> tuple[Remote, list[str]]:
        context = chromium.browser.new_context(viewport={"width": 1200, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.call(lambda p: p.on("pageerror", lambda error: errors.append(str(error))))
        page.goto(url)
        return page, errors

    yield open_tab
    for context in contexts:
        context.close()


def sign_in(open_tab, base_url: str, user) -> tuple[Remote, list[str]]:
    user.set_password(PASSWORD)
    user.save()
    page, errors = open_tab(f"{base_url}/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/")
    return page, errors


def wait_until(predicate: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_first_account_is_made_from_the_sign_in_page_of_an_empty_database(
    live_server_url, transactional_db, open_tab
):
    get_user_model().objects.all().delete()

    page, errors = open_tab(f"{live_server_url}/")
    assert page.url.startswith(f"{live_server_url}/login/")  # anonymous: sent to the sign-in page
    page.get_by_role("heading", name="Create the first account").wait_for()
    page.get_by_label("Username").fill("demo")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Create the first account").click()
    page.wait_for_url(f"{live_server_url}/")
    page.get_by_label("Message", exact=True).wait_for()  # the chat page, signed in

    user = get_user_model().objects.get()
    assert (user.username, user.is_superuser, user.is_staff) == ("demo", True, True)
    assert Member.objects.get(user=user).team.slug == DEFAULT_TEAM_SLUG
    # A second visitor finds the offer gone: the sign-in form only.
    other, _ = open_tab(f"{live_server_url}/login/")
    assert other.get_by_role("button", name="Sign in").is_visible()
    assert other.get_by_role("button", name="Create the first account").count() == 0
    assert errors == [], errors


def test_a_failed_reply_shows_its_error_after_a_reload_and_retry_sends_the_message_again(live, open_tab):
    live.script([("status", 400)])  # the model refuses: the run fails, not retried
    user = Member.objects.get(team=live.agent.team).user
    page, errors = sign_in(open_tab, live.base_url, user)
    box = page.get_by_label("Message", exact=True)
    box.fill("What is 6 x 7?")
    box.press("Enter")
    error_note = page.locator("#messages .message.agent .note.error")
    error_note.wait_for()
    shown_live = error_note.inner_text()
    run = Run.objects.get(session__owner=user)
    wait_until(lambda: Message.objects.get(pk=run.agent_message_id).error is not None)

    page.reload()
    error_note.wait_for()

    stored = Message.objects.get(pk=run.agent_message_id).error
    assert error_note.inner_text() == stored["message"] == shown_live
    assert page.locator("#messages .message.agent .thumb").count() == 0  # nothing to rate
    live.fake_llm.replace_script(live.agent.model, [("text", "It is 42.")])
    page.get_by_role("button", name="Retry").click()
    page.call(lambda p: expect(p.locator("#status")).to_have_text("The reply is complete."))

    bubbles = page.locator("#messages .message")
    roles = "items => items.map(item => (item.classList.contains('user') ? 'user' : 'agent'))"
    assert bubbles.evaluate_all(roles) == ["user", "agent", "user", "agent"]
    assert page.locator("#messages .message.user .plain").all_inner_texts() == ["What is 6 x 7?"] * 2
    assert page.locator("#messages .message.agent .markdown").last.inner_text() == "It is 42."
    session = Session.objects.get(owner=user)
    assert [(m.sender_role, m.status) for m in session.messages.order_by("created_at", "id")] == [
        ("user", "complete"),
        ("agent", "failed"),
        ("user", "complete"),
        ("agent", "complete"),
    ]
    assert errors == [], errors


def test_the_admin_conversation_renders_a_replys_markdown_without_its_html(live, open_tab):
    user = Member.objects.get(team=live.agent.team).user
    user.is_staff = user.is_superuser = True
    user.save()
    run = RunFactory(
        session__agent=live.agent,
        session__team=live.agent.team,
        user_message__text="**asked** plainly",
        agent_message__text=(
            "**Miso** and *Lu*\n\n| cat | age |\n|---|---|\n| Miso | 2 |\n\n"
            '<img src="x" onerror="window.pwned=1"> <script>window.pwned=2</script> [bad](javascript:alert(1))'
        ),
        status=Run.Status.SUCCEEDED,
    )
    page, errors = sign_in(open_tab, live.base_url, user)

    page.goto(f"{live.base_url}/admin/chat/session/{run.session.pk}/conversation/")
    reply = page.locator(f"#message-{run.agent_message.uuid} .bubble-text")
    reply.locator("strong").wait_for()

    assert reply.locator("strong").inner_text() == "Miso"
    assert reply.locator("em").inner_text() == "Lu"
    assert reply.locator("table td").all_inner_texts() == ["Miso", "2"]
    assert reply.locator("img, script").count() == 0
    assert reply.locator("a").get_attribute("href") is None
    assert page.evaluate("window.pwned") is None
    # The user's own words stay text, as the chat page shows them.
    assert page.locator(f"#message-{run.user_message.uuid} .bubble-text").inner_text() == "**asked** plainly"
    assert errors == [], errors
