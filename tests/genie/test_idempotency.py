from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from chat.models import Session
from runs.models import Run
from tests.conftest import bearer_client


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
