"""The tools API: definitions on agents (validation, the webhook secret shown once), the
approval and result endpoints, pending actions on the session and the run, and the
transcript's ``tool_calls``. Runs are driven in-process with a scripted model."""

from __future__ import annotations

import pytest

from genie.models import AccessToken
from genie.services import create_access_token
from runs import loop
from runs.exceptions import RunRequiresAction
from runs.handoff import reply_of, wait_for_reply
from runs.models import Run, ToolCall
from runs.services import Turn, queue_run
from tests.conftest import bearer_client
from tests.factories import MessageFactory, SessionFactory
from tests.runs.conftest import published_types, text, tool_call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_settings")]

APPROVE_DELETE = {"name": "delete_order", "kind": "client", "requires_approval": True, "description": "Delete."}


@pytest.fixture
def paused(api, member, agent, script, enqueued):
    """A session of the member whose run waits for an approval of ``delete_order``."""
    agent.tools = [APPROVE_DELETE]
    agent.save()
    session = SessionFactory(agent=agent, owner=member.user)
    run = queue_run(session=session, user_message=MessageFactory(session=session, text="delete order 7"))
    script(tool_call("delete_order", '{"order": 7}'), text("Deleted."))
    loop.execute_run(run.pk)
    return Run.objects.get(pk=run.pk)


def test_agents_take_tool_definitions_and_show_the_webhook_secret_once(secret_api):
    body = {
        "handle": "ops",
        "name": "Ops",
        "provider": "openai",
        "model": "m",
        "max_steps": 4,
        "tools": [
            {"name": "refund", "kind": "webhook", "url": "https://hooks.example/refund", "requires_approval": True},
            {"name": "navigate", "kind": "client", "input_schema": {"type": "object", "properties": {}}},
        ],
    }

    created = secret_api.post("/api/v1/agents", body, format="json")
    shown = secret_api.get("/api/v1/agents/ops").json()
    rotated = secret_api.post("/api/v1/agents/ops/webhook-secret")

    assert created.status_code == 201
    assert created.json()["webhook_secret"].startswith("whsec_")
    assert "webhook_secret" not in shown
    assert shown["max_steps"] == 4
    assert [tool["name"] for tool in shown["tools"]] == ["refund", "navigate"]
    assert shown["tools"][0]["timeout"] == 30
    assert shown["tools"][0]["input_schema"] == {"type": "object"}
    assert shown["tools"][1]["wait_for_result"] is True  # a client tool waits for its result by default
    assert "wait_for_result" not in shown["tools"][0]  # a field of client tools only
    assert rotated.status_code == 200
    assert rotated.json()["webhook_secret"] not in {created.json()["webhook_secret"], ""}


@pytest.mark.parametrize(
    ("tool", "field"),
    [
        ({"name": "bad name!", "kind": "client"}, "name"),
        ({"name": "t", "kind": "smoke-signal"}, "kind"),
        ({"name": "t", "kind": "webhook"}, "url"),
        ({"name": "t", "kind": "webhook", "url": "http://169.254.169.254/"}, "url"),
        ({"name": "t", "kind": "mcp"}, "server_url"),
        ({"name": "t", "kind": "client", "input_schema": {"type": "objekt"}}, "input_schema"),
        ({"name": "t", "kind": "client", "input_schema": {"type": "string"}}, "input_schema"),
        ({"name": "t", "kind": "client", "timeout": 500}, "timeout"),
        ({"name": "t", "kind": "client", "surprise": 1}, "surprise"),
        ({"name": "t", "kind": "client", "wait_for_result": "maybe"}, "wait_for_result"),
    ],
)
def test_a_bad_tool_definition_is_400_naming_the_field(secret_api, settings, tool, field):
    settings.GENIE_EGRESS_ALLOW = ""
    body = {"handle": "x", "name": "X", "provider": "openai", "model": "m", "tools": [tool]}

    response = secret_api.post("/api/v1/agents", body, format="json")

    assert response.status_code == 400
    assert field in str(response.json()["error"]["details"]["tools"])


def test_tool_names_are_unique_in_an_agent(secret_api):
    tools = [{"name": "t", "kind": "client"}, {"name": "t", "kind": "client"}]
    body = {"handle": "x", "name": "X", "provider": "openai", "model": "m", "tools": tools}

    response = secret_api.post("/api/v1/agents", body, format="json")

    assert response.status_code == 400
    assert "unique" in str(response.json()["error"]["details"])


def test_a_paused_run_lists_its_pending_action_on_the_session_and_the_run(api, paused):
    call = ToolCall.objects.get(run=paused)

    session = api.get(f"/api/v1/sessions/{paused.session.uuid}").json()
    run = api.get(f"/api/v1/sessions/{paused.session.uuid}/runs/{paused.uuid}").json()

    (action,) = session["pending_actions"]
    assert action["type"] == "approval"
    assert action["call_id"] == call.call_id
    assert action["tool_name"] == "delete_order"
    assert action["input"] == {"order": 7}
    assert action["url"].endswith(f"/tool-calls/{call.call_id}/approval")
    assert action["expires_at"] is not None
    assert run["status"] == "requires_action"
    assert run["pending_actions"] == session["pending_actions"]


def test_approve_then_the_client_tool_waits_for_its_result(api, paused, enqueued):
    call = ToolCall.objects.get(run=paused)
    base = f"/api/v1/sessions/{paused.session.uuid}/tool-calls/{call.call_id}"

    approved = api.post(f"{base}/approval", {"approved": True}, format="json")
    again = api.post(f"{base}/approval", {"approved": False}, format="json")
    loop.execute_run(paused.pk)  # the continuation enqueued on commit
    waiting = api.get(f"/api/v1/sessions/{paused.session.uuid}").json()["pending_actions"]
    result = api.post(f"{base}/result", {"output": {"deleted": True}}, format="json")
    loop.execute_run(paused.pk)

    assert approved.status_code == 200
    assert approved.json() == {"call_id": call.call_id, "status": "approved"}
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_decided"
    assert enqueued["continue_run"][0] == paused.pk
    assert [(a["type"], a["url"].rsplit("/", 1)[-1]) for a in waiting] == [("client_tool", "result")]
    assert result.status_code == 200
    assert "data-client-tool-call" in published_types(paused)
    transcript = api.get(f"/api/v1/sessions/{paused.session.uuid}/messages").json()["results"]
    (tool_call_record,) = transcript[-1]["tool_calls"]
    assert tool_call_record["status"] == "succeeded"
    assert tool_call_record["output"] == {"deleted": True}
    assert tool_call_record["decided_by"].startswith("user:")
    assert transcript[-1]["text"] == "Deleted."


def test_deny_via_the_api(api, paused):
    call = ToolCall.objects.get(run=paused)

    response = api.post(
        f"/api/v1/sessions/{paused.session.uuid}/tool-calls/{call.call_id}/approval",
        {"approved": False, "reason": "no"},
        format="json",
    )

    assert response.json() == {"call_id": call.call_id, "status": "denied"}
    call.refresh_from_db()
    assert (call.status, call.reason) == (ToolCall.Status.DENIED, "no")


def test_an_unknown_call_or_another_callers_call_is_404(api, paused, team):
    call = ToolCall.objects.get(run=paused)
    _, other_key = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)
    url = f"/api/v1/sessions/{paused.session.uuid}/tool-calls/{call.call_id}/approval"

    unknown = api.post(
        f"/api/v1/sessions/{paused.session.uuid}/tool-calls/call_nope/approval", {"approved": True}, format="json"
    )
    stranger = bearer_client(other_key).post(url, {"approved": True}, format="json")
    bad_body = api.post(url, {"approved": "maybe"}, format="json")

    assert unknown.status_code == 404
    assert stranger.status_code == 404
    assert bad_body.status_code == 400
    call.refresh_from_db()
    assert call.status == ToolCall.Status.PENDING_APPROVAL


def test_a_patch_of_tools_replaces_them_whole_with_their_defaults(secret_api):
    secret_api.post("/api/v1/agents", {"handle": "x", "name": "X", "provider": "openai", "model": "m"}, format="json")

    patched = secret_api.patch("/api/v1/agents/x", {"tools": [{"name": "nav", "kind": "client"}]}, format="json")
    kindless = secret_api.patch("/api/v1/agents/x", {"tools": [{"name": "nav"}]}, format="json")

    assert patched.status_code == 200
    (tool,) = patched.json()["tools"]
    assert tool["input_schema"] == {"type": "object"}
    assert tool["timeout"] == 30
    assert tool["requires_approval"] is False
    assert kindless.status_code == 400
    assert "kind" in str(kindless.json()["error"]["details"])


def test_a_connection_must_name_a_provider_of_the_team_and_not_a_client_tool(secret_api):
    base = {"handle": "x", "name": "X", "provider": "openai", "model": "m"}
    unknown = {"name": "cal", "kind": "webhook", "url": "https://hooks.example/cal", "connection": "nowhere"}
    client = {"name": "nav", "kind": "client", "connection": "nowhere"}

    first = secret_api.post("/api/v1/agents", {**base, "tools": [unknown]}, format="json")
    second = secret_api.post("/api/v1/agents", {**base, "tools": [client]}, format="json")

    assert first.status_code == 400
    assert "nowhere" in str(first.json()["error"]["details"])
    assert second.status_code == 400
    assert "client tool" in str(second.json()["error"]["details"])


def test_a_synchronous_reply_that_pauses_is_409_requires_action_naming_what_waits(api, paused, rf):
    request = rf.get("/")
    with pytest.raises(RunRequiresAction) as raised:
        reply_of(request, wait_for_reply(request, Turn(paused.session, paused)))

    (action,) = raised.value.details["pending_actions"]
    assert raised.value.status_code == 409
    assert action["call_id"] == ToolCall.objects.get(run=paused).call_id
    assert action["type"] == "approval"
    assert raised.value.details["run_uuid"] == str(paused.uuid)
