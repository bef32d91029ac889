"""Runtime connections in-process: a scripted model, a real OAuth 2.0 authorization server
on loopback (tests/oauthserver.py), a real webhook receiver that records the bearer token,
and the API through Django's test client. The pause, the browser leg (followed with httpx
up to Genie's callback), the resume with the user's token, reject, access denied, refresh
(granted and refused), forged and replayed states, scoping, and what never leaves the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.db import connection as db
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from chat.models import Session
from genie.encryption import decrypt
from genie.models import AccessToken
from genie.services import create_access_token
from runs import loop
from runs.connections import end_user_of
from runs.models import Connection, ConnectionAttempt, ConnectionProvider, Run, ToolCall
from tests.conftest import bearer_client
from tests.factories import AgentFactory, MemberFactory, RunFactory, TeamFactory
from tests.oauthserver import OAuthServer
from tests.runs.conftest import published_data, published_types, text, tool_call
from tests.webhooks import WebhookReceiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_settings")]

SCHEMA = {"type": "object", "properties": {"day": {"type": "string"}}}


def sk_client(team) -> APIClient:
    _, key = create_access_token(team=team, kind=AccessToken.Kind.SECRET)
    return bearer_client(key)


def calendar_run(
    receiver: WebhookReceiver, oauth: OAuthServer, *, user_id: str = "alice", team=None, **session: object
) -> Run:
    """A queued run whose agent has a webhook tool acting with the user's calendar
    connection; ``session``: more fields of its session (``owner``, ``created_by_token``)."""
    tool = {"name": "agenda", "kind": "webhook", "url": receiver.url, "input_schema": SCHEMA, "connection": "calendar"}
    extra = {"session__agent__team": team} if team is not None else {}
    extra.update({f"session__{name}": value for name, value in session.items()})
    run = RunFactory(session__agent__tools=[tool], session__user_id=user_id, **extra)
    receiver.secret = run.session.agent.webhook_secret
    ConnectionProvider.objects.get_or_create(
        team=run.session.team,
        slug="calendar",
        defaults={
            "name": "Test Calendar",
            "authorize_url": f"{oauth.base_url}/authorize",
            "token_url": f"{oauth.base_url}/token",
            "client_id": oauth.client_id,
            "client_secret": oauth.client_secret,
            "scopes": ["calendar.read"],
        },
    )
    return run


def next_run(first: Run) -> Run:
    """The session's next turn (its messages in the same session)."""
    return RunFactory(session=first.session, user_message__session=first.session, agent_message__session=first.session)


def reload(run: Run) -> Run:
    return Run.objects.select_related("agent_message", "session").get(pk=run.pk)


def open_through_genie(client, auth_url: str):
    """The auth link is Genie's: it binds the link to this browser (the test client keeps
    the cookie) and redirects to the provider."""
    parts = urlsplit(auth_url)
    return client.get(f"{parts.path}?{parts.query}")


def provider_leg(client, provider_url: str) -> tuple[int, str, str]:
    """The provider redirects the browser to Genie's callback (httpx follows the provider;
    the callback is served by Django's test client, with its cookies)."""
    answer = httpx.get(provider_url, follow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    parts = urlsplit(location)
    page = client.get(f"{parts.path}?{parts.query}")
    return page.status_code, page.content.decode(), location


def browser_leg(client, auth_url: str) -> tuple[int, str, str]:
    """What a browser does with the auth link: Genie, the provider, Genie's callback."""
    opened = open_through_genie(client, auth_url)
    if opened.status_code != 302:
        return opened.status_code, opened.content.decode(), ""
    return provider_leg(client, opened["Location"])


def auth_required(run: Run) -> dict:
    (data,) = published_data(run, "data-connection-auth-required")[-1:]
    return data["data"]


def test_a_tool_with_a_connection_pauses_then_runs_with_the_users_token(script, enqueued, receiver, oauth, client):
    run = calendar_run(receiver, oauth)
    provider = script(tool_call("agenda", '{"day": "monday"}'), text("You have two meetings."))

    loop.execute_run(run.pk)

    run = reload(run)
    call = ToolCall.objects.get(run=run)
    event = auth_required(run)
    attempt = ConnectionAttempt.objects.get()
    assert run.status == Run.Status.REQUIRES_ACTION
    assert call.status == ToolCall.Status.AWAITING_CONNECTION
    assert receiver.calls == []
    assert event["attempt_id"] == str(attempt.attempt_id)
    assert (event["provider"], event["call_id"]) == ("calendar", call.call_id)
    assert event["link_url"] == f"http://127.0.0.1:8000/api/v1/connections/{attempt.attempt_id}/link"
    assert event["reject_url"] == f"http://127.0.0.1:8000/api/v1/connections/{attempt.attempt_id}/reject"
    assert event["auth_link"]["url"].startswith("http://127.0.0.1:8000/api/v1/connections/authorize?state=")
    query = parse_qs(urlsplit(event["auth_link"]["url"]).query)
    assert query["state"][0] not in json.dumps(attempt.links)  # only its hash is stored
    provider_url = open_through_genie(client, event["auth_link"]["url"])["Location"]
    query = parse_qs(urlsplit(provider_url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == ["http://127.0.0.1:8000/api/v1/connections/callback"]
    assert query["state"][0].startswith(attempt.attempt_id.hex + ".")
    assert query["state"][0] not in json.dumps(attempt.links)  # only its hash is stored
    assert event["auth_link"]["expires_at"] == run.action_expires_at.isoformat().replace("+00:00", "Z")
    detail = sk_client(run.session.team).get(f"/api/v1/sessions/{run.session.uuid}").json()
    assert detail["pending_actions"][0]["type"] == "connection"
    assert detail["pending_actions"][0]["url"].endswith(f"/connections/{attempt.attempt_id}/link")

    status, page, _ = provider_leg(client, provider_url)

    assert status == 200
    assert "you may close this window" in page.lower()
    assert enqueued["continue_run"] == [run.pk]
    loop.execute_run(run.pk)  # the continuation
    run = reload(run)
    (token,) = oauth.access_tokens_of("alice")
    assert run.status == Run.Status.SUCCEEDED
    assert receiver.authorizations == [f"Bearer {token}"]
    types = published_types(run)
    assert types.count("data-connection-auth-success") == 1
    assert types.index("data-connection-auth-success") < types.index("tool-output-available")
    assert published_data(run, "data-connection-auth-success")[0]["data"] == {
        "attempt_id": str(attempt.attempt_id),
        "provider": "calendar",
    }
    assert json.loads(provider.requests[1].messages[-1]["content"]) == {"echo": {"day": "monday"}}
    assert oauth.token_requests[0]["code_verifier"]  # PKCE: the exchange carried the verifier
    with db.cursor() as cursor:  # encrypted at rest
        cursor.execute("SELECT access_token, refresh_token FROM runs_connection")
        ((stored_access, stored_refresh),) = cursor.fetchall()
    assert token not in stored_access
    assert decrypt(stored_access) == token
    assert decrypt(stored_refresh).startswith("rt-alice-")


def test_the_next_call_reuses_the_connection_without_a_pause(script, enqueued, receiver, oauth, client):
    first = calendar_run(receiver, oauth)
    script(tool_call("agenda", "{}"), text("ok"))
    loop.execute_run(first.pk)
    browser_leg(client, auth_required(first)["auth_link"]["url"])
    loop.execute_run(first.pk)

    second = next_run(first)
    script(tool_call("agenda", "{}"), text("still ok"))
    loop.execute_run(second.pk)

    assert reload(second).status == Run.Status.SUCCEEDED
    assert "data-connection-auth-required" not in published_types(second)
    assert len(receiver.authorizations) == 2
    assert receiver.authorizations[0] == receiver.authorizations[1]
    assert len(oauth.issued) == 1


def test_reject_fails_the_call_and_the_turn_goes_on(script, enqueued, receiver, oauth):
    run = calendar_run(receiver, oauth)
    provider = script(tool_call("agenda", "{}"), text("Without your calendar I cannot tell."))
    loop.execute_run(run.pk)
    event = auth_required(run)
    api = sk_client(run.session.team)

    answer = api.post(f"/api/v1/connections/{event['attempt_id']}/reject")
    again = api.post(f"/api/v1/connections/{event['attempt_id']}/reject")
    link = api.post(f"/api/v1/connections/{event['attempt_id']}/link")

    assert answer.status_code == 200
    assert answer.json() == {"attempt_id": event["attempt_id"], "status": "rejected"}
    assert again.status_code == 200
    assert link.status_code == 409
    assert link.json()["error"]["code"] == "connection_attempt_closed"
    assert enqueued["continue_run"] == [run.pk]
    loop.execute_run(run.pk)
    run = reload(run)
    assert run.status == Run.Status.SUCCEEDED
    assert published_data(run, "tool-output-error")[0]["errorText"] == "connection declined"
    assert "declined" in provider.requests[1].messages[-1]["content"]
    assert receiver.calls == []
    assert not Connection.objects.exists()


def test_access_denied_at_the_provider_counts_as_a_reject(script, enqueued, receiver, oauth, client):
    run = calendar_run(receiver, oauth)
    script(tool_call("agenda", "{}"), text("Fine."))
    loop.execute_run(run.pk)
    oauth.deny = True

    status, page, location = browser_leg(client, auth_required(run)["auth_link"]["url"])

    assert "error=access_denied" in location
    assert status == 200
    assert "Not connected" in page
    assert ConnectionAttempt.objects.get().status == ConnectionAttempt.Status.REJECTED
    assert ToolCall.objects.get(run=run).error == "connection declined"
    assert enqueued["continue_run"] == [run.pk]


def test_link_gives_a_new_link_and_then_says_authorized(script, enqueued, receiver, oauth, client):
    run = calendar_run(receiver, oauth)
    script(tool_call("agenda", "{}"), text("ok"))
    loop.execute_run(run.pk)
    event = auth_required(run)
    api = sk_client(run.session.team)

    linked = api.post(f"/api/v1/connections/{event['attempt_id']}/link").json()
    status, _, _ = browser_leg(client, linked["auth_link"]["url"])  # the new link works
    done = api.post(f"/api/v1/connections/{event['attempt_id']}/link").json()
    stale, _, _ = browser_leg(client, event["auth_link"]["url"])  # the attempt is settled: no link works

    assert linked["status"] == "auth_required"
    assert linked["auth_link"]["url"] != event["auth_link"]["url"]
    assert linked["attempt_id"] == event["attempt_id"]
    assert status == 200
    assert done == {"attempt_id": event["attempt_id"], "status": "authorized"}
    assert stale == 400


def test_forged_and_replayed_states_are_refused_and_change_nothing(script, enqueued, receiver, oauth, client):
    run = calendar_run(receiver, oauth)
    script(tool_call("agenda", "{}"), text("ok"))
    loop.execute_run(run.pk)
    attempt = ConnectionAttempt.objects.get()
    opened = open_through_genie(client, auth_required(run)["auth_link"]["url"])
    answer = httpx.get(opened["Location"], follow_redirects=False, timeout=10)
    callback = urlsplit(answer.headers["location"])
    code = parse_qs(callback.query)["code"][0]

    forged = client.get("/api/v1/connections/callback", {"code": code, "state": f"{attempt.attempt_id.hex}.guess"})
    garbage = client.get("/api/v1/connections/callback", {"code": code, "state": "nonsense"})
    missing = client.get("/api/v1/connections/callback", {"code": code})

    assert (forged.status_code, garbage.status_code, missing.status_code) == (400, 400, 400)
    assert "not valid" in forged.content.decode()
    assert forged["content-type"].startswith("text/html")
    assert ConnectionAttempt.objects.get().status == ConnectionAttempt.Status.AUTH_REQUIRED
    assert enqueued["continue_run"] == []

    first = client.get(f"{callback.path}?{callback.query}")
    replayed = client.get(f"{callback.path}?{callback.query}")

    assert first.status_code == 200
    assert replayed.status_code == 400
    assert len(oauth.issued) == 1
    assert enqueued["continue_run"] == [run.pk]


def test_an_expired_attempt_is_refused(script, enqueued, receiver, oauth, client):
    run = calendar_run(receiver, oauth)
    script(tool_call("agenda", "{}"), text("ok"))
    loop.execute_run(run.pk)
    ConnectionAttempt.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    status, _, _ = browser_leg(client, auth_required(run)["auth_link"]["url"])

    assert status == 400
    assert not Connection.objects.exists()
    assert ToolCall.objects.get(run=run).status == ToolCall.Status.AWAITING_CONNECTION
    link = sk_client(run.session.team).post(f"/api/v1/connections/{auth_required(run)['attempt_id']}/link")
    assert link.status_code == 409


def test_another_teams_attempt_is_not_found(script, enqueued, receiver, oauth):
    run = calendar_run(receiver, oauth)
    script(tool_call("agenda", "{}"), text("ok"))
    loop.execute_run(run.pk)
    attempt_id = auth_required(run)["attempt_id"]
    other = sk_client(TeamFactory())

    assert other.post(f"/api/v1/connections/{attempt_id}/link").status_code == 404
    assert other.post(f"/api/v1/connections/{attempt_id}/reject").status_code == 404
    assert ConnectionAttempt.objects.get().status == ConnectionAttempt.Status.AUTH_REQUIRED


def test_an_expired_token_is_refreshed_without_a_pause(script, enqueued, receiver, oauth, client):
    first = calendar_run(receiver, oauth)
    script(tool_call("agenda", "{}"), text("ok"))
    loop.execute_run(first.pk)
    browser_leg(client, auth_required(first)["auth_link"]["url"])
    loop.execute_run(first.pk)
    Connection.objects.update(expires_at=timezone.now() - timedelta(minutes=1))

    second = next_run(first)
    script(tool_call("agenda", "{}"), text("ok again"))
    loop.execute_run(second.pk)

    assert reload(second).status == Run.Status.SUCCEEDED
    assert "data-connection-auth-required" not in published_types(second)
    assert [request["grant_type"] for request in oauth.token_requests] == ["authorization_code", "refresh_token"]
    refreshed = oauth.issued[-1]["access_token"]
    assert receiver.authorizations[-1] == f"Bearer {refreshed}"
    assert Connection.objects.get().expires_at > timezone.now()


def test_a_refused_refresh_asks_the_user_again(script, enqueued, receiver, oauth, client):
    first = calendar_run(receiver, oauth)
    script(tool_call("agenda", "{}"), text("ok"))
    loop.execute_run(first.pk)
    browser_leg(client, auth_required(first)["auth_link"]["url"])
    loop.execute_run(first.pk)
    Connection.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    oauth.refuse_refresh = True

    second = next_run(first)
    script(tool_call("agenda", "{}"), text("ok again"))
    loop.execute_run(second.pk)

    second = reload(second)
    assert second.status == Run.Status.REQUIRES_ACTION
    event = auth_required(second)
    assert ConnectionAttempt.objects.count() == 2  # a new attempt: the first one is authorized
    assert str(ConnectionAttempt.objects.earliest("created_at").attempt_id) != event["attempt_id"]
    assert Connection.objects.get().access_token == ""  # the refused tokens are dropped
    oauth.refuse_refresh = False
    browser_leg(client, event["auth_link"]["url"])
    loop.execute_run(second.pk)
    assert reload(second).status == Run.Status.SUCCEEDED
    assert receiver.authorizations[-1] == f"Bearer {oauth.issued[-1]['access_token']}"


def test_two_users_of_one_team_act_with_their_own_tokens(script, enqueued, receiver, oauth, client):
    alice = calendar_run(receiver, oauth, user_id="alice")
    bob = RunFactory(session__agent=alice.session.agent, session__user_id="bob")
    for run, user in ((alice, "alice"), (bob, "bob")):
        script(tool_call("agenda", "{}"), text("ok"))
        loop.execute_run(run.pk)
        oauth.login_as = user
        browser_leg(client, auth_required(run)["auth_link"]["url"])
        loop.execute_run(run.pk)

    (alice_token,) = oauth.access_tokens_of("alice")
    (bob_token,) = oauth.access_tokens_of("bob")
    assert receiver.authorizations == [f"Bearer {alice_token}", f"Bearer {bob_token}"]
    assert [call["user_id"] for call in receiver.calls] == ["alice", "bob"]
    listed = sk_client(alice.session.team).get("/api/v1/connections", {"user_id": "bob"}).json()
    assert [item["user_id"] for item in listed["results"]] == ["bob"]


def test_a_pending_attempt_is_reused_for_the_same_user_and_provider(script, enqueued, receiver, oauth, client):
    run = calendar_run(receiver, oauth)
    script(
        tool_call("agenda", "{}", index=0, call_id="a") + tool_call("agenda", "{}", index=1, call_id="b"), text("ok")
    )

    loop.execute_run(run.pk)

    events = [e["data"] for e in published_data(run, "data-connection-auth-required")]
    assert len(events) == 2
    assert events[0]["attempt_id"] == events[1]["attempt_id"]
    assert ConnectionAttempt.objects.count() == 1
    browser_leg(client, events[0]["auth_link"]["url"])
    assert enqueued["continue_run"] == [run.pk]
    loop.execute_run(run.pk)
    assert reload(run).status == Run.Status.SUCCEEDED
    assert published_types(run).count("data-connection-auth-success") == 1
    assert len(receiver.calls) == 2


def test_stop_while_waiting_expires_the_attempt(script, enqueued, receiver, oauth, client):
    run = calendar_run(receiver, oauth)
    script(tool_call("agenda", "{}"), text("ok"))
    loop.execute_run(run.pk)

    stopped = sk_client(run.session.team).post(f"/api/v1/sessions/{run.session.uuid}/stream/stop")

    assert stopped.json()["stopped"] is True
    assert ConnectionAttempt.objects.get().status == ConnectionAttempt.Status.EXPIRED
    status, _, _ = browser_leg(client, auth_required(run)["auth_link"]["url"])
    assert status == 400


def test_a_session_without_an_end_user_fails_the_call(script, enqueued, receiver, oauth):
    run = calendar_run(receiver, oauth, user_id="")
    script(tool_call("agenda", "{}"), text("ok"))

    loop.execute_run(run.pk)

    assert reload(run).status == Run.Status.SUCCEEDED
    assert "user_id" in ToolCall.objects.get(run=run).error


def test_tokens_and_secrets_never_leave_the_server(script, enqueued, receiver, oauth, client):
    run = calendar_run(receiver, oauth)
    script(tool_call("agenda", "{}"), text("ok"))
    loop.execute_run(run.pk)
    browser_leg(client, auth_required(run)["auth_link"]["url"])
    loop.execute_run(run.pk)
    api = sk_client(run.session.team)
    token = oauth.issued[0]

    answers = [
        api.get("/api/v1/connections"),
        api.get("/api/v1/connection-providers"),
        api.get("/api/v1/connection-providers/calendar"),
        api.get(f"/api/v1/sessions/{run.session.uuid}/events"),
        api.get(f"/api/v1/sessions/{run.session.uuid}/messages"),
        api.get(f"/api/v1/sessions/{run.session.uuid}"),
    ]

    for answer in answers:
        assert answer.status_code == 200
        body = answer.content.decode()
        for secret in (token["access_token"], token["refresh_token"], oauth.client_secret):
            assert secret not in body
    (listed,) = answers[0].json()["results"]
    assert set(listed) == {"uuid", "provider", "user_id", "scope", "expires_at", "expired", "created_at", "updated_at"}
    assert "client_secret" not in answers[2].json()


def test_connection_providers_api(secret_api, api, settings):
    body = {
        "slug": "crm",
        "name": "CRM",
        "authorize_url": "https://crm.example/oauth/authorize",
        "token_url": "https://crm.example/oauth/token",
        "client_id": "abc",
        "client_secret": "s3cret",
        "scopes": ["contacts"],
    }
    created = secret_api.post("/api/v1/connection-providers", body, format="json")
    twice = secret_api.post("/api/v1/connection-providers", body, format="json")
    patched = secret_api.patch("/api/v1/connection-providers/crm", {"name": "The CRM"}, format="json")
    settings.GENIE_EGRESS_ALLOW = ""
    internal = secret_api.post(
        "/api/v1/connection-providers",
        {**body, "slug": "inside", "token_url": "http://127.0.0.1:9/token"},
        format="json",
    )
    personal = api.get("/api/v1/connection-providers")
    deleted = secret_api.delete("/api/v1/connection-providers/crm")

    assert created.status_code == 201, created.json()
    assert "client_secret" not in created.json()
    assert twice.status_code == 400
    assert patched.json()["name"] == "The CRM"
    assert internal.status_code == 400
    assert internal.json()["error"]["details"]["token_url"]
    assert personal.status_code == 403
    assert deleted.status_code == 204
    assert not ConnectionProvider.objects.exists()


def test_delete_revokes_a_connection_and_users_see_only_their_own(script, enqueued, receiver, oauth, client, member):
    run = calendar_run(receiver, oauth, user_id=str(member.uuid), team=member.team)
    script(tool_call("agenda", "{}"), text("ok"))
    loop.execute_run(run.pk)
    browser_leg(client, auth_required(run)["auth_link"]["url"])
    _, key = create_access_token(team=member.team, kind=AccessToken.Kind.PERSONAL, user=member.user)
    mine = bearer_client(key)
    other = RunFactory(session__agent__team=member.team, session__user_id="someone-else")
    Connection.objects.create(team=member.team, provider=ConnectionProvider.objects.get(), user_id="someone-else")
    assert other.session.team == member.team

    listed = mine.get("/api/v1/connections").json()["results"]
    revoked = mine.delete(f"/api/v1/connections/{listed[0]['uuid']}")

    assert [item["user_id"] for item in listed] == [str(member.uuid)]
    assert revoked.status_code == 204
    assert mine.get("/api/v1/connections").json()["results"] == []
    assert Connection.objects.get(user_id=str(member.uuid)).access_token == ""


def test_production_refuses_to_start_without_an_encryption_key():
    env = {k: v for k, v in os.environ.items() if k != "GENIE_ENCRYPTION_KEY"}
    env.update(DJANGO_SETTINGS_MODULE="genie.settings", GENIE_PUBLIC_URL="https://genie.example")
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "GENIE_ENCRYPTION_KEY is not set" in result.stderr


def test_a_rotated_key_reads_old_secrets_and_rotate_encryption_rewrites_them(settings, oauth):
    from cryptography.fernet import Fernet

    from runs.connections import reencrypt_secrets

    old_key, new_key = settings.GENIE_ENCRYPTION_KEY[0], Fernet.generate_key().decode()
    provider = ConnectionProvider.objects.create(
        team=TeamFactory(), slug="crm", name="CRM", authorize_url="https://a.example", token_url="https://a.example"
    )
    provider.client_secret = "s3cret"
    provider.save()
    settings.GENIE_ENCRYPTION_KEY = [new_key, old_key]  # prepend the new key

    assert ConnectionProvider.objects.get().client_secret == "s3cret"
    assert reencrypt_secrets() == 1
    settings.GENIE_ENCRYPTION_KEY = [new_key]  # the old key is gone
    assert ConnectionProvider.objects.get().client_secret == "s3cret"


def test_the_end_user_is_only_who_the_sessions_creator_can_vouch_for(team, member):
    agent = AgentFactory(team=team)
    publishable, _ = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)
    secret, _ = create_access_token(team=team, kind=AccessToken.Kind.SECRET)
    by_visitor = Session.objects.create(team=team, agent=agent, created_by_token=publishable, user_id="victim")
    by_server = Session.objects.create(team=team, agent=agent, created_by_token=secret, user_id="customer-42")
    by_user = Session.objects.create(team=team, agent=agent, owner=member.user, user_id="victim")

    assert end_user_of(by_visitor) == f"session:{by_visitor.uuid}"  # a browser cannot claim "victim"
    assert end_user_of(by_server) == "customer-42"
    assert end_user_of(by_user) == str(member.uuid)


def test_a_link_completes_only_in_the_browser_that_opened_it(script, enqueued, receiver, oauth, client):
    # Issue 26, finding 11: the provider's URL, copied out of the browser that opened the
    # link and sent to a victim, would connect the victim's account to the sender's user.
    run = calendar_run(receiver, oauth)
    script(tool_call("agenda", "{}"), text("ok"))
    loop.execute_run(run.pk)
    event = auth_required(run)
    provider_url = open_through_genie(client, event["auth_link"]["url"])["Location"]
    victim = Client()

    forwarded, page, _ = provider_leg(victim, provider_url)
    reopened = open_through_genie(victim, event["auth_link"]["url"])

    assert forwarded == 400
    assert "Started in another browser" in page
    assert reopened.status_code == 400  # one browser per link
    assert ConnectionAttempt.objects.get().status == ConnectionAttempt.Status.AUTH_REQUIRED
    assert not Connection.objects.exists()
    assert enqueued["continue_run"] == []

    # Another device asks the app for a fresh link, which it opens itself.
    fresh = sk_client(run.session.team).post(f"/api/v1/connections/{event['attempt_id']}/link").json()
    on_the_phone, _, _ = browser_leg(Client(), fresh["auth_link"]["url"])

    assert on_the_phone == 200
    assert ConnectionAttempt.objects.get().status == ConnectionAttempt.Status.AUTHORIZED
    assert enqueued["continue_run"] == [run.pk]


def test_a_signed_in_users_link_opens_only_in_a_browser_signed_in_as_that_user(
    script, enqueued, receiver, oauth, team
):
    """Issue 26, finding 11: a link nobody opened yet, sent to a victim, would bind to the
    victim's browser and connect the victim's account to the sender's user. The link is
    the requester's: a browser signed in as someone else is refused, an anonymous one is
    sent to sign in first, and the user who asked for it connects."""
    asker, victim = MemberFactory(team=team), MemberFactory(team=team)
    run = calendar_run(receiver, oauth, team=team, owner=asker.user)
    script(tool_call("agenda", "{}"), text("ok"))
    loop.execute_run(run.pk)
    link = auth_required(run)["auth_link"]["url"]
    victims_browser, anonymous, askers_browser = Client(), Client(), Client()
    victims_browser.force_login(victim.user)
    askers_browser.force_login(asker.user)

    refused = open_through_genie(victims_browser, link)
    sign_in = open_through_genie(anonymous, link)

    assert refused.status_code == 400
    assert "made for someone else" in refused.content.decode()
    assert sign_in.status_code == 302
    assert sign_in["Location"].startswith("/login/?next=/api/v1/connections/authorize")
    assert ConnectionAttempt.objects.get().status == ConnectionAttempt.Status.AUTH_REQUIRED
    assert not Connection.objects.exists()

    status, page, _ = browser_leg(askers_browser, link)  # the same link, never opened until now

    assert status == 200, page
    assert ConnectionAttempt.objects.get().status == ConnectionAttempt.Status.AUTHORIZED
    assert Connection.objects.get().user_id == str(asker.uuid)
    assert enqueued["continue_run"] == [run.pk]


def test_a_visitors_link_opens_only_with_its_sessions_client_secret(script, enqueued, receiver, oauth, team):
    """A publishable key's visitor: the link (GET, as a victim would open it) is refused;
    the visitor's client opens it with the session's secret (POST) and connects."""
    publishable, _ = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)
    run = calendar_run(receiver, oauth, team=team, created_by_token=publishable)
    secret = run.session.issue_client_secret()
    run.session.save(update_fields=["client_secret_hash"])
    script(tool_call("agenda", "{}"), text("ok"))
    loop.execute_run(run.pk)
    link = urlsplit(auth_required(run)["auth_link"]["url"])
    state = parse_qs(link.query)["state"][0]

    victim = open_through_genie(Client(), link.geturl())
    wrong = Client().post(link.path, {"state": state, "session_secret": "cs_guessed"})
    visitor = Client()
    opened = visitor.post(link.path, {"state": state, "session_secret": secret})

    assert victim.status_code == wrong.status_code == 400
    assert "made for someone else" in victim.content.decode()
    assert opened.status_code == 302
    status, page, _ = provider_leg(visitor, opened["Location"])
    assert status == 200, page
    assert ConnectionAttempt.objects.get().status == ConnectionAttempt.Status.AUTHORIZED
    assert Connection.objects.get().user_id == f"session:{run.session.uuid}"


def test_a_link_whose_session_was_deleted_opens_for_nobody(script, enqueued, receiver, oauth, client):
    run = calendar_run(receiver, oauth)
    script(tool_call("agenda", "{}"), text("ok"))
    loop.execute_run(run.pk)
    link = auth_required(run)["auth_link"]["url"]
    Session.objects.filter(pk=run.session_id).delete()

    assert open_through_genie(client, link).status_code == 400
    assert not Connection.objects.exists()
