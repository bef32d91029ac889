"""Every credential by endpoint by object, generated so no cell is forgotten.

Objects live in team A: a session of the member user, a session created by the team's
publishable key, a session of another member, and a session of team B. Credentials:
team A's secret key, its publishable key with and without that session's client secret,
the member's personal token and cookie, a revoked and an expired token, and a secret key
of a third team.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from chat.models import Message, Session
from genie.models import AccessToken
from genie.services import create_access_token
from tests.conftest import bearer_client
from tests.factories import AgentFactory, MemberFactory, MessageFactory, SessionFactory, TeamFactory

pytestmark = pytest.mark.django_db

CREDENTIALS = [
    "secret",
    "publishable+secret",
    "publishable",
    "personal",
    "cookie",
    "revoked",
    "expired",
    "stranger",
]
OBJECTS = ["own_user", "own_publishable", "other_user", "other_team"]
SESSION_ENDPOINTS = {
    # name: (method, path under the session, body, success status)
    "detail": ("get", "", None, 200),
    "rename": ("patch", "", {"title": "renamed"}, 200),
    "delete": ("delete", "", None, 204),
    "transcript": ("get", "/messages", None, 200),
    "post_message": ("post", "/messages", {"text": "hello"}, 201),
    "feedback": ("post", "/messages/{agent_message}/feedback", {"rating": "positive"}, 201),
    "stop": ("post", "/stream/stop", None, 200),
    "runs": ("get", "/runs", None, 200),
    "events": ("get", "/events", None, 200),
}
TEAM_ENDPOINTS = {
    "list_sessions": ("get", "/api/v1/sessions", None),
    "list_agents": ("get", "/api/v1/agents", None),
    "create_agent": ("post", "/api/v1/agents", {"handle": "new", "name": "New", "model": "m", "provider": "openai"}),
    "list_keys": ("get", "/api/v1/api-keys", None),
    "create_key": ("post", "/api/v1/api-keys", {"kind": "publishable", "name": "web"}),
}


@dataclass
class World:
    clients: dict[str, APIClient]
    sessions: dict[str, Session]


@pytest.fixture
def world() -> World:
    team, other_team, stranger_team = TeamFactory(), TeamFactory(), TeamFactory()
    agent = AgentFactory(team=team, is_default=True, is_public=True)
    member, teammate = MemberFactory(team=team), MemberFactory(team=team)
    _, secret = create_access_token(team=team, kind=AccessToken.Kind.SECRET)
    pk_token, publishable = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)
    _, personal = create_access_token(team=team, kind=AccessToken.Kind.PERSONAL, user=member.user)
    revoked_token, revoked = create_access_token(team=team, kind=AccessToken.Kind.PERSONAL, user=member.user)
    revoked_token.revoke()
    _, expired = create_access_token(
        team=team, kind=AccessToken.Kind.PERSONAL, user=member.user, expires_at=timezone.now() - timedelta(minutes=1)
    )
    _, stranger = create_access_token(team=stranger_team, kind=AccessToken.Kind.SECRET)

    pub_session = SessionFactory(agent=agent, created_by_token=pk_token, user_id="end-user-1")
    client_secret = pub_session.issue_client_secret()
    pub_session.save()
    sessions = {
        "own_user": SessionFactory(agent=agent, owner=member.user),
        "own_publishable": pub_session,
        "other_user": SessionFactory(agent=agent, owner=teammate.user),
        "other_team": SessionFactory(agent=AgentFactory(team=other_team)),
    }
    for session in sessions.values():
        MessageFactory(session=session, sender_role=Message.SenderRole.USER)
        MessageFactory(session=session, sender_role=Message.SenderRole.AGENT)

    cookie = APIClient(enforce_csrf_checks=True)
    cookie.force_login(member.user)
    cookie.get("/admin/login/")
    cookie.defaults["HTTP_X_CSRFTOKEN"] = cookie.cookies["csrftoken"].value
    clients = {
        "secret": bearer_client(secret),
        "publishable+secret": bearer_client(publishable, HTTP_X_SESSION_SECRET=client_secret),
        "publishable": bearer_client(publishable),
        "personal": bearer_client(personal),
        "cookie": cookie,
        "revoked": bearer_client(revoked),
        "expired": bearer_client(expired),
        "stranger": bearer_client(stranger),
    }
    return World(clients=clients, sessions=sessions)


def may_reach(credential: str, obj: str) -> bool:
    """Which sessions a credential sees: the whole team for a secret key, its own for a user,
    the session it created (with its client secret) for a publishable key."""
    return {
        "secret": obj in {"own_user", "own_publishable", "other_user"},
        "personal": obj == "own_user",
        "cookie": obj == "own_user",
        "publishable+secret": obj == "own_publishable",
    }.get(credential, False)


def expected_session_status(credential: str, endpoint: str, obj: str) -> int:
    if credential in {"revoked", "expired"}:
        return 401
    if not may_reach(credential, obj):
        return 404
    return SESSION_ENDPOINTS[endpoint][3]


def expected_team_status(credential: str, endpoint: str) -> int:
    if credential in {"revoked", "expired"}:
        return 401
    if endpoint == "list_sessions":
        return 403 if credential.startswith("publishable") else 200
    if credential not in {"secret", "stranger"}:
        return 403
    return 201 if endpoint.startswith("create") else 200


@pytest.mark.parametrize(
    ("credential", "endpoint", "obj"), list(itertools.product(CREDENTIALS, SESSION_ENDPOINTS, OBJECTS))
)
def test_session_endpoint_access(world, credential, endpoint, obj):
    session = world.sessions[obj]
    method, suffix, body, _ = SESSION_ENDPOINTS[endpoint]
    agent_message = session.messages.get(sender_role=Message.SenderRole.AGENT)
    path = f"/api/v1/sessions/{session.uuid}" + suffix.format(agent_message=agent_message.uuid)
    before = Message.objects.filter(session=session).count()

    response = getattr(world.clients[credential], method)(path, body, format="json")

    expected = expected_session_status(credential, endpoint, obj)
    assert response.status_code == expected, response.content
    if expected >= 400:  # one error format, and a refused request changes nothing
        assert set(response.json()) == {"error"}
        assert Session.objects.filter(pk=session.pk).exists()
        assert Message.objects.filter(session=session).count() == before


@pytest.mark.parametrize(("credential", "endpoint"), list(itertools.product(CREDENTIALS, TEAM_ENDPOINTS)))
def test_team_endpoint_access(world, credential, endpoint):
    method, path, body = TEAM_ENDPOINTS[endpoint]

    response = getattr(world.clients[credential], method)(path, body, format="json")

    assert response.status_code == expected_team_status(credential, endpoint), response.content


@pytest.mark.parametrize("credential", ["secret", "personal", "stranger"])
def test_listing_shows_only_reachable_sessions(world, credential):
    listed = {s["uuid"] for s in world.clients[credential].get("/api/v1/sessions").json()["results"]}

    assert listed == {str(s.uuid) for name, s in world.sessions.items() if may_reach(credential, name)}
