"""The admin's review pages: the read-only conversation a rating links to, the feedback
filters and export action, and ratings over time per agent."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from chat import services
from chat.models import Message
from feedback.models import Feedback
from runs.models import Run, ToolCall
from tests.factories import AgentFactory, FeedbackFactory, MemberFactory, RunFactory, SessionFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def rated_turn(*, prompt: str, reply: str, rating: str = "positive", body: str = "", **run_fields) -> Feedback:
    """A finished turn (user message, agent reply and its run) whose reply is rated."""
    run = RunFactory(user_message__text=prompt, agent_message__text=reply, **run_fields)
    Message.objects.filter(pk=run.agent_message_id).update(status=Message.Status.COMPLETE)
    return FeedbackFactory(message=run.agent_message, rating=rating, body=body)


def test_the_conversation_shows_bubbles_with_anchors_tool_calls_files_rating_and_run_timings(staff, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)

    now = timezone.now()
    run = RunFactory(
        user_message__text="Refund order 7",
        agent_message__text="Done <b>refunded</b>",
        status=Run.Status.SUCCEEDED,
    )
    Run.objects.filter(pk=run.pk).update(
        created_at=now,
        started_at=now + timedelta(seconds=0.25),
        first_token_at=now + timedelta(seconds=1.5),
        finished_at=now + timedelta(seconds=3),
    )
    upload = services.store_upload(session=run.session, file=io.BytesIO(b"order 7"), filename="order.txt")
    run.user_message.attachments.add(upload)
    call = ToolCall.objects.create(run=run, call_id="call_r", tool_name="refund", kind="webhook", input={"order": 7})
    ann = MemberFactory(user__username="ann")
    call.mark_approved(decided_by=f"user:{ann.uuid}", reason="checked")
    call.mark_succeeded({"refunded": True})
    FeedbackFactory(message=run.agent_message, rating="negative", body="Too slow")

    page = staff.get(f"/admin/chat/session/{run.session.pk}/conversation/")

    assert page.status_code == 200
    html = page.content.decode()
    assert f'id="message-{run.user_message.uuid}"' in html
    assert f'id="message-{run.agent_message.uuid}"' in html
    assert html.index("Refund order 7") < html.index("Done &lt;b&gt;refunded&lt;/b&gt;")  # in order, escaped
    assert "bubble-user" in html
    assert "bubble-agent" in html
    assert "refund" in html
    assert "&quot;order&quot;: 7" in html
    assert "&quot;refunded&quot;: true" in html
    assert f"Approved by ann at {timezone.localtime(call.decided_at):%Y-%m-%d %H:%M:%S}: checked" in html
    assert f"/admin/chat/upload/{upload.pk}/download/" in html
    assert "Negative" in html
    assert "Too slow" in html
    assert "queued" in html
    assert "+0.25 s" in html
    assert "+1.50 s" in html
    assert "+3.00 s" in html
    assert "genie/admin-review.css" in html
    assert 'class="messagelist"' not in html  # the transcript is not mistaken for the admin's notices


def test_the_session_change_page_links_to_its_conversation(staff):
    session = SessionFactory()

    page = staff.get(f"/admin/chat/session/{session.pk}/change/")

    assert f'href="/admin/chat/session/{session.pk}/conversation/"'.encode() in page.content


def test_a_reply_cut_by_the_token_cap_shows_as_incomplete(staff):
    run = RunFactory(agent_message__text="Miso, Lu")
    Message.objects.filter(pk=run.agent_message_id).update(status=Message.Status.INCOMPLETE)

    conversation = staff.get(f"/admin/chat/session/{run.session.pk}/conversation/")
    messages = staff.get("/admin/chat/message/?status__exact=incomplete")

    assert b"Incomplete (token cap)" in conversation.content
    assert b"Miso, Lu" in messages.content


def test_the_conversation_of_a_missing_session_is_404_and_needs_staff(staff, client):
    assert staff.get("/admin/chat/session/999999/conversation/").status_code == 404
    client.logout()
    assert client.get(f"/admin/chat/session/{SessionFactory().pk}/conversation/").status_code == 302  # to login


def test_the_feedback_list_shows_each_rated_replys_model_under_a_model_heading(staff):
    rated = rated_turn(prompt="p", reply="Miso")
    Message.objects.filter(pk=rated.message_id).update(model_id="gpt-4o-mini")

    html = staff.get("/admin/feedback/feedback/").content.decode()

    headings = [re.sub(r"<[^>]+>", "", th).strip() for th in re.findall(r'<th scope="col".*?</th>', html, re.DOTALL)]
    cells = re.findall(r'<td class="field-reply_model">(.*?)</td>', html)
    assert "Model" in headings
    assert "Feedback" not in headings
    assert cells == ["gpt-4o-mini"]
    assert " on None" not in html


def test_feedback_filters_by_agent_model_and_date(staff):
    support = AgentFactory(name="Support")
    kept = rated_turn(prompt="p", reply="kept reply", session__agent=support)
    Message.objects.filter(pk=kept.message_id).update(model_id="gpt-4o-mini")
    rated_turn(prompt="p", reply="other agent's reply")
    old = rated_turn(prompt="p", reply="last month's reply", session__agent=support)
    Message.objects.filter(pk=old.message_id).update(model_id="gpt-4o-mini")
    Feedback.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))

    by_agent = staff.get(f"/admin/feedback/feedback/?message__session__agent__id__exact={support.pk}")
    by_model = staff.get("/admin/feedback/feedback/?model=gpt-4o-mini")
    by_date = staff.get(
        "/admin/feedback/feedback/?model=gpt-4o-mini&created_at__gte=" + f"{timezone.localdate() - timedelta(days=6)}"
    )

    assert b"kept reply" in by_agent.content
    assert b"last month" in by_agent.content
    assert b"other agent" not in by_agent.content
    assert b"kept reply" in by_model.content
    assert b"other agent" not in by_model.content
    assert b"kept reply" in by_date.content
    assert b"last month" not in by_date.content


def test_the_export_action_downloads_the_selected_feedback_as_csv_and_json(staff):
    first = rated_turn(prompt="Name a cat", reply="Miso", rating="positive", body="cute")
    second = rated_turn(prompt="=cmd|' /C calc'!A0", reply="Luna", rating="negative", body="-1 star")
    rated_turn(prompt="not selected", reply="Nope")

    def export(action: str):
        return staff.post(
            "/admin/feedback/feedback/",
            {"action": action, "_selected_action": [first.pk, second.pk]},
        )

    as_csv, as_json = export("export_csv"), export("export_json")

    assert as_csv.status_code == 200
    assert as_csv["Content-Type"] == "text/csv; charset=utf-8"
    assert as_csv["Content-Disposition"].startswith('attachment; filename="feedback-')
    rows = list(csv.DictReader(io.StringIO(as_csv.content.decode())))
    assert [(row["rating"], row["message_text"], row["prompt"], row["body"]) for row in rows] == [
        ("positive", "Miso", "Name a cat", "cute"),
        ("negative", "Luna", "'=cmd|' /C calc'!A0", "'-1 star"),  # no formula reaches a spreadsheet
    ]
    assert rows[0]["agent"] == first.message.session.agent.handle
    assert rows[0]["session_uuid"] == str(first.message.session.uuid)
    assert as_json["Content-Type"] == "application/json"
    data = json.loads(as_json.content)
    assert [row["uuid"] for row in data] == [str(first.uuid), str(second.uuid)]
    assert data[1]["prompt"] == "=cmd|' /C calc'!A0"  # JSON keeps the text as written


def test_ratings_over_time_counts_each_agents_ratings_per_day(staff):
    support, sales = AgentFactory(name="Support"), AgentFactory(name="Sales")
    for rating in ("positive", "positive", "negative"):
        rated_turn(prompt="p", reply="r", rating=rating, session__agent=support)
    yesterday = rated_turn(prompt="p", reply="r", rating="negative", session__agent=sales)
    Feedback.objects.filter(pk=yesterday.pk).update(created_at=timezone.now() - timedelta(days=1))
    long_ago = rated_turn(prompt="p", reply="r", rating="negative", session__agent=sales)
    Feedback.objects.filter(pk=long_ago.pk).update(created_at=timezone.now() - timedelta(days=20))

    page = staff.get("/admin/feedback/feedback/ratings/?days=7")
    changelist = staff.get("/admin/feedback/feedback/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "<svg" in html
    assert html.index("Sales") < html.index("Support")
    assert "2 positive, 1 negative (67% positive)" in html
    assert "0 positive, 1 negative" in html  # twenty days ago is outside the last 7
    assert f"{timezone.localdate():%Y-%m-%d}: 2 positive, 1 negative" in html
    assert html.count('class="positive"') == 1
    assert html.count('class="negative"') == 2
    assert b'href="/admin/feedback/feedback/ratings/"' in changelist.content
