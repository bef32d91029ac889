"""Seed 001's headless API in-process: its bodies, its errors, and one session seen
through it and through the canonical API alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from chat.models import Message, Session
from chat.services import start_session
from genie.auth import Caller
from runs import services as run_services
from runs.events import StreamEvent, epoch_micros
from runs.formats import Seed001Format
from runs.models import Run, RunEvent
from runs.sse import parse_last_event_id, plan_backlog
from tests.factories import AgentFactory, RunFactory, SessionFactory

pytestmark = pytest.mark.django_db


def genie(agent) -> str:
    return f"/api/v1/genies/{agent.handle}/chat"


@pytest.fixture
def conversation(api, agent) -> dict:
    response = api.post(f"{genie(agent)}/conversations", {}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_create_a_conversation_returns_its_id_and_the_genie_handle(api, agent, member):
    response = api.post(f"{genie(agent)}/conversations", {"title": "Orders", "user_id": "c-42"}, format="json")

    assert response.status_code == 201
    body = response.json()
    session = Session.objects.get(uuid=body["conversation_id"])
    assert body["genie_handle"] == agent.handle
    assert (session.agent, session.owner, session.title, session.user_id) == (agent, member.user, "Orders", "c-42")
    assert not session.messages.exists()  # no first message: the seed sends it next
    assert not session.runs.exists()


def test_the_genie_may_be_named_by_uuid_and_the_answer_echoes_its_handle(api, agent):
    response = api.post(f"/api/v1/genies/{agent.uuid}/chat/conversations", {}, format="json")

    assert response.status_code == 201
    assert response.json()["genie_handle"] == agent.handle


def test_a_conversation_is_the_same_session_in_the_canonical_api(api, agent, conversation):
    conversation_id = conversation["conversation_id"]
    sent = api.post(f"{genie(agent)}/conversations/{conversation_id}/messages", {"text": "Hello"}, format="json")

    detail = api.get(f"/api/v1/sessions/{conversation_id}?include=messages").json()
    canonical_run = api.get(f"/api/v1/sessions/{conversation_id}/runs/{sent.json()['genie_run_id']}")

    assert sent.status_code == 201
    assert detail["uuid"] == conversation_id
    assert [m["text"] for m in detail["messages"]] == ["Hello", ""]
    assert detail["messages"][1]["uuid"] == sent.json()["message_id"]
    assert canonical_run.status_code == 200


def test_a_canonical_session_has_its_history_in_the_adapter(api, agent, member):
    session, run, _ = start_session(
        caller=Caller(team=agent.team, kind="user", user=member.user), agent=agent, text="Hi"
    )
    run_services.end_run(run=run, status=Run.Status.SUCCEEDED, text="Hello there.")

    body = api.get(f"{genie(agent)}/conversations/{session.uuid}/messages").json()

    assert body["count"] == 2
    user, reply = body["results"]
    assert (user["role"], user["text"], user["genie_run_id"]) == ("user", "Hi", None)
    assert (reply["role"], reply["text"], reply["status"]) == ("agent", "Hello there.", "complete")
    assert reply["message_id"] == str(run.agent_message.uuid)
    assert reply["genie_run_id"] == str(run.uuid)
    assert reply["conversation_id"] == str(session.uuid)


def test_send_attaches_an_uploaded_file(api, agent, conversation):
    base = f"{genie(agent)}/conversations/{conversation['conversation_id']}"
    upload = api.post(
        f"{base}/upload", {"file": SimpleUploadedFile("notes.txt", b"plain notes", "text/plain")}, format="multipart"
    )
    file_id = upload.json()["file_id"]

    sent = api.post(f"{base}/messages", {"text": "Read this", "file_id": file_id}, format="json")
    history = api.get(f"{base}/messages").json()["results"]

    assert upload.status_code == 201
    assert upload.json()["conversation_id"] == conversation["conversation_id"]
    assert sent.status_code == 201
    assert history[0]["file_ids"] == [file_id]


def test_send_with_stream_true_hands_the_turn_to_the_relay_and_names_the_run(api, agent, conversation):
    url = f"{genie(agent)}/conversations/{conversation['conversation_id']}/messages"

    response = api.post(url, {"text": "Hi", "stream": True}, format="json")

    assert response.status_code == 200, response.content
    run = Run.objects.get(uuid=response["Genie-Run-Id"])
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response.has_header("Genie-Relay-Handoff")  # relayed by the ASGI edge (the live test reads it)
    assert response["Location"].endswith(f"/conversations/{run.session.uuid}/genie-runs/{run.uuid}")


def test_a_bad_body_is_400_naming_the_field_and_stores_nothing(api, agent, conversation):
    url = f"{genie(agent)}/conversations/{conversation['conversation_id']}/messages"

    response = api.post(url, {"text": "", "stream": "sometimes"}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400
    assert body["code"] == "validation_error"
    assert sorted(error["field"] for error in body["errors"]) == ["stream", "text"]
    assert body["message"].startswith(("text: ", "stream: "))
    assert not Message.objects.filter(session__uuid=conversation["conversation_id"]).exists()


def test_an_unknown_field_is_400_naming_it(api, agent):
    response = api.post(f"{genie(agent)}/conversations", {"genie": "x"}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "genie", "message": "Unknown field."}]


def test_an_unknown_conversation_or_genie_is_404_in_the_seeds_voice(api, agent, team, conversation):
    other_agent = AgentFactory(team=team, handle="other")
    conversation_id = conversation["conversation_id"]

    unknown = api.get(f"{genie(agent)}/conversations/00000000-0000-4000-8000-000000000000/messages")
    wrong_genie = api.get(f"{genie(other_agent)}/conversations/{conversation_id}/messages")
    no_genie = api.post("/api/v1/genies/nobody/chat/conversations", {}, format="json")

    assert unknown.status_code == wrong_genie.status_code == no_genie.status_code == 404
    assert unknown.json()["code"] == wrong_genie.json()["code"] == "conversation_not_found"
    assert no_genie.json() == {
        "status": 404,
        "code": "genie_not_found",
        "message": "No such genie.",
        "errors": [],
        "details": None,
    }


def test_another_users_conversation_is_404(api, agent, team):
    someone_else = SessionFactory(agent=agent, team=team)

    response = api.get(f"{genie(agent)}/conversations/{someone_else.uuid}/messages")

    assert response.status_code == 404


def test_a_wrong_key_is_401_in_the_seeds_voice(client, agent, conversation):
    url = f"{genie(agent)}/conversations/{conversation['conversation_id']}/messages"

    response = client.get(url, HTTP_AUTHORIZATION="Bearer sk_live_wrong")

    assert response.status_code == 401
    assert response.json()["status"] == 401
    assert response.json()["code"] in {"authentication_failed", "invalid_token"}


def test_an_unknown_skill_call_is_404(api, agent, conversation):
    url = f"{genie(agent)}/conversations/{conversation['conversation_id']}/skill_approval/call_nope"

    response = api.post(url, {"approved": True}, format="json")

    assert response.status_code == 404
    assert response.json()["code"] == "skill_call_not_found"


def test_an_unknown_runtime_connection_attempt_is_404(api, agent):
    url = f"{genie(agent)}/runtime_connection/00000000-0000-4000-8000-000000000000/link"

    response = api.post(url)

    assert response.status_code == 404
    assert response.json()["code"] == "runtime_connection_not_found"


def test_events_since_a_time_are_the_streams_events_with_the_whole_reply(api, agent, member):
    session, run, _ = start_session(
        caller=Caller(team=agent.team, kind="user", user=member.user), agent=agent, text="Hi"
    )
    run_services.end_run(run=run, status=Run.Status.SUCCEEDED, text="All done.")
    url = f"{genie(agent)}/conversations/events"

    body = api.get(url, {"conversation_id": str(session.uuid)}).json()
    last = RunEvent.objects.filter(session=session).order_by("seq").last()
    later = api.get(url, {"conversation_id": str(session.uuid), "since_created_at": last.created_at.isoformat()})
    last_at = last.created_at.isoformat().replace("+00:00", "Z")

    events = body["results"]
    assert [e["event"] for e in events] == ["processing.started", "agent.message", "processing.finished"]
    assert events[1]["data"] == {
        "genie_run_id": str(run.uuid),
        "message_id": str(run.agent_message.uuid),
        "text": "All done.",
        "created_at": events[1]["created_at"],  # in the data too, as the stream has it
    }
    assert events[2]["data"] == {"genie_run_id": str(run.uuid), "status": "succeeded", "created_at": last_at}
    assert {e["genie_run_id"] for e in events} == {str(run.uuid)}
    assert later.json()["results"] == []


def test_events_without_a_conversation_id_is_400_naming_it(api, agent):
    response = api.get(f"{genie(agent)}/conversations/events")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "conversation_id"


# --- the wire format ----------------------------------------------------------------------


def frames(wire: Seed001Format, *chunks: dict, run_uuid: str = "r-1") -> list[tuple[str, dict]]:
    """The (event name, data) pairs the format writes for ``chunks`` (ids 1, 2, …)."""
    written = "".join(
        wire.frame(StreamEvent(seq, run_uuid, chunk["type"], json.dumps(chunk)))
        for seq, chunk in enumerate(chunks, start=1)
    )
    pairs = []
    for block in written.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        data = json.loads(lines["data"])
        assert data.pop("created_at").endswith("Z")  # every event says when (checked on its own below)
        pairs.append((lines["event"], data))
    return pairs


def test_every_event_has_its_stored_time_and_every_frame_its_own_id():
    stored = datetime(2026, 12, 7, 14, 30, 5, 123456, tzinfo=UTC)
    chunks = [
        {"type": "start", "messageId": "m-1"},
        {"type": "text-delta", "id": "t", "delta": "Hi"},
        {"type": "finish"},
    ]

    written = "".join(
        Seed001Format().frame(StreamEvent(seq, "r-1", chunk["type"], json.dumps(chunk), epoch_micros(stored)))
        for seq, chunk in enumerate(chunks, start=7)
    )

    blocks = [dict(line.split(": ", 1) for line in block.split("\n")) for block in written.strip().split("\n\n")]
    assert [(b["id"], b["event"]) for b in blocks] == [
        ("7", "processing.started"),
        ("8", "agent.message.delta"),
        ("9.0", "agent.message"),
        ("9", "processing.finished"),
    ]
    assert {json.loads(b["data"])["created_at"] for b in blocks} == {"2026-12-07T14:30:05.123456Z"}


def test_a_resume_after_agent_message_writes_processing_finished_alone():
    wire = Seed001Format()
    wire.resume_from_frame(3, 1)  # Last-Event-ID: 3.0, agent.message's id
    chunks = [
        {"type": "start", "messageId": "m-1"},
        {"type": "text-delta", "id": "t", "delta": "Hi"},
        {"type": "finish"},
    ]

    written = [wire.frame(StreamEvent(seq, "r-1", c["type"], json.dumps(c))) for seq, c in enumerate(chunks, start=1)]

    assert "event: agent.message\n" not in written[2]
    assert written[2].startswith("id: 3\nevent: processing.finished\n")


def test_last_event_id_names_a_frame_only_on_a_stream_that_reads_whole_runs():
    def parse(value: str, *, frames: bool) -> object:
        return parse_last_event_id({b"last-event-id": value.encode()}, {}, frames=frames)

    assert parse("9.0", frames=True) == (9, 0)
    assert parse("9", frames=True) == (9, None)
    assert parse("9.0", frames=False).status == 400
    assert parse("9.x", frames=True).status == 400
    assert parse("0.1", frames=True).status == 400


def test_the_format_writes_the_seeds_event_names():
    wire = Seed001Format()

    written = frames(
        wire,
        {"type": "start", "messageId": "m-1"},
        {"type": "start-step"},
        {"type": "text-start", "id": "t"},
        {"type": "text-delta", "id": "t", "delta": "Refund "},
        {"type": "tool-input-available", "toolCallId": "c-1", "toolName": "refund", "input": {"order": 7}},
        {"type": "tool-approval-request", "approvalId": "c-1", "toolCallId": "c-1"},
        {"type": "data-approval-required", "data": {"call_id": "c-1", "tool_name": "refund", "input": {"order": 7}}},
        {"type": "tool-output-available", "toolCallId": "c-1", "output": {"ok": True}},
        {"type": "text-delta", "id": "t", "delta": "done."},
        {"type": "finish"},
    )

    assert [name for name, _ in written] == [
        "processing.started",
        "agent.message.delta",
        "skill.called",
        "skill.confirmation_required",
        "skill.completed",
        "agent.message.delta",
        "agent.message",
        "processing.finished",
    ]
    assert all(data["genie_run_id"] == "r-1" for _, data in written)
    assert written[3][1]["call_id"] == "c-1"
    assert written[-2][1] == {"genie_run_id": "r-1", "message_id": "m-1", "text": "Refund done."}
    assert written[-1][1] == {"genie_run_id": "r-1", "status": "succeeded"}


def test_the_format_names_runtime_connection_events_as_the_seed_does():
    link = {"url": "https://auth.example/authorize?state=s", "expires_at": "2030-01-01T00:00:00Z"}

    written = frames(
        Seed001Format(),
        {"type": "data-connection-auth-required", "data": {"attempt_id": "a-1", "auth_link": link, "provider": "crm"}},
        {"type": "data-connection-auth-success", "data": {"attempt_id": "a-1", "provider": "crm"}},
        {"type": "error", "errorText": "boom"},
        {"type": "finish"},
    )

    assert written[0] == (
        "runtime_connection.auth_required",
        {
            "genie_run_id": "r-1",
            "runtime_connection_attempt_id": "a-1",
            "auth_link": link,
            "provider": "crm",
            "call_id": None,
        },
    )
    assert written[1][0] == "runtime_connection.auth_success"
    assert written[1][1]["runtime_connection_attempt_id"] == "a-1"
    assert written[-1] == ("processing.finished", {"genie_run_id": "r-1", "status": "failed"})
    assert "agent.message" not in [name for name, _ in written]  # a failed run with no text has no reply


def test_a_resume_inside_a_merged_delta_reads_the_whole_run_and_marks_what_the_client_has(agent):
    session = SessionFactory(agent=agent)
    run = RunFactory(session=session)
    rows = [
        RunEvent(session=session, run=run, first_seq=1, seq=1, type="start", data={"type": "start"}),
        RunEvent(
            session=session,
            run=run,
            first_seq=2,
            seq=4,
            type="text-delta",
            data={"type": "text-delta", "id": "t", "delta": "onetwothree"},
            delta_lengths=[3, 3, 5],
        ),
    ]
    RunEvent.objects.bulk_create(rows)

    plan = plan_backlog(session=session, last_event_id=3, run_uuid=str(run.uuid), whole_run=True)

    assert plan.delivered_seq == 3
    assert [(e.seq, json.loads(e.data_json).get("delta")) for e in plan.backlog] == [
        (1, None),
        (3, "onetwo"),
        (4, "three"),
    ]
