"""What the audit of the running server found, each as the behaviour a user relies on:
credentials follow membership, rate limits hold against a forged X-Forwarded-For and
count streams, open streams per credential are capped, bad input is a clear 4xx JSON
error (never a 500), and the stream's ``retry:`` is a sane pause."""

from __future__ import annotations

import json

import pytest

from genie.models import AccessToken
from genie.services import create_access_token
from genie.throttles import client_ip
from runs.sse import StreamPlan, StreamRefusal, plan_stream, preamble
from tests.conftest import bearer_client
from tests.factories import MemberFactory, RunFactory, TeamFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rate_counters")]


# --- credentials follow membership ----------------------------------------------------


def test_a_personal_token_stops_working_when_its_user_moves_to_another_team(api, member):
    assert api.get("/api/v1/sessions").status_code == 200

    member.team = TeamFactory()
    member.save()

    response = api.get("/api/v1/sessions")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


def test_a_personal_token_stops_working_when_its_user_leaves_the_team(api, member):
    member.delete()

    assert api.get("/api/v1/sessions").status_code == 401


# --- rate limits ---------------------------------------------------------------------


def test_rotating_x_forwarded_for_does_not_escape_the_per_ip_limit(team, agent, settings):
    settings.GENIE_RATE_PUBLISHABLE_IP = "3/min"
    _, key = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)

    statuses = [
        bearer_client(key, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
        .post("/api/v1/sessions", {"text": "hi"}, format="json")
        .status_code
        for n in range(5)
    ]

    assert statuses == [201, 201, 201, 429, 429]


def test_x_forwarded_for_is_read_through_the_configured_number_of_proxies(settings):
    meta = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "198.51.100.9, 203.0.113.5"}

    assert client_ip(meta) == "10.0.0.2"  # no trusted proxy: the header is ignored
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert client_ip(meta) == "203.0.113.5"  # the address our one proxy saw


def stream_headers(key: str, **extra: bytes) -> dict[bytes, bytes]:
    return {b"authorization": f"Bearer {key}".encode(), **{k.encode(): v for k, v in extra.items()}}


@pytest.fixture
def secret_key(team) -> str:
    return create_access_token(team=team, kind=AccessToken.Kind.SECRET)[1]


@pytest.fixture
def active_run(agent):
    return RunFactory(session__agent=agent, session__team=agent.team)


def open_stream(key: str, run, **headers: bytes) -> StreamPlan | StreamRefusal:
    return plan_stream(
        headers=stream_headers(key, **headers),
        query={},
        session_uuid=str(run.session.uuid),
        run_uuid=None,
        client=("127.0.0.1", 5555),
    )


def test_opening_a_stream_counts_against_the_rate_limit(secret_key, active_run, settings):
    settings.GENIE_RATE_PER_KEY = "2/min"

    first, second, third = (open_stream(secret_key, active_run) for _ in range(3))

    assert isinstance(first, StreamPlan)
    assert isinstance(second, StreamPlan)
    assert isinstance(third, StreamRefusal)
    assert (third.status, third.code) == (429, "rate_limited")
    assert third.retry_after > 0
    assert bearer_client(secret_key).get("/api/v1/sessions").status_code == 429  # the same counter


def test_open_streams_per_credential_are_capped(secret_key, active_run, settings):
    settings.GENIE_MAX_STREAMS_PER_KEY = 2

    held = [open_stream(secret_key, active_run) for _ in range(2)]
    refused = open_stream(secret_key, active_run)

    assert all(isinstance(plan, StreamPlan) for plan in held)
    assert isinstance(refused, StreamRefusal)
    assert (refused.status, refused.code) == (429, "too_many_streams")


# --- bad input is a clear 4xx JSON error ------------------------------------------------


def test_a_body_over_the_request_limit_is_413(secret_api):
    body = json.dumps({"text": "hi", "metadata": {"blob": "x" * 3_000_000}})

    response = secret_api.post("/api/v1/sessions", body, content_type="application/json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_deeply_nested_json_is_400(secret_api):
    nested = "[" * 5000 + "]" * 5000
    body = f'{{"text": "hi", "metadata": {{"deep": {nested}}}}}'

    response = secret_api.post("/api/v1/sessions", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_metadata_over_its_own_limit_is_400_and_nothing_is_stored(secret_api):
    response = secret_api.post("/api/v1/sessions", {"text": "hi", "metadata": {"note": "x" * 17_000}}, format="json")

    assert response.status_code == 400
    assert "metadata" in response.json()["error"]["details"]
    assert secret_api.get("/api/v1/sessions").json()["count"] == 0


@pytest.mark.parametrize("debug", [True, False])
def test_an_unknown_api_url_is_a_json_404_debug_or_not(secret_api, settings, debug):
    settings.DEBUG = debug

    response = secret_api.get("/api/v1/no-such-thing")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("header", "status"),
    [("authorization", 401), ("last-event-id", 400), ("x-session-secret", 400)],
)
def test_undecodable_header_bytes_on_a_stream_are_a_4xx(secret_key, active_run, header, status):
    headers = stream_headers(secret_key)
    headers[header.encode()] = b"Bearer \xff\xfe" if header == "authorization" else b"\xff\xfe"

    refusal = plan_stream(
        headers=headers, query={}, session_uuid=str(active_run.session.uuid), run_uuid=None, client=None
    )

    assert isinstance(refusal, StreamRefusal)
    assert refusal.status == status


def test_the_stream_asks_browsers_to_wait_before_reconnecting(settings):
    assert b"retry: 1000\n" in preamble()
    settings.GENIE_SSE_RETRY_MS = 2500
    assert b"retry: 2500\n" in preamble()


def test_a_member_of_another_team_is_no_one_here(member):
    other = MemberFactory()
    _, key = create_access_token(team=member.team, kind=AccessToken.Kind.PERSONAL, user=other.user)

    assert bearer_client(key).get("/api/v1/sessions").status_code == 401


def test_bad_keys_on_stream_opens_are_throttled_per_client_ip(secret_key, active_run, settings):
    # Issue 26, finding 13: the REST API's rule (tests/genie/test_throttling.py) at the SSE edge too.
    settings.GENIE_RATE_AUTH_FAILURES = "2/min"

    guesses = [open_stream(f"sk_live_guess{n:020d}", active_run) for n in range(2)]
    held = open_stream(secret_key, active_run)

    assert [(refusal.status, refusal.code) for refusal in guesses] == [(401, "not_authenticated")] * 2
    assert isinstance(held, StreamRefusal)
    assert (held.status, held.code) == (429, "rate_limited")
    assert held.retry_after > 0
    assert bearer_client(secret_key).get("/api/v1/sessions").status_code == 429  # the same counter, same IP
