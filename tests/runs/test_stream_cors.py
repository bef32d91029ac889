"""The SSE relay (plain ASGI, no Django middleware) answers CORS by the same rule as the
API: preflights for listed origins, and the headers on every answer, 4xx and 204 too."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from genie.asgi import application
from genie.cors import forget_origins
from genie.models import AccessToken
from genie.services import create_access_token
from tests.factories import SessionFactory

# The relay reads the database on the executor's threads: the data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

SHOP = "https://shop.example"
EVIL = "https://evil.example"


@pytest.fixture(autouse=True)
def _no_cached_preflights():
    forget_origins([SHOP, EVIL])
    yield
    forget_origins([SHOP, EVIL])


@pytest.fixture
def widget(agent):
    """A publishable key listing SHOP, and a session it created with its client secret."""
    token, key = create_access_token(team=agent.team, kind=AccessToken.Kind.PUBLISHABLE, allowed_origins=[SHOP])
    session = SessionFactory(agent=agent, created_by_token=token)
    secret = session.issue_client_secret()
    session.save()
    return {"key": key, "secret": secret, "path": f"/api/v1/sessions/{session.uuid}/stream"}


def request(method: str, path: str, **headers: str) -> dict:
    """One request through the ASGI application, as Daphne would make it."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()],
    }
    incoming = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    async_to_sync(application)(scope, receive, send)
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return {"status": sent[0]["status"], "headers": sent[0]["headers"], "body": body}


def header(response: dict, name: str) -> str | None:
    return next((value.decode() for key, value in response["headers"] if key.decode().lower() == name), None)


def test_stream_preflight_is_answered_for_a_listed_origin(widget):
    response = request(
        "OPTIONS",
        widget["path"],
        origin=SHOP,
        access_control_request_method="GET",
        access_control_request_headers="authorization,x-session-secret,last-event-id",
    )

    assert response["status"] == 204
    assert header(response, "access-control-allow-origin") == SHOP
    allowed = {name.strip() for name in header(response, "access-control-allow-headers").split(",")}
    assert {"authorization", "x-session-secret", "last-event-id"} <= allowed
    assert header(response, "access-control-allow-credentials") is None
    assert header(response, "vary") == "Origin"


def test_stream_preflight_is_not_answered_for_an_unlisted_origin(widget):
    response = request("OPTIONS", widget["path"], origin=EVIL, access_control_request_method="GET")

    assert header(response, "access-control-allow-origin") is None
    assert header(response, "access-control-allow-headers") is None


def test_stream_answers_carry_cors_headers_for_the_keys_origin(widget):
    auth = {"authorization": f"Bearer {widget['key']}", "origin": SHOP}

    nothing_to_stream = request("GET", widget["path"], **auth, x_session_secret=widget["secret"])
    not_found = request("GET", widget["path"], **auth)  # without the client secret

    assert nothing_to_stream["status"] == 204
    assert not_found["status"] == 404
    for response in (nothing_to_stream, not_found):
        assert header(response, "access-control-allow-origin") == SHOP
        assert header(response, "vary") == "Origin"
        assert header(response, "access-control-allow-headers") is None  # only on preflights


def test_stream_refuses_a_publishable_key_from_an_unlisted_origin(widget):
    response = request(
        "GET", widget["path"], authorization=f"Bearer {widget['key']}", x_session_secret=widget["secret"], origin=EVIL
    )

    assert response["status"] == 403
    assert b'"origin_not_allowed"' in response["body"]
    assert header(response, "access-control-allow-origin") is None


def test_stream_without_origin_gets_no_cors_headers(widget):
    response = request(
        "GET", widget["path"], authorization=f"Bearer {widget['key']}", x_session_secret=widget["secret"]
    )

    assert response["status"] == 204
    assert header(response, "access-control-allow-origin") is None


def test_stream_with_a_bad_key_gets_no_cors_headers(widget):
    response = request("GET", widget["path"], authorization="Bearer pk_live_" + "x" * 40, origin=SHOP)

    assert response["status"] == 401
    assert header(response, "access-control-allow-origin") is None
