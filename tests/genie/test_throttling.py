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


def test_bad_keys_are_throttled_per_client_ip(api, personal_key, settings):
    # Issue 26, finding 13: unknown keys could be tried without limit.
    settings.GENIE_RATE_AUTH_FAILURES = "3/min"
    guesses = [bearer_client(f"sk_live_guess{n:020d}").get("/api/v1/sessions").status_code for n in range(3)]

    held = bearer_client(personal_key).get("/api/v1/sessions")  # the same client: even a good key waits
    elsewhere = bearer_client(personal_key, REMOTE_ADDR="10.0.0.9").get("/api/v1/sessions")

    assert guesses == [401, 401, 401]
    assert held.status_code == 429
    assert held.json()["error"]["code"] == "rate_limited"
    assert int(held["Retry-After"]) > 0
    assert elsewhere.status_code == 200


def test_failed_sign_ins_are_throttled_per_client_ip(client, member, settings):
    settings.GENIE_RATE_AUTH_FAILURES = "3/min"
    member.user.set_password("right-password")
    member.user.save()
    username = member.user.get_username()

    failed = [client.post("/login/", {"username": username, "password": "wrong"}).status_code for _ in range(3)]
    held = client.post("/login/", {"username": username, "password": "right-password"})
    elsewhere = client.post("/login/", {"username": username, "password": "right-password"}, REMOTE_ADDR="10.0.0.9")

    assert failed == [200, 200, 200]  # the form again, with its error
    assert held.status_code == 429
    assert "Too many failed sign-ins" in held.content.decode()
    assert elsewhere.status_code == 302
