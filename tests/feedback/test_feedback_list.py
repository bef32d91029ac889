"""``GET feedback``: the ratings a caller may see, filtered, paginated like every list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from feedback.models import Feedback
from genie.models import AccessToken
from genie.services import create_access_token
from tests.conftest import bearer_client
from tests.factories import AgentFactory, FeedbackFactory, MemberFactory, MessageFactory, SessionFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/feedback"


def rate(session, *, rating: str = "positive", model: str = "m-1", at: datetime | None = None) -> Feedback:
    reply = MessageFactory(session=session, sender_role="agent", model_id=model)
    feedback = FeedbackFactory(message=reply, rating=rating)
    if at is not None:
        Feedback.objects.filter(pk=feedback.pk).update(created_at=at)
        feedback.refresh_from_db()
    return feedback


def test_a_secret_key_lists_its_teams_ratings_newest_first_in_the_feedback_shape(secret_api, agent, member):
    mine = SessionFactory(agent=agent, owner=member.user)
    older = rate(mine, at=datetime(2026, 12, 1, 9, tzinfo=UTC))
    newer = rate(SessionFactory(agent=agent), rating="negative", model="m-2")
    rate(SessionFactory())  # another team's

    response = secret_api.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert (body["count"], body["next"], body["previous"]) == (2, None, None)
    assert [item["message_uuid"] for item in body["results"]] == [str(newer.message.uuid), str(older.message.uuid)]
    assert body["results"][0] == {
        "url": f"http://testserver/api/v1/sessions/{newer.message.session.uuid}/messages/{newer.message.uuid}/feedback",
        "session_uuid": str(newer.message.session.uuid),
        "message_uuid": str(newer.message.uuid),
        "rating": "negative",
        "body": "Good",
        "created_at": body["results"][0]["created_at"],
        "updated_at": body["results"][0]["updated_at"],
        "agent": agent.handle,
        "model": "m-2",
    }


def test_a_user_lists_only_the_ratings_of_its_own_sessions(api, agent, member, team):
    own = rate(SessionFactory(agent=agent, owner=member.user))
    rate(SessionFactory(agent=agent, owner=MemberFactory(team=team).user))  # a teammate's session
    rate(SessionFactory(agent=agent))  # a secret key's session

    response = api.get(URL)

    assert response.status_code == 200
    assert [item["message_uuid"] for item in response.json()["results"]] == [str(own.message.uuid)]


def test_a_publishable_key_without_a_session_secret_lists_nothing(team, agent):
    rate(SessionFactory(agent=agent))
    _, key = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)

    response = bearer_client(key).get(URL)

    assert response.status_code == 200
    assert response.json()["count"] == 0


def test_filters_by_agent_rating_session_and_time(secret_api, agent, team):
    other_agent = AgentFactory(team=team)
    session = SessionFactory(agent=agent)
    early = rate(session, at=datetime(2026, 12, 1, 9, tzinfo=UTC))
    late_negative = rate(session, rating="negative", at=datetime(2026, 12, 3, 18, tzinfo=UTC))
    elsewhere = rate(SessionFactory(agent=other_agent), at=datetime(2026, 12, 2, 12, tzinfo=UTC))

    def listed(**params: str) -> list[str]:
        response = secret_api.get(URL, params)
        assert response.status_code == 200, response.json()
        return [item["message_uuid"] for item in response.json()["results"]]

    assert listed(agent=other_agent.handle) == [str(elsewhere.message.uuid)]
    assert listed(rating="negative") == [str(late_negative.message.uuid)]
    assert listed(session=str(session.uuid)) == [str(late_negative.message.uuid), str(early.message.uuid)]
    assert listed(since="2026-12-02") == [str(late_negative.message.uuid), str(elsewhere.message.uuid)]
    assert listed(until="2026-12-02") == [str(elsewhere.message.uuid), str(early.message.uuid)]
    assert listed(since="2026-12-01T10:00:00Z", until="2026-12-03T12:00:00Z") == [str(elsewhere.message.uuid)]
    assert listed(agent="no-such-agent") == []
    assert len(listed(since="0054-08-01T00:53:43-17:59")) == 3  # any offset Python reads, in UTC


@pytest.mark.parametrize(
    ("param", "value"),
    [("rating", "meh"), ("session", "not-a-uuid"), ("since", "yesterday"), ("until", "2026-13-45")],
)
def test_a_bad_filter_value_is_a_400_naming_it(secret_api, param, value):
    response = secret_api.get(URL, {param: value})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert param in error["details"]


def test_pages_with_the_shared_pagination(secret_api, agent, django_assert_max_num_queries):
    session = SessionFactory(agent=agent)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    for day in range(5):
        rate(session, at=start + timedelta(days=day))

    with django_assert_max_num_queries(6):
        first = secret_api.get(URL, {"page_size": 2}).json()
    second = secret_api.get(first["next"]).json()

    assert first["count"] == 5
    assert len(first["results"]) == 2
    assert first["previous"] is None
    assert second["previous"] is not None
    assert {item["message_uuid"] for item in first["results"]}.isdisjoint(
        item["message_uuid"] for item in second["results"]
    )
