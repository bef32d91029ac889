"""NUL characters (U+0000) are a 400 in each protocol's own error voice, wherever a request
carries text, and nothing is stored (issue 26, finding 10: PostgreSQL's text cannot hold
them and these were 500s): JSON bodies of the canonical API, /v1, /api/chat and seeds
001-003, multipart fields and file names, path parameters (``%00``), query strings and
headers, and the SSE routes Channels serves outside Django."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.testing import HttpCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile

from chat.models import Message, Session, Upload
from genie.models import AccessToken
from genie.services import create_access_token

pytestmark = pytest.mark.django_db

NUL = "\x00"


def canonical(body: dict) -> dict:
    return {"error": {"code": "malformed_request", "message": body["error"]["message"], "details": None}}


# (method, path, body, how the protocol writes the error): every JSON body with a NUL
# somewhere in its text: a value, a nested value, a key.
BODIES = [
    ("post", "/api/v1/sessions", {"text": f"Hi{NUL}"}, "canonical"),
    ("post", "/api/v1/sessions", {"text": "Hi", "metadata": {"source": f"a{NUL}b"}}, "canonical"),
    ("post", "/api/v1/sessions", {"text": "Hi", "metadata": {f"k{NUL}": 1}}, "canonical"),
    ("post", "/api/v1/sessions", {"text": "Hi", "user_id": NUL}, "canonical"),
    ("post", "/api/v1/sessions", {"text": "Hi", "ui_context": {"page": [f"{NUL}"]}}, "canonical"),
    ("post", "/v1/chat/completions", {"model": "{handle}", "messages": [{"role": "user", "content": NUL}]}, "openai"),
    ("post", "/v1/chat/completions", {"model": f"x{NUL}", "messages": [{"role": "user", "content": "Hi"}]}, "openai"),
    (
        "post",
        "/api/chat",
        {"id": f"c{NUL}", "trigger": "submit-message", "messages": [{"id": "m", "role": "user", "parts": []}]},
        "aisdk",
    ),
    (
        "post",
        "/api/chat",
        {
            "id": "c1",
            "trigger": "submit-message",
            "messages": [{"id": "m", "role": "user", "parts": [{"type": "text", "text": NUL}]}],
        },
        "aisdk",
    ),
    ("post", "/api/v1/genies/{handle}/chat/conversations", {"title": NUL}, "seed001"),
    ("post", "/api/v1/genies/{handle}/chat/conversations", {"metadata": {"a": NUL}}, "seed001"),
    ("post", "/chat", {"agentId": "{handle}", "userId": f"u{NUL}"}, "seed002"),
    ("post", "/chat", {"agentId": "{handle}", "metadata": {"src": NUL}}, "seed002"),
]


def assert_voice(response, voice: str) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    if voice == "canonical":
        assert body == canonical(body)
        assert "NUL" in body["error"]["message"]
    elif voice == "openai":
        assert body["error"]["type"] == "invalid_request_error"
        assert "NUL" in body["error"]["message"]
    elif voice == "aisdk":
        assert body["type"] == "error"
        assert body["error"]["code"] == "malformed_request"
    elif voice == "seed001":
        assert (body["status"], body["code"]) == (400, "malformed_request")
    elif voice == "seed002":
        assert (body["statusCode"], body["code"]) == (400, "malformed_request")
    elif voice == "seed003":
        assert (body["type"], body["code"]) == ("error", "malformed_request")


@pytest.mark.parametrize(("method", "path", "body", "voice"), BODIES)
def test_a_nul_in_a_json_body_is_400_in_the_protocols_voice_and_stores_nothing(
    secret_api, agent, method, path, body, voice
):
    raw = json.dumps(body).replace("{handle}", agent.handle)

    response = getattr(secret_api, method)(path.format(handle=agent.handle), raw, content_type="application/json")

    assert_voice(response, voice)
    assert not Session.objects.exists()
    assert not Message.objects.exists()


def test_a_nul_in_a_message_to_an_existing_session_stores_nothing(secret_api, agent):
    session = secret_api.post("/api/v1/sessions", {"text": "Hi"}, format="json").json()["uuid"]
    chat = secret_api.post("/chat", {"agentId": agent.handle}, format="json").json()["id"]
    before = Message.objects.count()
    attempts = [
        (f"/api/v1/sessions/{session}/messages", {"text": f"And{NUL}"}, "canonical"),
        (f"/api/v1/sessions/{session}/messages", {"text": "And", "metadata": {NUL: NUL}}, "canonical"),
        (f"/api/v1/genies/{agent.handle}/chat/conversations/{session}/messages", {"text": NUL}, "seed001"),
        (f"/chat/{chat}/message", {"content": f"x{NUL}", "role": "user"}, "seed002"),
        (f"/api/v1/chat/sessions/{session}/messages", {"content": NUL}, "seed003"),
        (f"/api/v1/chat/sessions/{session}/messages", {"content": "x", "uiContext": {"a": NUL}}, "seed003"),
    ]
    for path, body, voice in attempts:
        response = secret_api.post(path, json.dumps(body), content_type="application/json")

        assert_voice(response, voice)
    patched = secret_api.patch(f"/api/v1/sessions/{session}", {"title": NUL}, format="json")
    assert_voice(patched, "canonical")
    assert Message.objects.count() == before
    assert Session.objects.get(uuid=session).title != NUL


def test_a_nul_in_a_path_query_or_header_is_400_not_500(secret_api, agent):
    session = secret_api.post("/api/v1/sessions", {"text": "Hi"}, format="json").json()["uuid"]
    attempts = [
        ("/api/v1/agents/sup%00port", {}, "canonical"),
        ("/api/v1/sessions", {"search": NUL}, "canonical"),
        ("/api/v1/sessions", {"agent": f"a{NUL}"}, "canonical"),
        ("/v1/models/gpt%00x", {}, "openai"),
        ("/api/chat/c%00/messages", {}, "aisdk"),
        (f"/api/v1/genies/{agent.handle}%00/chat/conversations/{session}/messages", {}, "seed001"),
        ("/chat/abc%00def", {}, "seed002"),
        ("/chat", {"userId": NUL}, "seed002"),
        ("/api/v1/chat/sessions/x%00y/messages", {}, "seed003"),
    ]
    for path, query, voice in attempts:
        if voice == "seed003":  # a POST-only route
            response = secret_api.post(path, {"content": "x"}, format="json")
        else:
            response = secret_api.get(path, query)

        assert_voice(response, voice)
    keyed = secret_api.post("/api/v1/sessions", {"text": "Hi"}, format="json", HTTP_IDEMPOTENCY_KEY=f"k{NUL}")
    assert_voice(keyed, "canonical")
    assert Session.objects.count() == 1


def test_a_nul_in_a_multipart_field_or_file_name_is_400(secret_api, agent):
    session = secret_api.post("/api/v1/sessions", {"text": "Hi"}, format="json").json()["uuid"]
    url = f"/api/v1/sessions/{session}/uploads"

    field = secret_api.post(url, {"file": SimpleUploadedFile("a.txt", b"hello"), f"note{NUL}": "x"}, format="multipart")
    binary = secret_api.post(
        url, {"file": SimpleUploadedFile("a.png", b"\x89PNG\r\n\x1a\n\x00\x00")}, format="multipart"
    )

    assert_voice(field, "canonical")
    assert binary.status_code == 201  # a file's bytes are data: NUL bytes are fine there
    assert Upload.objects.count() == 1


def test_a_nul_in_an_sse_route_is_400_in_its_voice(agent):
    from genie.asgi import application

    _, key = create_access_token(team=agent.team, kind=AccessToken.Kind.SECRET)
    headers = [(b"authorization", f"Bearer {key}".encode())]

    async def get(path: str, query: bytes = b"") -> dict:
        communicator = HttpCommunicator(application, "GET", path, headers=headers)
        communicator.scope["query_string"] = query
        return await communicator.get_response(timeout=10)

    session = "5e55105e-0000-4000-8000-00000000dead"
    chat = asyncio.run(get("/api/chat/c\x00/stream"))
    stream = asyncio.run(get(f"/api/v1/sessions/{session}/stream", b"after=%00"))

    assert chat["status"] == 400
    assert json.loads(chat["body"])["type"] == "error"
    assert stream["status"] == 400
    assert json.loads(stream["body"])["error"]["code"] == "malformed_request"
