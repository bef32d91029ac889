from __future__ import annotations

import pytest

from chat.models import Session

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code


def test_malformed_json_is_400(api):
    response = api.post("/api/v1/sessions", data="{not json", content_type="application/json")

    assert_error(response, 400, "malformed_request")
    assert not Session.objects.exists()


def test_wrong_content_type_is_415(api):
    assert_error(api.post("/api/v1/sessions", data="text=hi", content_type="text/plain"), 415, "unsupported_media_type")


def test_unknown_url_is_json_404(api):
    assert_error(api.get("/api/v1/nothing-here"), 404, "not_found")


def test_unknown_session_is_404(api):
    assert_error(api.get("/api/v1/sessions/00000000-0000-0000-0000-000000000000"), 404, "not_found")


def test_wrong_method_is_405(api):
    assert_error(api.put("/api/v1/sessions", {}, format="json"), 405, "method_not_allowed")


def test_validation_error_lists_fields(api):
    response = api.post("/api/v1/sessions", {"text": "hi", "metadata": "not an object"}, format="json")

    assert_error(response, 400, "validation_error")
    assert "metadata" in response.json()["error"]["details"]


def test_healthz_reports_database_and_redis(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
