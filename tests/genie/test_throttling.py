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


def test_a_publishable_keys_visitors_have_their_own_buckets_under_a_ceiling_for_the_key(team, agent, settings):
    # Issue 26, finding 12: one bucket per publishable key let three visitors lock out a fourth.
    settings.GENIE_RATE_PER_KEY = "3/min"  # a secret key's or a user's: not a publishable key's
    settings.GENIE_RATE_PUBLISHABLE_IP = "2/min"
    settings.GENIE_RATE_PUBLISHABLE_KEY = "7/min"
    _, key = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)

    def start(ip: str) -> int:
        client = bearer_client(key, REMOTE_ADDR=ip)
        return client.post("/api/v1/sessions", {"text": "hi"}, format="json").status_code

    three_visitors = [start(ip) for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] for _ in range(2)]
    over_own_bucket = start("10.0.0.1")
    fourth_visitor = start("10.0.0.4")
    over_the_ceiling = start("10.0.0.5")

    assert three_visitors == [201] * 6
    assert over_own_bucket == 429
    assert fourth_visitor == 201
    assert over_the_ceiling == 429
