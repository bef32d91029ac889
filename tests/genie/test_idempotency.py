from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from chat.models import Session
from genie.idempotency import purge_expired_keys
from genie.models import AccessToken, IdempotencyKey
from genie.services import create_access_token
from runs.models import Run
from tests.conftest import bearer_client
from tests.factories import AgentFactory


@pytest.mark.django_db
def test_same_key_same_body_replays_and_creates_nothing(api):
    first = api.post("/api/v1/sessions", {"text": "hi"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    second = api.post("/api/v1/sessions", {"text": "hi"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Session.objects.count() == 1


@pytest.mark.django_db
def test_same_key_other_body_is_422(api):
    api.post("/api/v1/sessions", {"text": "hi"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    response = api.post("/api/v1/sessions", {"text": "other"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Session.objects.count() == 1


@pytest.mark.django_db
def test_a_failed_request_does_not_burn_its_key(api):
    failed = api.post("/api/v1/sessions", {"text": "hi", "agent": "nope"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    retried = api.post("/api/v1/sessions", {"text": "hi"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")

    assert failed.status_code == 400
    assert retried.status_code == 201


@pytest.mark.django_db
def test_keys_are_per_message_post_and_feedback(api):
    session = api.post("/api/v1/sessions", {"text": "hi"}, format="json").json()
    Run.objects.update(status=Run.Status.SUCCEEDED)
    url = f"/api/v1/sessions/{session['uuid']}/messages"

    first = api.post(url, {"text": "again"}, format="json", HTTP_IDEMPOTENCY_KEY="m1")
    second = api.post(url, {"text": "again"}, format="json", HTTP_IDEMPOTENCY_KEY="m1")

    assert first.status_code == second.status_code == 201
    assert first.json()["uuid"] == second.json()["uuid"]
    assert Run.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_create_one_session(personal_key, agent, monkeypatch):
    # These sessions commit for real; keep their runs away from a live worker of other
    # tests, which would hold locks while this test's tables are truncated.
    monkeypatch.setattr("runs.tasks.execute_run.delay", lambda run_id: None)

    def post(_: int) -> tuple[int, str]:
        try:
            response = bearer_client(personal_key).post(
                "/api/v1/sessions", {"text": "hi"}, format="json", HTTP_IDEMPOTENCY_KEY="race"
            )
            return response.status_code, response.json()["uuid"]
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(post, range(8)))

    assert {status for status, _ in results} == {201}
    assert len({uuid for _, uuid in results}) == 1
    assert Session.objects.count() == 1


# --- a publishable key serves every visitor of a site: one visitor's key is not another's ---

NEW_SESSION_POSTS = {
    "sessions": ("/api/v1/sessions", {"text": "hi", "agent": "public"}, {}),
    "streaming sessions": ("/api/v1/sessions", {"text": "hi", "agent": "public"}, {"HTTP_ACCEPT": "text/event-stream"}),
    "openai": (
        "/v1/chat/completions",
        {"model": "public", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        {},
    ),
    "seed 002": ("/chat", {"agentId": "public"}, {}),
    "seed 001": ("/api/v1/genies/public/chat/conversations", {"title": "hi"}, {}),
}


@pytest.fixture
def visitor(team):
    """A new browser on the site: the team's publishable key, no session secret yet."""
    AgentFactory(team=team, handle="public", is_public=True)
    _, key = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)
    return lambda **headers: bearer_client(key, **headers)


def secret_of(response) -> str | None:
    body = response.json() if response["Content-Type"] == "application/json" else {}
    return response.get("Genie-Client-Secret") or body.get("client_secret") or body.get("clientSecret")


@pytest.mark.django_db
@pytest.mark.parametrize("entry", NEW_SESSION_POSTS)
def test_another_visitor_replaying_a_publishable_keys_request_never_sees_its_session(visitor, entry):
    path, body, headers = NEW_SESSION_POSTS[entry]
    first = visitor().post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="hello", **headers)
    sessions = Session.objects.count()

    second = visitor().post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="hello", **headers)

    assert first.status_code in (200, 201)
    assert secret_of(first) is not None
    assert second.status_code == 422
    assert "idempotency_key_reused" in second.content.decode()
    session = Session.objects.get()
    assert str(session.uuid) not in second.content.decode() + str(dict(second.items()))
    assert secret_of(first) not in second.content.decode() + str(dict(second.items()))
    assert Session.objects.count() == sessions == 1


@pytest.mark.django_db
def test_no_client_secret_is_kept_with_an_idempotency_key(visitor):
    for path, body, headers in NEW_SESSION_POSTS.values():
        response = visitor().post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=f"k-{path}-{headers}", **headers)
        assert secret_of(response) is not None

    kept = str(list(IdempotencyKey.objects.values_list("response_body", flat=True)))
    assert IdempotencyKey.objects.count() == len(NEW_SESSION_POSTS)
    assert "cs_" not in kept


@pytest.mark.django_db
def test_a_visitors_key_is_its_own_in_its_session(visitor):
    sessions = [visitor().post("/api/v1/sessions", {"text": "hi", "agent": "public"}, format="json") for _ in (1, 2)]
    Run.objects.update(status=Run.Status.SUCCEEDED)
    clients = [visitor(HTTP_X_SESSION_SECRET=s.json()["client_secret"]) for s in sessions]
    urls = [f"/api/v1/sessions/{s.json()['uuid']}/messages" for s in sessions]

    first = clients[0].post(urls[0], {"text": "again"}, format="json", HTTP_IDEMPOTENCY_KEY="m1")
    replayed = clients[0].post(urls[0], {"text": "again"}, format="json", HTTP_IDEMPOTENCY_KEY="m1")
    other = clients[1].post(urls[1], {"text": "again"}, format="json", HTTP_IDEMPOTENCY_KEY="m1")

    assert first.status_code == replayed.status_code == other.status_code == 201
    assert replayed.json() == first.json()
    assert replayed["Idempotent-Replayed"] == "true"
    assert other.json()["uuid"] != first.json()["uuid"]
    assert not other.has_header("Idempotent-Replayed")


@pytest.mark.django_db
def test_the_hourly_purge_drops_expired_keys_only(api, settings):
    api.post("/api/v1/sessions", {"text": "old"}, format="json", HTTP_IDEMPOTENCY_KEY="old")
    api.post("/api/v1/sessions", {"text": "new"}, format="json", HTTP_IDEMPOTENCY_KEY="new")
    IdempotencyKey.objects.filter(key="old").update(
        created_at=timezone.now() - settings.GENIE_IDEMPOTENCY_TTL - timedelta(1)
    )

    assert purge_expired_keys() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
