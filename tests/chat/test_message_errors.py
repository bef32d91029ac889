"""A failed or stopped reply keeps its error, and every transcript shows it: the messages
API (list, detail, ``?include=messages``), the AI SDK's history (message metadata
``error``), seed 001's and seed 002's transcripts."""

from __future__ import annotations

import pytest

from chat.services import start_session
from genie.auth import Caller
from runs import services as run_services
from runs.models import Run
from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db

FAILED = {"code": "provider_error", "message": "The model is unreachable."}
STOPPED = {"code": "stopped", "message": "The reply was stopped before it was complete."}


@pytest.fixture
def turns(agent, member):
    """A chat of three turns: the first failed, the second stopped, the third answered."""
    caller = Caller(team=agent.team, kind="user", user=member.user)
    session, failed, _ = start_session(caller=caller, agent=agent, text="Hi", chat_id="chat-errors")
    run_services.end_run(
        run=failed, status=Run.Status.FAILED, error_code=FAILED["code"], error_message=FAILED["message"]
    )
    runs = [failed]
    for status, reply in ((Run.Status.STOPPED, "Half a"), (Run.Status.SUCCEEDED, "Hello.")):
        user_message = session.messages.create(sender_role="user", text="Again")
        run = run_services.queue_run(session=session, user_message=user_message)
        run_services.end_run(run=run, status=status, text=reply)
        runs.append(run)
    return session, runs


def test_the_messages_api_shows_each_replys_error(api, turns):
    session, (failed, _, _) = turns

    listed = api.get(f"/api/v1/sessions/{session.uuid}/messages").json()["results"]
    detail = api.get(f"/api/v1/sessions/{session.uuid}?include=messages").json()["messages"]
    one = api.get(f"/api/v1/sessions/{session.uuid}/messages/{failed.agent_message.uuid}").json()

    for messages in (listed, detail):
        assert [(m["sender_role"], m["status"], m["error"]) for m in messages] == [
            ("user", "complete", None),
            ("agent", "failed", FAILED),
            ("user", "complete", None),
            ("agent", "stopped", STOPPED),
            ("user", "complete", None),
            ("agent", "complete", None),
        ]
    assert one["error"] == FAILED


def test_the_ai_sdk_history_carries_the_error_as_message_metadata(api, turns):
    body = api.get("/api/chat/chat-errors/messages").json()

    replies = [message["metadata"]["error"] for message in body if message["role"] == "assistant"]
    assert replies == [FAILED, STOPPED, None]


def test_the_seed_transcripts_show_the_error(api, secret_api, agent, turns):
    session, _ = turns

    seed001 = api.get(f"/api/v1/genies/{agent.handle}/chat/conversations/{session.uuid}/messages").json()
    seed002 = secret_api.get(f"/chat/{session.uuid}/message").json()

    assert [m["error"] for m in seed001["results"] if m["role"] == "agent"] == [FAILED, STOPPED, None]
    assert [m["error"] for m in seed002["messages"] if m["role"] == "assistant"] == [FAILED, STOPPED, None]


def test_the_schema_names_the_error(personal_key):
    schema = bearer_client(personal_key).get("/api/v1/schema", HTTP_ACCEPT="application/json").json()

    error = schema["components"]["schemas"]["Message"]["properties"]["error"]
    assert error.get("nullable") is True or {"type": "null"} in error.get("oneOf", [])
