"""The OpenAPI document describes the API as served."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_schema_lists_the_stored_event_fields(api):
    response = api.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    events = response.json()["components"]["schemas"]["RunEvent"]["properties"]
    assert {"id", "first_id", "run_uuid", "type", "data", "created_at"} <= set(events)
