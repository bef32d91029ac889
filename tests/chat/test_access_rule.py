"""The one access rule, ``Session.objects.reachable_by``, as a table of caller kinds by
sessions; and the SSE relay applying the same rule."""

from __future__ import annotations

import pytest

from chat.models import Session
from genie.auth import Caller, caller_for_user
from genie.models import AccessToken
from genie.services import create_access_token
from runs.sse import StreamRefusal, plan_stream
from tests.factories import AgentFactory, MemberFactory, SessionFactory, TeamFactory

pytestmark = pytest.mark.django_db

SESSIONS = ["member_own", "teammate_own", "made_by_pk", "made_by_other_pk", "other_team"]

# caller → the sessions it reaches (every other cell must be unreachable)
TABLE = {
    "secret": {"member_own", "teammate_own", "made_by_pk", "made_by_other_pk"},
    "member": {"member_own"},
    "publishable+its_secret": {"made_by_pk"},
    "publishable+other_sessions_secret": set(),
    "publishable_without_secret": set(),
    "other_publishable+secret": set(),
    "other_team_secret": {"other_team"},  # its own team's session only
}


@pytest.fixture
def world() -> tuple[dict[str, Caller], dict[str, Session]]:
    team, other_team = TeamFactory(), TeamFactory()
    agent = AgentFactory(team=team)
    member, teammate = MemberFactory(team=team), MemberFactory(team=team)
    secret, _ = create_access_token(team=team, kind=AccessToken.Kind.SECRET)
    publishable, _ = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)
    other_publishable, _ = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)
    other_secret, _ = create_access_token(team=other_team, kind=AccessToken.Kind.SECRET)

    def made_by(token: AccessToken) -> tuple[Session, str]:
        session = SessionFactory(agent=agent, created_by_token=token)
        client_secret = session.issue_client_secret()
        session.save()
        return session, client_secret

    by_pk, pk_secret = made_by(publishable)
    by_other_pk, other_pk_secret = made_by(other_publishable)
    sessions = {
        "member_own": SessionFactory(agent=agent, owner=member.user),
        "teammate_own": SessionFactory(agent=agent, owner=teammate.user),
        "made_by_pk": by_pk,
        "made_by_other_pk": by_other_pk,
        "other_team": SessionFactory(agent=AgentFactory(team=other_team)),
    }
    callers = {
        "secret": Caller(team=team, kind="secret", token=secret),
        "member": caller_for_user(member.user),
        "publishable+its_secret": Caller(team=team, kind="publishable", token=publishable, session_secret=pk_secret),
        "publishable+other_sessions_secret": Caller(
            team=team, kind="publishable", token=publishable, session_secret=other_pk_secret
        ),
        "publishable_without_secret": Caller(team=team, kind="publishable", token=publishable),
        "other_publishable+secret": Caller(
            team=team, kind="publishable", token=other_publishable, session_secret=pk_secret
        ),
        "other_team_secret": Caller(team=other_team, kind="secret", token=other_secret),
    }
    return callers, sessions


@pytest.mark.parametrize("caller_name", list(TABLE))
def test_reachable_by_is_the_table(world, caller_name):
    callers, sessions = world

    reached = set(Session.objects.reachable_by(callers[caller_name]).values_list("uuid", flat=True))

    assert reached == {sessions[name].uuid for name in TABLE[caller_name]}


def test_the_stream_relay_applies_the_same_rule(world):
    callers, sessions = world
    _, pk_key = create_access_token(team=callers["secret"].team, kind=AccessToken.Kind.PUBLISHABLE)
    session = sessions["made_by_pk"]

    # Another publishable key of the team, even with the right client secret: 404.
    refusal = plan_stream(
        headers={b"authorization": f"Bearer {pk_key}".encode(), b"x-session-secret": b"cs_wrong"},
        query={},
        session_uuid=str(session.uuid),
        run_uuid=None,
    )

    assert isinstance(refusal, StreamRefusal)
    assert refusal.status == 404
