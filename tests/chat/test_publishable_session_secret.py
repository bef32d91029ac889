"""A publishable key that names a session without sending its client secret gets a 404
that says what is missing (``X-Session-Secret``), in each API's voice; nothing else is told."""

from __future__ import annotations

import pytest

from genie.models import AccessToken
from genie.services import create_access_token
from runs.sse import StreamRefusal, plan_stream
from tests.conftest import bearer_client
from tests.factories import SessionFactory

pytestmark = pytest.mark.django_db

HINT = "X-Session-Secret"


@pytest.fixture
def widget(team, agent):
    """A publishable key and a session it created (with its client secret)."""
    token, key = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)
    session = SessionFactory(agent=agent, created_by_token=token)
    secret = session.issue_client_secret()
    session.save()
    return {"key": key, "secret": secret, "session": session}


def test_the_canonical_api_says_to_send_the_session_secret(widget):
    uuid = widget["session"].uuid
    browser = bearer_client(widget["key"])

    detail = browser.get(f"/api/v1/sessions/{uuid}")
    message = browser.post(f"/api/v1/sessions/{uuid}/messages", {"text": "Hi"}, format="json")
    unknown = browser.get("/api/v1/sessions/5e55105e-0000-4000-8000-00000000dead")

    for response in (detail, message, unknown):  # an unknown session answers the same: nothing is told
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert HINT in response.json()["error"]["message"]
    with_secret = bearer_client(widget["key"], HTTP_X_SESSION_SECRET=widget["secret"]).get(f"/api/v1/sessions/{uuid}")
    assert with_secret.status_code == 200


def test_a_wrong_secret_or_another_key_gets_the_plain_404(widget, secret_api):
    uuid = widget["session"].uuid

    wrong = bearer_client(widget["key"], HTTP_X_SESSION_SECRET="cs_wrong").get(f"/api/v1/sessions/{uuid}")
    secret_key = secret_api.get("/api/v1/sessions/5e55105e-0000-4000-8000-00000000dead")

    assert wrong.status_code == secret_key.status_code == 404
    assert HINT not in wrong.json()["error"]["message"]
    assert HINT not in secret_key.json()["error"]["message"]


def test_seed_003_says_it_in_its_own_voice(widget):
    uuid = str(widget["session"].uuid)
    browser = bearer_client(widget["key"])

    sent = browser.post(f"/api/v1/chat/sessions/{uuid}/messages", {"content": "Hi"}, format="json")
    command = browser.post("/api/v1/chat/command", {"session_id": uuid, "call_id": "c", "output": {}}, format="json")

    for response in (sent, command):
        assert response.status_code == 404
        assert (response.json()["type"], response.json()["code"]) == ("error", "not_found")
        assert HINT in response.json()["message"]


def test_seed_002_says_it_in_its_own_voice(widget):
    response = bearer_client(widget["key"]).get(f"/chat/{widget['session'].uuid}")

    assert response.status_code == 404
    assert HINT in response.json()["message"]


def test_the_stream_says_it_too(widget):
    refusal = plan_stream(
        headers={b"authorization": f"Bearer {widget['key']}".encode()},
        query={},
        session_uuid=str(widget["session"].uuid),
        run_uuid=None,
    )

    assert isinstance(refusal, StreamRefusal)
    assert refusal.status == 404
    assert HINT in refusal.message
