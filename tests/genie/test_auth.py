from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from genie.models import AccessToken
from genie.services import create_access_token
from runs.sse import NOT_AUTHENTICATED, StreamPlan, StreamRefusal, plan_stream
from tests.conftest import bearer_client
from tests.factories import AgentFactory, MemberFactory, MessageFactory, SessionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_session(member, agent):
    return SessionFactory(agent=agent, owner=member.user)


def test_no_credentials_is_401_with_bearer_challenge(agent):
    response = APIClient().get("/api/v1/sessions")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer nope", "Bearer gp_" + "x" * 40, "Bearer ", "Token abc"])
def test_bad_token_is_401(agent, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    assert client.get("/api/v1/sessions").status_code == 401


def test_revoked_and_expired_tokens_are_401(member, agent):
    revoked, revoked_key = create_access_token(team=member.team, kind="personal", user=member.user)
    revoked.revoke()
    _, expired_key = create_access_token(
        team=member.team, kind="personal", user=member.user, expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert bearer_client(revoked_key).get("/api/v1/sessions").status_code == 401
    assert bearer_client(expired_key).get("/api/v1/sessions").status_code == 401


def test_token_is_stored_hashed_and_tracks_last_use(api, personal_key):
    token = AccessToken.objects.get()

    api.get("/api/v1/sessions")

    token.refresh_from_db()
    assert personal_key not in (token.key_hash, token.prefix)
    assert token.matches(personal_key)
    assert token.last_used_at is not None


def test_cookie_auth_reads_and_enforces_csrf_on_writes(member, agent, own_session):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(member.user)

    listed = client.get("/api/v1/sessions")
    refused = client.post("/api/v1/sessions", {"text": "hi"}, format="json")
    client.get("/admin/login/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    allowed = client.post("/api/v1/sessions", {"text": "hi"}, format="json", HTTP_X_CSRFTOKEN=token)

    assert listed.status_code == 200
    assert listed.json()["count"] == 1
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert allowed.status_code == 201


def test_other_users_and_teams_objects_are_404(api, member, agent):
    teammate_session = SessionFactory(agent=agent)  # same team, another owner
    other_team_session = SessionFactory(agent=AgentFactory())
    for session in (teammate_session, other_team_session):
        message = MessageFactory(session=session, sender_role="agent")
        base = f"/api/v1/sessions/{session.uuid}"
        assert api.get(base).status_code == 404
        assert api.patch(base, {"title": "x"}, format="json").status_code == 404
        assert api.delete(base).status_code == 404
        assert api.get(f"{base}/messages").status_code == 404
        assert api.post(f"{base}/messages", {"text": "x"}, format="json").status_code == 404
        assert api.get(f"{base}/messages/{message.uuid}").status_code == 404
        assert (
            api.post(f"{base}/messages/{message.uuid}/feedback", {"rating": "positive"}, format="json").status_code
            == 404
        )
        assert api.post(f"{base}/stream/stop").status_code == 404
    assert teammate_session.messages.count() == 1


def test_create_token_command_prints_a_working_key(agent, capsys):
    call_command("create_token", "carol", "--team", agent.team.slug)
    key = capsys.readouterr().out.strip()

    assert key.startswith("gp_")
    assert bearer_client(key).get("/api/v1/sessions").status_code == 200


def test_user_without_team_cannot_use_the_api(agent):
    member = MemberFactory()
    client = APIClient()
    client.force_login(member.user)
    member.delete()

    response = client.get("/api/v1/sessions")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "no_team"


# --- cached bearer keys (genie.auth.BearerKeyCache): stream opens and the REST API -----


def open_session_stream(key: str, session) -> StreamPlan | StreamRefusal:
    return plan_stream(
        headers={b"authorization": f"Bearer {key}".encode()},
        query={},
        session_uuid=str(session.uuid),
        run_uuid=None,
        client=("127.0.0.1", 5555),
    )


def token_lookups(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if 'FROM "genie_accesstoken"' in q["sql"]]


def test_a_stream_open_serves_a_known_key_without_a_query(member, agent, own_session, personal_key):
    open_session_stream(personal_key, own_session)  # looks the key up and keeps it

    with CaptureQueriesContext(connection) as queries:
        refusal = open_session_stream(personal_key, own_session)

    assert refusal == StreamRefusal(204)  # found the session: it has no active run
    assert token_lookups(queries) == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda token: token.revoke(), id="revoked"),
        pytest.param(lambda token: setattr(token.user, "is_active", False) or token.user.save(), id="user-deactivated"),
        pytest.param(lambda token: token.user.member.delete(), id="removed-from-team"),
        pytest.param(lambda token: token.delete(), id="deleted"),
    ],
)
def test_a_cached_key_is_refused_at_once_after_it_loses_its_reach(member, agent, own_session, personal_key, change):
    assert open_session_stream(personal_key, own_session) == StreamRefusal(204)  # cached now

    change(AccessToken.objects.select_related("user__member").get())

    assert open_session_stream(personal_key, own_session) == NOT_AUTHENTICATED


def test_a_cached_key_is_refused_once_it_expires(member, agent, own_session, personal_key, monkeypatch):
    AccessToken.objects.update(expires_at=timezone.now() + timedelta(minutes=5))  # no signal: the cache holds on
    assert open_session_stream(personal_key, own_session) == StreamRefusal(204)

    later = timezone.now() + timedelta(minutes=6)
    monkeypatch.setattr(timezone, "now", lambda: later)

    assert open_session_stream(personal_key, own_session) == NOT_AUTHENTICATED


def test_without_redis_every_stream_open_looks_the_key_up(member, agent, own_session, personal_key, monkeypatch):
    open_session_stream(personal_key, own_session)
    monkeypatch.setattr("runs.sse.auth_epoch", lambda: None)  # what auth_epoch says when Redis is down

    with CaptureQueriesContext(connection) as queries:
        assert open_session_stream(personal_key, own_session) == StreamRefusal(204)

    assert len(token_lookups(queries)) == 1


def test_the_rest_api_serves_a_known_key_without_a_query_and_refuses_it_at_once_when_revoked(member, personal_key):
    client = bearer_client(personal_key)
    assert client.get("/api/v1/sessions").status_code == 200  # looks the key up and keeps it

    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/sessions").status_code == 200
    assert token_lookups(queries) == []

    AccessToken.objects.get().revoke()

    response = client.get("/api/v1/sessions")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
