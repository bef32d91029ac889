from __future__ import annotations

import pytest

from genie.models import AccessToken
from genie.services import create_access_token
from tests.conftest import bearer_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rate_counters")]


def test_a_key_over_its_rate_gets_429_with_retry_after(api, settings):
    settings.GENIE_RATE_PER_KEY = "3/min"

    statuses = [api.get("/api/v1/sessions").status_code for _ in range(4)]
    limited = api.get("/api/v1/sessions")

    assert statuses == [200, 200, 200, 429]
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited["Retry-After"]) > 0


def test_publishable_keys_are_limited_per_client_ip(team, agent, settings):
    settings.GENIE_RATE_PUBLISHABLE_IP = "2/min"
    keys = [create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)[1] for _ in range(3)]

    statuses = [
        bearer_client(key, REMOTE_ADDR="10.0.0.7").post("/api/v1/sessions", {"text": "hi"}, format="json").status_code
        for key in keys
    ]
    other_ip = bearer_client(keys[0], REMOTE_ADDR="10.0.0.8").post("/api/v1/sessions", {"text": "hi"}, format="json")

    assert statuses == [201, 201, 429]
    assert other_ip.status_code == 201
