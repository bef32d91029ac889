"""The OpenAI-compatible endpoint in process: agents as models, how a call maps to a
session, and every bad input answered in OpenAI's error shape with nothing stored."""

from __future__ import annotations

from unittest import mock

import pytest
from django.utils import timezone

from chat.models import Message, Session
from genie.models import AccessToken
from genie.services import create_access_token
from runs import services as run_services
from runs.formats import ChatCompletionChunkFormat
from runs.handoff import HANDOFF_HEADER, take_handoff
from runs.models import Run
from tests.conftest import bearer_client
from tests.factories import AgentFactory, MessageFactory, SessionFactory

pytestmark = pytest.mark.django_db

URL = "/v1/chat/completions"


def ask(client, body: dict, **headers: str):
    return client.post(URL, body, format="json", **headers)


def turn(model: str, text: str = "Hello", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def finish_with(text: str, usage: run_services.Usage | None = None, status: str = Run.Status.SUCCEEDED, **kwargs):
    """``wait_for_finish`` for a test without a worker: the run ends at once, as given."""

    def wait(*, run: Run, timeout: float, or_pause: bool = False) -> bool:
        run_services.end_run(run=run, status=status, text=text, usage=usage, **kwargs)
        return True

    return mock.patch("runs.handoff.wait_for_finish", side_effect=wait)


def test_models_lists_the_teams_live_agents(api, agent, team):
    AgentFactory(team=team, handle="support", name="Support")
    AgentFactory(team=team, handle="retired", archived_at=timezone.now())
    AgentFactory(handle="elsewhere")  # another team's

    response = api.get("/v1/models")

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == sorted([agent.handle, "support"])
    support = next(model for model in body["data"] if model["id"] == "support")
    assert support["object"] == "model"
    assert support["owned_by"] == team.slug
    assert isinstance(support["created"], int)


def test_one_model_by_handle_and_an_unknown_one_is_model_not_found(api, agent):
    assert api.get(f"/v1/models/{agent.handle}").json()["id"] == agent.handle

    missing = api.get("/v1/models/gpt-4o")

    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "message": "The model `gpt-4o` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def test_a_publishable_key_reads_no_models(team, agent):
    _, key = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)

    response = bearer_client(key).get("/v1/models")

    assert response.status_code == 403
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["code"] == "publishable_key_forbidden"


@pytest.mark.parametrize("key", [None, "sk_live_not-a-key"])
def test_a_missing_or_wrong_key_is_invalid_api_key(client, key):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}

    response = client.post(URL, turn("assistant"), content_type="application/json", **headers)

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}


def test_an_unknown_model_is_404_model_not_found_and_stores_nothing(api, agent):
    response = ask(api, turn("no-such-agent"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert Session.objects.count() == 0


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"n": 2}, "n", "unsupported_parameter"),
        ({"functions": [{"name": "f"}]}, "functions", "unsupported_parameter"),
        ({"logprobs": True}, "logprobs", "unsupported_parameter"),
        ({"frobnicate": 1}, "frobnicate", "unknown_parameter"),
        ({"messages": []}, "messages", "min_length"),
        ({"messages": [{"role": "assistant", "content": "Hi"}]}, "messages", "invalid_value"),
        ({"messages": [{"role": "user", "content": "   "}]}, "messages[0].content", "blank"),
        ({"messages": [{"role": "tool", "content": "42", "tool_call_id": "x"}]}, "messages", "invalid_value"),
        ({"messages": [{"role": "robot", "content": "42"}]}, "messages[0].role", "invalid_choice"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]},
            "messages[0].content",
            "unsupported_content",
        ),
        ({"stream_options": {"include_usage": "maybe"}}, "stream_options.include_usage", "invalid"),
    ],
)
def test_bad_input_is_400_naming_the_param_and_stores_nothing(api, agent, extra, param, code):
    response = ask(api, {**turn(agent.handle), **extra})

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code
    assert error["message"]
    assert Session.objects.count() == 0
    assert Message.objects.count() == 0


def test_sampling_parameters_are_accepted(api, agent):
    body = turn(agent.handle, temperature=0.2, top_p=1, max_tokens=50, presence_penalty=0, user="u-1", n=1)

    with finish_with("Hi."):
        response = ask(api, body)

    assert response.status_code == 200, response.json()
    assert Session.objects.get().user_id == "u-1"


def test_a_plain_call_is_a_new_session_seeded_with_the_conversation(api, agent, member):
    body = {
        "model": agent.handle,
        "messages": [
            {"role": "system", "content": "You are a pirate."},
            {"role": "user", "content": "Name a cat."},
            {"role": "assistant", "content": "Miso."},
            {"role": "user", "content": [{"type": "text", "text": "Another"}, {"type": "text", "text": "one?"}]},
        ],
    }

    with finish_with("Juniper.", usage=run_services.Usage(prompt_tokens=12, completion_tokens=3)):
        response = ask(api, body)

    assert response.status_code == 200
    session = Session.objects.get(uuid=response["Genie-Session"])
    run = session.runs.get()
    assert response.json() == {
        "id": f"chatcmpl-{run.uuid.hex}",
        "object": "chat.completion",
        "created": int(run.created_at.timestamp()),
        "model": agent.handle,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Juniper.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }
    transcript = list(session.messages.order_by("created_at", "id").values_list("sender_role", "text"))
    assert transcript == [
        ("user", "Name a cat."),
        ("agent", "Miso."),
        ("user", "Another\none?"),
        ("agent", "Juniper."),
    ]
    assert session.owner == member.user  # the caller's, as a session it started through the API


def test_genie_session_continues_with_the_last_message_only(api, agent, member):
    session = SessionFactory(agent=agent, owner=member.user)
    MessageFactory(session=session, text="Stored.")
    MessageFactory(session=session, sender_role=Message.SenderRole.AGENT, text="Also stored.")
    body = {
        "model": agent.handle,
        "messages": [
            {"role": "user", "content": "Stored."},
            {"role": "assistant", "content": "Also stored."},
            {"role": "user", "content": "And now?"},
        ],
    }

    with finish_with("Now this."):
        response = ask(api, body, HTTP_GENIE_SESSION=str(session.uuid))

    assert response.status_code == 200
    assert response["Genie-Session"] == str(session.uuid)
    assert list(session.messages.order_by("created_at", "id").values_list("text", flat=True)) == [
        "Stored.",
        "Also stored.",
        "And now?",
        "Now this.",
    ]


@pytest.mark.parametrize("value", ["not-a-uuid", "00000000-0000-4000-8000-000000000000", "other-users"])
def test_a_session_the_caller_cannot_reach_is_404_and_nothing_is_stored(api, agent, team, value):
    if value == "other-users":
        value = str(SessionFactory(agent=agent).uuid)  # the team's, but not this user's
    before = Message.objects.count()

    response = ask(api, turn(agent.handle), HTTP_GENIE_SESSION=value)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "session_not_found"
    assert response.json()["error"]["param"] == "Genie-Session"
    assert Message.objects.count() == before


def test_continuing_a_session_with_another_agent_is_400(api, agent, team, member):
    session = SessionFactory(agent=AgentFactory(team=team, handle="other"), owner=member.user)

    response = ask(api, turn(agent.handle), HTTP_GENIE_SESSION=str(session.uuid))

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"
    assert response.json()["error"]["code"] == "model_mismatch"
    assert session.messages.count() == 0


def test_a_busy_session_is_409_run_active(api, agent, member):
    session = SessionFactory(agent=agent, owner=member.user)
    api.post(f"/api/v1/sessions/{session.uuid}/messages", {"text": "one"}, format="json")

    response = ask(api, turn(agent.handle), HTTP_GENIE_SESSION=str(session.uuid))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "run_active"
    assert session.messages.count() == 2


def test_a_failed_turn_is_a_server_error(api, agent):
    with finish_with("", status=Run.Status.FAILED, error_code="provider_error", error_message="The model is down."):
        response = ask(api, turn(agent.handle))

    assert response.status_code == 502
    assert response.json()["error"] == {
        "message": "The model is down.",
        "type": "server_error",
        "param": None,
        "code": "turn_failed",
    }


def test_a_paused_turn_without_client_tool_calls_finishes_with_stop(api, agent):
    def pause(*, run: Run, timeout: float, or_pause: bool = False) -> bool:
        assert or_pause
        run.mark_waiting(state={"usage": {"prompt_tokens": 4, "completion_tokens": 2}}, expires_at=timezone.now())
        Message.objects.filter(pk=run.agent_message_id).update(text="Let me ask.")
        return True

    with mock.patch("runs.handoff.wait_for_finish", side_effect=pause):
        response = ask(api, turn(agent.handle))

    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == "Let me ask."
    assert response["Genie-Run-Status"] == "requires_action"
    assert response.json()["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}


def test_a_wait_that_times_out_is_504_and_the_turn_goes_on(api, agent):
    with mock.patch("runs.handoff.wait_for_finish", return_value=False):
        response = ask(api, turn(agent.handle))

    assert response.status_code == 504
    assert response.json()["error"]["type"] == "server_error"
    assert response.json()["error"]["code"] == "run_timeout"
    assert Run.objects.get().status == Run.Status.QUEUED


def test_a_streamed_call_hands_its_turn_to_the_relay_in_openai_chunks(api, agent):
    response = ask(api, turn(agent.handle, stream=True, stream_options={"include_usage": True}))

    assert response.status_code == 200
    run = Run.objects.get()
    assert response["Genie-Session"] == str(run.session.uuid)
    plan, wire = take_handoff(response[HANDOFF_HEADER.decode()])
    assert plan.run_filter == plan.close_after_run == str(run.uuid)
    assert isinstance(wire, ChatCompletionChunkFormat)
    assert wire.model == agent.handle
    assert wire.include_usage is True


def test_a_publishable_key_uses_public_agents_only(team, agent):
    private = AgentFactory(team=team, handle="internal", is_public=False)
    _, key = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)
    client = bearer_client(key)

    refused = ask(client, turn(private.handle))
    with finish_with("Hi."):
        served = ask(client, turn(agent.handle))

    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "model_not_found"
    assert served.status_code == 200
    assert served["Genie-Client-Secret"].startswith("cs_")


def test_over_the_rate_limit_is_rate_limit_exceeded(api, agent, settings, fresh_rate_counters):
    settings.GENIE_RATE_PER_KEY = "1/min"
    api.get("/v1/models")

    response = api.get("/v1/models")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert response.json()["error"]["type"] == "requests"
    assert "Retry-After" in response


def test_an_unknown_v1_url_is_an_openai_404(api):
    response = api.post("/v1/completions", {}, format="json")

    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (POST /v1/completions)"
