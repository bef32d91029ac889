from __future__ import annotations

import pytest
from django.core.management import call_command

from chat.models import Agent
from genie.models import AccessToken
from genie.services import create_access_token
from tests.conftest import bearer_client
from tests.factories import AgentFactory, SessionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_api(team):
    _, key = create_access_token(team=team, kind=AccessToken.Kind.SECRET)
    return bearer_client(key)


def test_create_agent_never_returns_its_api_key(admin_api, team):
    body = {
        "handle": "support",
        "name": "Support",
        "instructions": "Be kind.",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "base_url": "https://api.openai.com/v1",
        "api_key": "sk-provider-secret",
        "temperature": 0.3,
        "max_tokens": 256,
        "is_public": True,
    }

    created = admin_api.post("/api/v1/agents", body, format="json")
    listed = admin_api.get("/api/v1/agents")

    assert created.status_code == 201
    assert "api_key" not in created.json()
    assert created.json()["has_api_key"] is True
    assert "sk-provider-secret" not in listed.content.decode()
    assert Agent.objects.get(team=team, handle="support").api_key == "sk-provider-secret"


def test_update_agent_by_handle(admin_api, team):
    AgentFactory(team=team, handle="support", temperature=0.1)

    response = admin_api.patch("/api/v1/agents/support", {"temperature": 0.9, "instructions": "New."}, format="json")

    assert response.status_code == 200
    agent = Agent.objects.get(team=team, handle="support")
    assert (agent.temperature, agent.instructions) == (0.9, "New.")


def test_agent_validation(admin_api, team):
    AgentFactory(team=team, handle="taken")

    duplicate = admin_api.post("/api/v1/agents", {"handle": "taken", "name": "x", "model": "m"}, format="json")
    hot = admin_api.post(
        "/api/v1/agents", {"handle": "hot", "name": "x", "model": "m", "temperature": 5}, format="json"
    )
    sneaky = admin_api.post("/api/v1/agents", {"handle": "s", "name": "x", "model": "m", "team": 1}, format="json")

    assert duplicate.status_code == hot.status_code == sneaky.status_code == 400
    assert Agent.objects.filter(team=team).count() == 1


def test_an_agents_type_is_a_free_label_blank_by_default(admin_api, team):
    plain = admin_api.post("/api/v1/agents", {"handle": "plain", "name": "x", "model": "m"}, format="json")
    labelled = admin_api.post(
        "/api/v1/agents", {"handle": "desk", "name": "x", "model": "m", "type": " Support desk "}, format="json"
    )
    relabelled = admin_api.patch("/api/v1/agents/desk", {"type": "sales"}, format="json")
    too_long = admin_api.patch("/api/v1/agents/desk", {"type": "x" * 51}, format="json")

    assert plain.json()["type"] == ""
    assert labelled.json()["type"] == "Support desk"
    assert relabelled.json()["type"] == "sales"
    assert too_long.status_code == 400
    assert "type" in too_long.json()["error"]["details"]
    assert Agent.objects.get(team=team, handle="desk").type == "sales"


def test_delete_agent_with_sessions_is_409_unless_forced(admin_api, team):
    agent = AgentFactory(team=team, handle="busy")
    SessionFactory(agent=agent)
    AgentFactory(team=team, handle="idle")

    refused = admin_api.delete("/api/v1/agents/busy")
    archived = admin_api.delete("/api/v1/agents/busy?force=true")
    deleted = admin_api.delete("/api/v1/agents/idle")

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "agent_in_use"
    assert archived.status_code == 200
    assert archived.json()["archived_at"] is not None
    assert admin_api.get("/api/v1/agents/busy").status_code == 404
    assert agent.sessions.count() == 1  # transcripts stay
    assert deleted.status_code == 204
    assert not Agent.objects.filter(handle="idle").exists()


def test_api_keys_are_shown_once_and_revocable(admin_api, team):
    created = admin_api.post("/api/v1/api-keys", {"kind": "publishable", "name": "widget"}, format="json").json()
    listed = admin_api.get("/api/v1/api-keys").json()["results"]
    revoked = admin_api.delete(f"/api/v1/api-keys/{created['uuid']}")

    assert created["key"].startswith("pk_live_")
    assert all("key" not in item for item in listed)
    assert revoked.status_code == 204
    assert bearer_client(created["key"]).post("/api/v1/sessions", {"text": "hi"}, format="json").status_code == 401


def test_create_api_key_command(team, capsys):
    AgentFactory(team=team, is_default=True)
    call_command("create_api_key", "--team", team.slug, "--kind", "secret", "--name", "server")
    key = capsys.readouterr().out.strip()

    assert key.startswith("sk_live_")
    assert bearer_client(key).get("/api/v1/agents").status_code == 200


def test_an_agents_greeting_and_suggested_prompts_are_blank_by_default_and_validated(admin_api, team):
    plain = admin_api.post("/api/v1/agents", {"handle": "plain", "name": "x", "model": "m"}, format="json")
    greeted = admin_api.post(
        "/api/v1/agents",
        {
            "handle": "desk",
            "name": "Help desk",
            "model": "m",
            "description": "Answers questions about orders.",
            "greeting": "Hi! Ask me about **your order**.",
            "suggested_prompts": ["Where is my order?", "Return an item"],
        },
        format="json",
    )
    too_many = admin_api.patch("/api/v1/agents/desk", {"suggested_prompts": [f"p{n}" for n in range(7)]}, format="json")
    blank = admin_api.patch("/api/v1/agents/desk", {"suggested_prompts": ["ok", " "]}, format="json")
    not_strings = admin_api.patch("/api/v1/agents/desk", {"suggested_prompts": [{"text": "x"}]}, format="json")
    too_long = admin_api.patch("/api/v1/agents/desk", {"suggested_prompts": ["x" * 201]}, format="json")
    not_a_list = admin_api.patch("/api/v1/agents/desk", {"suggested_prompts": "Where is my order?"}, format="json")

    assert plain.status_code == 201
    assert (plain.json()["greeting"], plain.json()["suggested_prompts"], plain.json()["description"]) == ("", [], "")
    assert greeted.status_code == 201
    assert greeted.json()["greeting"] == "Hi! Ask me about **your order**."
    assert greeted.json()["suggested_prompts"] == ["Where is my order?", "Return an item"]
    for refused in (too_many, blank, not_strings, too_long, not_a_list):
        assert refused.status_code == 400, refused.content
        assert refused.json()["error"]["code"] == "validation_error"
        assert "suggested_prompts" in refused.json()["error"]["details"]
    assert Agent.objects.get(team=team, handle="desk").suggested_prompts == ["Where is my order?", "Return an item"]


def test_the_agent_profile_is_what_an_empty_chat_shows_to_whoever_may_start_a_chat(team, member):
    AgentFactory(
        team=team,
        handle="desk",
        name="Help desk",
        is_default=True,
        description="Orders and returns.",
        greeting="Hello!",
        suggested_prompts=["Track my order"],
        instructions="Secret instructions.",
    )
    AgentFactory(team=team, handle="internal", is_public=False, greeting="Staff only")
    _, pk = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)
    _, personal = create_access_token(team=team, kind=AccessToken.Kind.PERSONAL, user=member.user)
    widget, teammate = bearer_client(pk), bearer_client(personal)

    default = widget.get("/api/v1/agent-profile")
    named = widget.get("/api/v1/agent-profile?agent=desk")
    private = widget.get("/api/v1/agent-profile?agent=internal")
    private_for_a_member = teammate.get("/api/v1/agent-profile?agent=internal")
    unknown = teammate.get("/api/v1/agent-profile?agent=nobody")

    assert default.status_code == 200
    assert default.json() == {
        "handle": "desk",
        "name": "Help desk",
        "description": "Orders and returns.",
        "greeting": "Hello!",
        "suggested_prompts": ["Track my order"],
    }
    assert named.json() == default.json()
    assert private.status_code == 404
    assert private.json()["error"]["code"] == "not_found"
    assert private_for_a_member.json()["greeting"] == "Staff only"
    assert unknown.status_code == 404
