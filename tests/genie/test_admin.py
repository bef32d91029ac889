from __future__ import annotations

import pytest

from tests.factories import FeedbackFactory, MessageFactory, SessionFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_session_change_page_shows_the_transcript(staff):
    session = SessionFactory(title="Cats")
    MessageFactory(session=session, text="Generate cat names")
    FeedbackFactory(message=MessageFactory(session=session, sender_role="agent", text="Miso"), body="Accurate")

    page = staff.get(f"/admin/chat/session/{session.pk}/change/")

    assert page.status_code == 200
    assert b"Generate cat names" in page.content
    assert b"Miso" in page.content
    assert b"Accurate" in page.content


def test_feedback_list_filters_by_rating_and_links_to_the_transcript(staff):
    good = FeedbackFactory(rating="positive", body="great")
    FeedbackFactory(rating="negative", body="awful")

    page = staff.get("/admin/feedback/feedback/?rating__exact=positive")

    assert page.status_code == 200
    assert b"great" in page.content
    assert b"awful" not in page.content
    assert f"/admin/chat/session/{good.message.session_id}/change/".encode() in page.content


@pytest.mark.parametrize(
    "path",
    [
        "/admin/chat/message/?q=Miso",
        "/admin/runs/run/",
        "/admin/chat/agent/",
        "/admin/genie/accesstoken/",
        "/admin/chat/session/?q=Cats",
        "/admin/genie/member/",
    ],
)
def test_review_pages_load(staff, path):
    MessageFactory(text="Miso", session=SessionFactory(title="Cats"))

    assert staff.get(path).status_code == 200
