"""Seed 002's Chat API at ``/chat``, in-process: the document's shapes, its flow (the
synchronous reply written by the real turn loop with a scripted model), its errors in its
own voice, and publishable keys."""

from __future__ import annotations

import pytest

from chat.models import Message, Session
from genie.models import AccessToken
from genie.services import create_access_token
from tests.conftest import bearer_client
from tests.factories import AgentFactory
from tests.runs.conftest import text

pytestmark = pytest.mark.django_db


@pytest.fixture
def replies(replies_in_process):
    """The model's replies; a synchronous message's run is executed in-process by the loop
    where the view waits for it (no worker here)."""
    return replies_in_process


def test_create_list_message_and_delete_as_the_document_writes_them(secret_api, team, agent, replies):
    agent.type = "support"
    agent.save()
    sales = AgentFactory(team=team, handle="sales-bot", type="sales")
    replies.scripts.append(text("We open ", "at nine."))

    created = secret_api.post(
        "/chat", {"agentId": agent.handle, "userId": "u_1", "metadata": {"src": "faq"}}, format="json"
    )
    secret_api.post("/chat", {"agentId": str(sales.uuid), "userId": "u_1"}, format="json")
    secret_api.post("/chat", {"agentId": agent.handle, "userId": "u_2"}, format="json")
    chat_id = created.json()["id"]
    session = Session.objects.get(uuid=chat_id)
    listed = secret_api.get("/chat", {"userId": "u_1", "agentType": "support"})
    reply = secret_api.post(f"/chat/{chat_id}/message", {"content": "When do you open?", "role": "user"}, format="json")
    agent_message = Message.objects.get(session=session, sender_role="agent")  # the chat had no message before
    messages = secret_api.get(f"/chat/{chat_id}/message")
    detail = secret_api.get(f"/chat/{chat_id}")
    deleted = secret_api.delete(f"/chat/{chat_id}")
    gone = secret_api.get(f"/chat/{chat_id}")

    assert created.status_code == 200
    assert created.json() == {
        "id": chat_id,
        "agentId": agent.handle,
        "teamId": str(team.uuid),
        "createdAt": created.json()["createdAt"],
    }
    assert (session.user_id, session.metadata) == ("u_1", {"src": "faq"})
    assert listed.status_code == 200
    assert listed.json() == {
        "chats": [{"id": chat_id, "agentId": agent.handle, "userId": "u_1", "createdAt": created.json()["createdAt"]}]
    }
    assert reply.status_code == 200
    assert reply.json() == {
        "id": str(agent_message.uuid),
        "content": "We open at nine.",
        "role": "assistant",
        "createdAt": reply.json()["createdAt"],
        "chatId": chat_id,
        "error": None,  # a failed or stopped reply's {code, message}
    }
    assert [(m["role"], m["content"]) for m in messages.json()["messages"]] == [
        ("user", "When do you open?"),
        ("assistant", "We open at nine."),
    ]
    assert set(messages.json()["messages"][0]) == {"id", "content", "role", "createdAt", "error"}
    assert detail.json()["messages"] == messages.json()["messages"]
    assert (detail.json()["agentId"], detail.json()["teamId"]) == (agent.handle, str(team.uuid))
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert not Session.objects.filter(uuid=chat_id).exists()


def test_a_user_lists_only_its_own_chats(api, member, agent):
    mine = api.post("/chat", {"agentId": agent.handle}, format="json").json()["id"]
    _, other_key = create_access_token(team=member.team, kind=AccessToken.Kind.SECRET)
    bearer_client(other_key).post("/chat", {"agentId": agent.handle}, format="json")

    listed = api.get("/chat").json()["chats"]

    assert [chat["id"] for chat in listed] == [mine]


def test_unknown_chats_are_404_in_the_documents_voice(secret_api):
    for chat_id in ["5e55105e-0000-4000-8000-00000000dead", "not-a-uuid"]:
        response = secret_api.get(f"/chat/{chat_id}/message")

        assert response.status_code == 404
        assert response.json() == {"statusCode": 404, "code": "not_found", "message": "No such chat.", "details": None}


def test_a_wrong_key_is_401_in_the_documents_voice(db):
    response = bearer_client("sk_live_not-a-key").get("/chat")

    assert response.status_code == 401
    assert response.json()["statusCode"] == 401
    assert response.json()["code"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "agentId"),
        ({"agentId": "nobody"}, "agentId"),
        ({"agentId": "{handle}", "metadata": "x"}, "metadata"),
        ({"agentId": "{handle}", "team": "other"}, "team"),
    ],
)
def test_a_bad_chat_is_400_naming_the_field_and_stores_nothing(secret_api, agent, body, field):
    body = {
        name: value.format(handle=agent.handle) if isinstance(value, str) else value for name, value in body.items()
    }

    response = secret_api.post("/chat", body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert field in response.json()["details"]
    assert not Session.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"), [({"content": ""}, "content"), ({"content": "Hi", "role": "assistant"}, "role")]
)
def test_a_bad_message_is_400_naming_the_field_and_stores_nothing(secret_api, agent, body, field):
    chat_id = secret_api.post("/chat", {"agentId": agent.handle}, format="json").json()["id"]

    response = secret_api.post(f"/chat/{chat_id}/message", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["details"]
    assert not Message.objects.exists()


def test_a_publishable_key_acts_on_its_chat_with_the_client_secret(team, agent):
    _, key = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)
    browser = bearer_client(key)

    created = browser.post("/chat", {"agentId": agent.handle, "userId": "visitor"}, format="json").json()
    without = browser.get(f"/chat/{created['id']}")
    with_secret = bearer_client(key, HTTP_X_SESSION_SECRET=created["clientSecret"]).get(f"/chat/{created['id']}")
    listed = browser.get("/chat")

    assert created["clientSecret"].startswith("cs_")
    assert without.status_code == 404
    assert "X-Session-Secret" in without.json()["message"]  # what is missing, and nothing else
    assert with_secret.status_code == 200
    assert with_secret.json()["id"] == created["id"]
    assert listed.status_code == 403
    assert listed.json()["statusCode"] == 403


def test_a_publishable_key_may_not_use_a_private_agent(team, agent):
    agent.is_public = False
    agent.save()
    _, key = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)

    response = bearer_client(key).post("/chat", {"agentId": agent.handle}, format="json")

    assert response.status_code == 400
    assert response.json()["details"] == {"agentId": ["No such agent."]}
