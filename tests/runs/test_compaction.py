"""Compaction in-process with a scripted model: the streamed summary, what is stored, the
next prompt starting from it, the transcript kept whole, 409 while a run is active, the
Idempotency-Key replay, and automatic compaction on a small window."""

from __future__ import annotations

import json
from unittest import mock

import pytest

from chat import services
from chat.models import Compaction, Message
from genie.connections import redis_client
from genie.models import AccessToken
from runs import compaction, loop
from runs.context import context_usage
from runs.models import Run
from runs.stream_slots import release_slot_now, slots_key, take_slot
from tests.factories import MessageFactory, SessionFactory, UserFactory
from tests.runs.conftest import ScriptedProvider, published_data, published_types, text

pytestmark = pytest.mark.django_db

SUMMARY = ["The user likes cats", " and lives in Lyon."]


@pytest.fixture
def summary_model():
    provider = ScriptedProvider([text(*SUMMARY)])
    with mock.patch.object(compaction, "get_provider", return_value=provider):
        yield provider


@pytest.fixture
def session(member, agent):
    session = SessionFactory(agent=agent, owner=member.user)
    for n in range(3):
        MessageFactory(session=session, text=f"question {n} " + "words " * 20)
        MessageFactory(session=session, sender_role=Message.SenderRole.AGENT, text=f"answer {n} " + "words " * 20)
    return session


def read_sse(response) -> list[dict]:
    body = b"".join(response).decode()  # an async stream, read as WSGI would
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


def test_compact_streams_the_summary_and_stores_it(api, session, summary_model):
    before = context_usage(session)["used_tokens"]

    response = api.post(f"/api/v1/sessions/{session.uuid}/compact", {"keep_last": 2}, format="json")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["x-vercel-ai-ui-message-stream"] == "v1"
    chunks = read_sse(response)
    assert [chunk["type"] for chunk in chunks] == [
        "start",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "data-compaction",
        "finish",
    ]
    assert "".join(chunk["delta"] for chunk in chunks if chunk["type"] == "text-delta") == "".join(SUMMARY)
    stored = Compaction.objects.get(session=session)
    assert stored.summary == "".join(SUMMARY)
    assert chunks[5]["data"] == {
        "before_tokens": before,
        "after_tokens": stored.after_tokens,
        "messages_compacted": 4,
    }
    assert stored.after_tokens < before
    # The model was asked to summarise the first four messages only.
    asked = summary_model.requests[0].messages[-1]["content"]
    assert "question 1" in asked
    assert "question 2" not in asked
    usage = context_usage(session)
    assert usage["used_tokens"] == stored.after_tokens
    assert (usage["messages_in_context"], usage["messages_total"]) == (2, 6)
    assert usage["breakdown"]["summary"] > 0
    assert usage["last_compacted_at"] == stored.created_at
    assert session.messages.count() == 6  # the transcript keeps every message


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast_settings")
def test_the_next_prompt_starts_from_the_summary(api, session, summary_model, script, enqueued):
    read_sse(api.post(f"/api/v1/sessions/{session.uuid}/compact", {"keep_last": 2}, format="json"))
    full_prompt_length = 1 + 6 + 1  # instructions, six messages, the new one
    run = services.post_message(session=session, text="And now?")
    provider = script(text("ok"))

    loop.execute_run(run.pk)

    prompt = provider.requests[0].messages
    assert prompt[0] == {"role": "system", "content": session.agent.instructions}
    assert prompt[1] == {"role": "system", "content": "Summary of the earlier conversation:\n" + "".join(SUMMARY)}
    assert [message["content"][:10] for message in prompt[2:]] == ["question 2", "answer 2 w", "And now?"]
    assert len(prompt) < full_prompt_length
    assert "data-compaction" not in published_types(run)  # far from the window: no automatic one


def test_compact_is_409_while_a_run_is_active(api, session, summary_model):
    services.post_message(session=session, text="busy")

    response = api.post(f"/api/v1/sessions/{session.uuid}/compact", {}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "run_active"
    assert not Compaction.objects.exists()


def test_the_same_idempotency_key_replays_the_stored_summary(api, session, summary_model):
    first = read_sse(api.post(f"/api/v1/sessions/{session.uuid}/compact", {}, format="json", HTTP_IDEMPOTENCY_KEY="c1"))

    replay = api.post(f"/api/v1/sessions/{session.uuid}/compact", {}, format="json", HTTP_IDEMPOTENCY_KEY="c1")

    assert replay["Idempotent-Replayed"] == "true"
    chunks = read_sse(replay)
    assert chunks[-2] == first[-2]  # the same data-compaction
    assert "".join(chunk.get("delta", "") for chunk in chunks) == "".join(SUMMARY)
    assert Compaction.objects.count() == 1
    assert len(summary_model.requests) == 1


def test_nothing_to_compact_stores_nothing(api, session, summary_model):
    chunks = read_sse(api.post(f"/api/v1/sessions/{session.uuid}/compact", {"keep_last": 6}, format="json"))

    assert [chunk["type"] for chunk in chunks] == ["start", "data-compaction", "finish"]
    assert chunks[1]["data"]["messages_compacted"] == 0
    assert not Compaction.objects.exists()


def test_compact_of_another_users_session_is_404(api, agent, summary_model):
    assert (
        api.post(f"/api/v1/sessions/{SessionFactory(agent=agent).uuid}/compact", {}, format="json").status_code == 404
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast_settings")
def test_a_turn_past_the_threshold_compacts_first(session, script, enqueued, settings):
    settings.GENIE_AUTO_COMPACT_AT = 0.9
    session.agent.context_window = 256  # the six messages take about 230 tokens
    session.agent.save()
    run = services.post_message(session=session, text="And now?")
    provider = script(text(*SUMMARY), text("ok"))

    loop.execute_run(run.pk)

    run = Run.objects.select_related("session").get(pk=run.pk)
    types = published_types(run)
    assert types[:2] == ["start", "data-compaction"]
    assert types[-1] == "finish"
    (data,) = published_data(run, "data-compaction")
    stored = Compaction.objects.get(session=session)
    assert stored.automatic
    assert data["data"] == {
        "before_tokens": stored.before_tokens,
        "after_tokens": stored.after_tokens,
        "messages_compacted": 3,  # all but the last four (the new message among them)
    }
    assert stored.before_tokens > 0.9 * 256 > stored.after_tokens
    turn_prompt = provider.requests[1].messages
    assert turn_prompt[1]["content"].startswith("Summary of the earlier conversation:")
    assert turn_prompt[-1]["content"] == "And now?"


def test_the_admin_shows_the_summaries(session, client):
    Compaction.objects.create(
        session=session,
        upto_message=session.messages.first(),
        summary="The user likes cats.",
        messages_compacted=1,
        before_tokens=50,
        after_tokens=20,
    )
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    page = client.get(f"/admin/chat/session/{session.pk}/change/")

    assert page.status_code == 200
    assert b"The user likes cats." in page.content


def test_a_compaction_stream_counts_against_the_callers_open_streams(
    api, session, summary_model, settings, personal_key
):
    # Issue 26, finding 13: compaction streams escaped GENIE_MAX_STREAMS_PER_KEY.
    settings.GENIE_MAX_STREAMS_PER_KEY = 1
    token = AccessToken.objects.get(prefix=personal_key[: AccessToken.LOOKUP_LENGTH])
    ident = f"token:{token.pk}"
    open_stream = take_slot(ident)  # the caller's one stream, open elsewhere

    refused = api.post(f"/api/v1/sessions/{session.uuid}/compact", {"keep_last": 2}, format="json")
    release_slot_now(ident, open_stream)
    streamed = read_sse(api.post(f"/api/v1/sessions/{session.uuid}/compact", {"keep_last": 2}, format="json"))

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_streams"
    assert streamed[-1]["type"] == "finish"
    assert redis_client().zcard(slots_key(ident)) == 0  # given back when the stream ended
