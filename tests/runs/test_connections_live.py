"""Runtime connections end to end over real HTTP: a real Daphne (GENIE_PUBLIC_URL is its
address, so the provider sends the browser back to it), a real Celery worker (the run
pauses and its continuation runs in a new task), the scripted model, a real OAuth 2.0
authorization server and a real webhook receiver on loopback. The browser leg is
followed with httpx, and once in headless Chromium."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from playwright.sync_api import sync_playwright

from genie.models import AccessToken, Member
from genie.services import create_access_token
from runs.models import Connection, Run
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.runs.test_tools_live import rescript, wait_status

pytestmark = pytest.mark.live


@pytest.fixture
def calendar(live, oauth, receiver):
    """The team has the provider (set up through the API) and the agent a calendar tool."""
    _, secret = create_access_token(team=live.agent.team, kind=AccessToken.Kind.SECRET)
    created = live.api(
        "POST", "connection-providers", json=oauth.provider_body(), headers={"Authorization": f"Bearer {secret}"}
    )
    assert created.status_code == 201, created.text
    live.agent.tools = [
        {
            "name": "agenda",
            "kind": "webhook",
            "url": receiver.url,
            "connection": "calendar",
            "input_schema": {"type": "object"},
        }
    ]
    live.agent.save()
    receiver.secret = live.agent.webhook_secret
    return live


def signed_in(live) -> dict[str, str]:
    """The cookie of a browser signed in to Genie as the stack's user, whose personal key
    created the sessions: a signed-in user's auth link opens only in such a browser."""
    client = Client()
    client.force_login(Member.objects.get(team=live.agent.team).user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


def follow_browser_leg(live, url: str) -> httpx.Response:
    """What the user's browser (signed in to Genie) does: Genie's link, the provider's page,
    its redirect, Genie's callback page."""
    return httpx.get(url, follow_redirects=True, timeout=15, cookies=signed_in(live))


def test_pause_link_authorize_and_the_tool_runs_with_the_users_token(calendar, oauth, receiver):
    live = calendar
    live.script([("tool_call", {"id": "a", "name": "agenda", "arguments": "{}"})], [("text", "Two meetings today.")])
    created = live.start_session("What is on my calendar?", title="Calendar", user_id="alice")

    head = live.read_stream(created["stream_url"], until="data-connection-auth-required")
    wait_status(created["run_uuid"], Run.Status.REQUIRES_ACTION)
    required = head.events[-1].data["data"]
    (action,) = live.api("GET", f"sessions/{created['uuid']}").json()["pending_actions"]
    linked = live.api("POST", required["link_url"].split("/api/v1/", 1)[1]).json()
    page = follow_browser_leg(live, linked["auth_link"]["url"])
    rest = live.read_stream(created["stream_url"], last_event_id=head.ids[-1])
    run = live.wait_run(created["run_uuid"])
    again = live.api("POST", required["link_url"].split("/api/v1/", 1)[1]).json()

    (token,) = oauth.access_tokens_of("alice")
    assert required["provider"] == "calendar"
    assert required["link_url"].startswith(live.base_url)
    assert action == {**action, "type": "connection", "url": required["link_url"]}
    assert linked["status"] == "auth_required"
    assert page.status_code == 200
    assert str(page.url).startswith(f"{live.base_url}/api/v1/connections/callback")
    assert "You may close this window" in page.text
    assert rest.types[:3] == ["finish-step", "data-connection-auth-success", "tool-output-available"]
    assert rest.events[1].data["data"] == {"attempt_id": required["attempt_id"], "provider": "calendar"}
    assert rest.text == "Two meetings today."
    assert run.status == Run.Status.SUCCEEDED
    assert receiver.authorizations == [f"Bearer {token}"]
    assert again == {"attempt_id": required["attempt_id"], "status": "authorized"}
    # A signed-in user is its own end user (the user_id it sent vouches for nothing): the
    # connection is its own, listed without any token.
    (listed,) = live.api("GET", "connections").json()["results"]
    assert listed["provider"] == "calendar"
    assert listed["user_id"] == str(run.session.owner.member.uuid)
    assert token not in json.dumps(listed)
    assert token not in live.api("GET", f"sessions/{created['uuid']}/events").text


def test_reject_and_access_denied_fail_the_call_and_the_turn_goes_on(calendar, oauth, receiver):
    live = calendar
    live.script([("tool_call", {"id": "a", "name": "agenda", "arguments": "{}"})], [("text", "No calendar, then.")])
    created = live.start_session("My calendar?", title="Calendar", user_id="carol")
    head = live.read_stream(created["stream_url"], until="data-connection-auth-required")
    required = head.events[-1].data["data"]

    rejected = live.api("POST", required["reject_url"].split("/api/v1/", 1)[1])
    rest = live.read_stream(created["stream_url"], last_event_id=head.ids[-1])

    assert rejected.json() == {"attempt_id": required["attempt_id"], "status": "rejected"}
    (error,) = [e.data for e in rest.events if e.type == "tool-output-error"]
    assert error["errorText"] == "connection declined"
    assert rest.text == "No calendar, then."

    rescript(live, [("tool_call", {"id": "b", "name": "agenda", "arguments": "{}"})], [("text", "Denied, fine.")])
    oauth.deny = True
    turn = live.api("POST", f"sessions/{created['uuid']}/messages", json={"text": "Try again"}).json()
    wait_status(turn["run_uuid"], Run.Status.REQUIRES_ACTION)
    (action,) = live.api("GET", f"sessions/{created['uuid']}").json()["pending_actions"]
    auth = live.api("POST", action["url"].split("/api/v1/", 1)[1]).json()["auth_link"]["url"]
    page = follow_browser_leg(live, auth)
    run = live.wait_run(turn["run_uuid"])

    assert page.status_code == 200
    assert "Not connected" in page.text
    assert run.status == Run.Status.SUCCEEDED
    assert receiver.calls == []


def test_expired_token_is_refreshed_and_a_refused_refresh_asks_again(calendar, oauth, receiver):
    live = calendar
    live.script([("tool_call", {"id": "a", "name": "agenda", "arguments": "{}"})], [("text", "ok")])
    created = live.start_session("Calendar", title="Calendar", user_id="dave")
    head = live.read_stream(created["stream_url"], until="data-connection-auth-required")
    follow_browser_leg(live, head.events[-1].data["data"]["auth_link"]["url"])
    live.wait_run(created["run_uuid"])
    Connection.objects.update(expires_at=timezone.now() - timedelta(minutes=5))

    rescript(live, [("tool_call", {"id": "b", "name": "agenda", "arguments": "{}"})], [("text", "refreshed")])
    refreshed = live.api("POST", f"sessions/{created['uuid']}/messages", json={"text": "Again"}).json()
    run = live.wait_run(refreshed["run_uuid"])

    assert run.status == Run.Status.SUCCEEDED
    assert [r["grant_type"] for r in oauth.token_requests] == ["authorization_code", "refresh_token"]
    assert receiver.authorizations[-1] == f"Bearer {oauth.issued[-1]['access_token']}"

    Connection.objects.update(expires_at=timezone.now() - timedelta(minutes=5))
    oauth.refuse_refresh = True
    rescript(live, [("tool_call", {"id": "c", "name": "agenda", "arguments": "{}"})], [("text", "paused")])
    refused = live.api("POST", f"sessions/{created['uuid']}/messages", json={"text": "Once more"}).json()
    waiting = wait_status(refused["run_uuid"], Run.Status.REQUIRES_ACTION)

    (action,) = live.api("GET", f"sessions/{created['uuid']}").json()["pending_actions"]
    assert waiting.status == Run.Status.REQUIRES_ACTION
    assert action["type"] == "connection"
    live.api("POST", f"sessions/{created['uuid']}/stream/stop")


def test_the_browser_leg_in_headless_chromium(calendar, oauth, receiver):
    live = calendar
    oauth.auto_approve = False  # the provider shows its consent page; the user clicks Allow
    oauth.login_as = "erin"
    live.script([("tool_call", {"id": "a", "name": "agenda", "arguments": "{}"})], [("text", "Done.")])
    created = live.start_session("Calendar", title="Calendar", user_id="erin")
    head = live.read_stream(created["stream_url"], until="data-connection-auth-required")
    auth_url = head.events[-1].data["data"]["auth_link"]["url"]
    cookies = [{"name": name, "value": value, "url": live.base_url} for name, value in signed_in(live).items()]

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (make test does)"
    with sync_playwright() as playwright:  # no database work in here (Playwright runs an event loop)
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.add_cookies(cookies)  # the user is signed in to Genie
            page = context.new_page()
            page.goto(auth_url)
            page.click("#allow")
            page.wait_for_selector("#outcome[data-outcome=connected]", timeout=15_000)
            landed, body = page.url, page.inner_text("body")
        finally:
            browser.close()
    rest = live.read_stream(created["stream_url"], last_event_id=head.ids[-1])

    assert landed.startswith(f"{live.base_url}/api/v1/connections/callback")
    assert "You may close this window" in body
    assert "data-connection-auth-success" in rest.types
    assert rest.text == "Done."
    assert receiver.authorizations == [f"Bearer {oauth.access_tokens_of('erin')[0]}"]
