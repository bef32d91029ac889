"""Compaction in-process with a scripted model: a compaction run the worker executes (the
web process calls no model), the summary streamed through the relay, what is stored, the
next prompt starting from it, the transcript kept whole, 409 while a run is active, a turn
during a compaction, the Idempotency-Key replay, stop, compaction runs left out of what
clients read about turns, and automatic compaction on a small window."""

from __future__ import annotations

import json
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from chat import services
from chat.models import Compaction, Message
from genie.connections import redis_client
from genie.models import AccessToken
from runs import compaction, loop
from runs import services as run_services
from runs.context import context_usage
from runs.models import Run, RunEvent
from runs.providers import ProviderError
from runs.recovery import sweep_runs
from runs.sse import StreamRefusal, plan_backlog
from runs.stream_slots import release_slot_now, slots_key, take_slot
from tests.factories import MessageFactory, SessionFactory, UserFactory
from tests.runs.conftest import ScriptedProvider, published_data, published_types, relayed, text

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


def worked(response):
    """The compaction run a POST queued, executed as its worker would; its stream as relayed."""
    loop.execute_run(Run.objects.get(uuid=response["Genie-Run-Uuid"]).pk)
    return relayed(response)


def read_sse(response) -> list[dict]:
    return worked(response).chunks


def test_compact_streams_the_summary_and_stores_it(api, session, summary_model):
    before = context_usage(session)["used_tokens"]

    response = api.post(f"/api/v1/sessions/{session.uuid}/compact", {"keep_last": 2}, format="json")
    asked_in_the_request = list(summary_model.requests)
    run = Run.objects.get(uuid=response["Genie-Run-Uuid"])

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert asked_in_the_request == []  # the web process calls no model: the worker does
    assert (run.kind, run.status, run.agent_message, run.user_message) == ("compaction", "queued", None, None)
    streamed = worked(response)
    assert streamed.headers["x-vercel-ai-ui-message-stream"] == "v1"
    chunks = streamed.chunks
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
    assert chunks[1]["id"] == f"compaction-{session.uuid}"
    assert chunks[0] == {"type": "start"}  # no message: a summary is not one
    assert chunks[-1] == {"type": "finish"}
    run.refresh_from_db()
    assert (run.status, stored.run) == ("succeeded", run)
    assert streamed.ids == sorted(set(streamed.ids))  # resumable on Location with Last-Event-ID
    assert response["Location"].endswith(f"/api/v1/sessions/{session.uuid}/runs/{run.uuid}/stream")


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

    active = session.runs.get()

    response = api.post(f"/api/v1/sessions/{session.uuid}/compact", {}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "run_active"
    assert response.json()["error"]["details"] == {"run_uuid": str(active.uuid), "status": "queued"}
    assert not Compaction.objects.exists()
    assert session.runs.count() == 1


def test_the_same_idempotency_key_replays_the_stored_summary(api, session, summary_model):
    first = read_sse(api.post(f"/api/v1/sessions/{session.uuid}/compact", {}, format="json", HTTP_IDEMPOTENCY_KEY="c1"))

    replay = api.post(f"/api/v1/sessions/{session.uuid}/compact", {}, format="json", HTTP_IDEMPOTENCY_KEY="c1")

    assert replay["Idempotent-Replayed"] == "true"
    chunks = relayed(replay).chunks
    assert chunks[-2] == first[-2]  # the same data-compaction
    assert "".join(chunk.get("delta", "") for chunk in chunks) == "".join(SUMMARY)
    assert Compaction.objects.count() == 1
    assert len(summary_model.requests) == 1
    assert replay["Genie-Run-Uuid"] == str(Compaction.objects.get().run.uuid)  # the same run, streamed again


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
    response = api.post(f"/api/v1/sessions/{session.uuid}/compact", {"keep_last": 2}, format="json")
    held = redis_client().zcard(slots_key(ident))
    streamed = read_sse(response)

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_streams"
    assert session.runs.count() == 1  # the refused one wrote nothing
    assert held == 1  # the stream holds its slot until it ends
    assert streamed[-1]["type"] == "finish"
    assert redis_client().zcard(slots_key(ident)) == 0  # given back when the stream ended


def test_a_model_failure_streams_error_then_finish_and_stores_nothing(api, session):
    failing = ScriptedProvider([[*text("The user"), ProviderError("provider_error", "The model is down.")]])

    with mock.patch.object(compaction, "get_provider", return_value=failing):
        response = api.post(f"/api/v1/sessions/{session.uuid}/compact", {"keep_last": 2}, format="json")
        chunks = read_sse(response)

    assert [chunk["type"] for chunk in chunks] == ["start", "text-start", "text-delta", "text-end", "error", "finish"]
    assert chunks[4]["errorText"] == "The model is down."
    assert not Compaction.objects.exists()
    assert Run.objects.get(uuid=response["Genie-Run-Uuid"]).status == Run.Status.FAILED


def test_a_turn_during_a_compaction_meets_the_busy_session_policy(api, session, summary_model, script):
    compacting = api.post(f"/api/v1/sessions/{session.uuid}/compact", {"keep_last": 2}, format="json")
    compaction_run = Run.objects.get(uuid=compacting["Genie-Run-Uuid"])
    messages = f"/api/v1/sessions/{session.uuid}/messages"

    refused = api.post(messages, {"text": "Hi"}, format="json")
    queued = api.post(messages, {"text": "Hi", "on_active_run": "enqueue"}, format="json")
    turn = Run.objects.get(uuid=queued.json()["run_uuid"])
    waited = loop.execute_run(turn.pk)  # claimed too early: the compaction is still to run
    worked(compacting)
    script(text("Hello."))
    loop.execute_run(turn.pk)

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "run_active"
    assert refused.json()["error"]["details"]["run_uuid"] == str(compaction_run.uuid)
    assert queued.status_code == 201
    assert waited is None
    turn.refresh_from_db()
    assert turn.status == Run.Status.SUCCEEDED
    assert Compaction.objects.get().run == compaction_run


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast_settings")
def test_stop_ends_a_compaction_and_stores_nothing(api, session, enqueued):
    stopping = ScriptedProvider(
        [[*text("The user"), lambda: run_services.stop_session(session=session), *text(" more")]]
    )

    with mock.patch.object(compaction, "get_provider", return_value=stopping):
        response = api.post(f"/api/v1/sessions/{session.uuid}/compact", {"keep_last": 2}, format="json")
        chunks = read_sse(response)

    assert [chunk["type"] for chunk in chunks] == [
        "start",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "abort",
        "finish",
    ]
    assert Run.objects.get(uuid=response["Genie-Run-Uuid"]).status == Run.Status.STOPPED
    assert not Compaction.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast_settings")
def test_compaction_runs_are_not_listed_with_turns(api, session, summary_model, script, enqueued):
    session.title = ""
    session.save()
    read_sse(api.post(f"/api/v1/sessions/{session.uuid}/compact", {"keep_last": 2}, format="json"))
    compaction_run = Run.objects.get(kind=Run.Kind.COMPACTION)
    titles_after_compaction = list(enqueued["generate_title"])
    turn = services.post_message(session=session, text="And now?")
    script(text("ok"))
    loop.execute_run(turn.pk)

    listed = api.get(f"/api/v1/sessions/{session.uuid}/runs").json()
    detail = api.get(f"/api/v1/sessions/{session.uuid}/runs/{compaction_run.uuid}")

    assert [run["uuid"] for run in listed["results"]] == [str(turn.uuid)]
    assert detail.status_code == 404
    assert list(session.runs.turns()) == [turn]
    assert {event.run_id for event in session.events.of_turns()} == {turn.pk}
    assert titles_after_compaction == []  # a compaction writes no title; the turn after it does
    assert enqueued["generate_title"] == [session.pk]


def test_the_session_stream_does_not_replay_a_compaction(api, session, summary_model):
    api.post(f"/api/v1/sessions/{session.uuid}/compact", {"keep_last": 2}, format="json")

    while_compacting = plan_backlog(session=session, last_event_id=None, run_uuid=None)

    assert while_compacting == StreamRefusal(204)  # a summary is not a reply to resume


def test_a_replay_after_the_events_were_purged_rebuilds_the_stream(api, session, summary_model):
    key = {"HTTP_IDEMPOTENCY_KEY": "c2"}
    first = read_sse(api.post(f"/api/v1/sessions/{session.uuid}/compact", {}, format="json", **key))
    RunEvent.objects.all().delete()  # past GENIE_EVENT_RETENTION (the key lives as long)

    replay = api.post(f"/api/v1/sessions/{session.uuid}/compact", {}, format="json", **key)

    assert replay.status_code == 200
    assert replay["Idempotent-Replayed"] == "true"
    chunks = [json.loads(line[6:]) for line in replay.content.decode().splitlines() if line.startswith("data: ")]
    assert [chunk["type"] for chunk in chunks] == [
        "start",
        "text-start",
        "text-delta",
        "text-end",
        "data-compaction",
        "finish",
    ]
    assert chunks[-2] == first[-2]
    assert chunks[2]["delta"] == "".join(SUMMARY)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fast_settings")
def test_the_sweeper_re_queues_or_ends_a_compaction_whose_worker_died(api, session, summary_model, enqueued):
    died_early = api.post(f"/api/v1/sessions/{session.uuid}/compact", {"keep_last": 2}, format="json")
    run = Run.objects.get(uuid=died_early["Genie-Run-Uuid"])
    # A worker took it, wrote `start` and `text-start`, and died before the first token.
    with mock.patch.object(compaction, "get_provider", side_effect=KeyboardInterrupt), pytest.raises(KeyboardInterrupt):
        loop.execute_run(run.pk)
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=5))

    requeued = sweep_runs()["requeued"]
    loop.execute_run(run.pk)  # the next worker writes the whole summary, once

    assert requeued == 1
    assert published_types(run) == [
        "start",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "data-compaction",
        "finish",
    ]
    assert Compaction.objects.get().run == run
    mid_reply = api.post(f"/api/v1/sessions/{session.uuid}/compact", {"keep_last": 1}, format="json")
    lost = Run.objects.get(uuid=mid_reply["Genie-Run-Uuid"])
    lost.mark_started(lease_owner="a-dead-worker", lease_until=timezone.now() - timedelta(minutes=5))
    Run.objects.filter(pk=lost.pk).update(first_token_at=timezone.now())

    assert sweep_runs()["failed"] == 1
    lost.refresh_from_db()
    assert (lost.status, lost.error_code) == (Run.Status.FAILED, "worker_lost")
    assert published_types(lost) == ["start", "error", "finish"]
    assert Compaction.objects.count() == 1
