"""The OpenAPI document describes what the API answers: a bounded, deterministic
schemathesis run over every operation of ``/api/v1/schema``, with a real secret key.

Each operation gets a fresh world (a team with its default agent, a finished session
whose agent message has feedback, a second key to revoke), and the path parameters point
at those objects, so success responses are checked as well as the errors. A test fails
on any 5xx, an undocumented status code, or a body, content type or header the schema
does not describe.

The JSON operations run in-process (WSGI, inside the test's transaction); the two SSE
streams exist only under ASGI, so they run against a real Daphne. Nothing leaves
loopback: host names do not resolve here (an agent's base URL is then accepted unchecked,
as at save time when DNS has no answer), and no worker executes the queued runs.
"""

from __future__ import annotations

import copy
import ipaddress
import socket
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chat.models import Message, Session
from chat.services import start_session
from feedback.models import Feedback
from genie.auth import Caller
from genie.models import AccessToken
from genie.services import create_access_token
from genie.wsgi import application
from runs import services as run_services
from runs import tasks
from runs.models import Run

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# The world's objects have fixed ids, so the generated requests can name them.
SESSION = uuid.UUID("5e55105e-0000-4000-8000-000000000001")
RUN = uuid.UUID("5e55105e-0000-4000-8000-000000000002")
MESSAGE = uuid.UUID("5e55105e-0000-4000-8000-000000000003")
OTHER_KEY = uuid.UUID("5e55105e-0000-4000-8000-000000000004")  # revoked by DELETE api-keys/{uuid}
AGENT = "helper"
PATH_PARAMETERS = {
    "session_uuid": str(SESSION),
    "run_uuid": str(RUN),
    "message_uuid": str(MESSAGE),
    "handle": AGENT,
    "uuid": str(OTHER_KEY),
    "chat_id": str(SESSION),  # seed 002
    "session_id": str(SESSION),  # seed 003
}

SETTINGS = {
    "seed": 1,
    "generation": {"max-examples": 5, "deterministic": True, "no-shrink": True, "database": "none"},
    "request-timeout": 10,
    "parameters": PATH_PARAMETERS,
}
# POST agents covers the agent serializer's boundaries; its PATCH is only fuzzed (time).
JSON_CONFIG = schemathesis.Config.from_dict(
    {
        **SETTINGS,
        "operations": [{"include-name": "PATCH /api/v1/agents/{handle}", "phases": {"coverage": {"enabled": False}}}],
    }
)
# The relay's SSE GETs: the canonical two and seed 001's genie run.
STREAM_PATHS = r"/stream$|/genie-runs/"
json_operations = schemathesis.openapi.from_wsgi("/api/v1/schema?format=json", application, config=JSON_CONFIG).exclude(
    path_regex=STREAM_PATHS
)
# The same document, sent over the network (no app): to the live server's base URL.
stream_operations = schemathesis.openapi.from_dict(
    copy.deepcopy(json_operations.raw_schema), config=schemathesis.Config.from_dict(SETTINGS)
).include(path_regex=STREAM_PATHS)


def loopback_only(real):
    """``socket.getaddrinfo`` that resolves addresses and ``localhost`` only: no DNS."""

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            if name != "localhost":
                raise socket.gaierror(socket.EAI_NONAME, f"{name}: no DNS in this test") from None
        return real(host, *args, **kwargs)

    return getaddrinfo


def build_world(team, agent) -> str:
    """The objects the path parameters name; returns the secret key the requests use."""
    agent.handle = AGENT
    agent.save()
    token, key = create_access_token(team=team, kind=AccessToken.Kind.SECRET)
    other, _ = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE, name="to revoke")
    AccessToken.objects.filter(pk=other.pk).update(uuid=OTHER_KEY)
    caller = Caller(team=team, kind="secret", token=token)
    session, run, _ = start_session(caller=caller, agent=agent, text="Hello", title="Greeting")
    run_services.end_run(run=run, status=Run.Status.SUCCEEDED, text="Hi!", usage=run_services.Usage(3, 4))
    Feedback.objects.create(message=run.agent_message, rating="positive", body="Good")
    Session.objects.filter(pk=session.pk).update(uuid=SESSION)
    Run.objects.filter(pk=run.pk).update(uuid=RUN)
    Message.objects.filter(pk=run.agent_message.pk).update(uuid=MESSAGE)
    return key


def finish_at_once(*, run: Run, timeout: float, or_pause: bool = False) -> bool:
    """``stream: false`` waits for a worker; none runs here, so the run ends at once."""
    run_services.end_run(run=run, status=Run.Status.SUCCEEDED, text="Done.")
    return True


@pytest.fixture
def offline(settings) -> Iterator[None]:
    """No DNS, no task sent to a broker, no rate limit (an operation sends dozens of requests)."""
    settings.GENIE_RATE_PER_KEY = ""
    with (
        mock.patch("socket.getaddrinfo", loopback_only(socket.getaddrinfo)),
        mock.patch.object(tasks.execute_run, "delay"),
        mock.patch.object(tasks.generate_title, "delay"),
    ):
        yield


@pytest.fixture
def in_process(db, offline, team, agent) -> Iterator[dict[str, str]]:
    """The world, and the WSGI app called inside the test's transaction (as Django's test
    client does, a request must not close the connection that holds it)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        with mock.patch("runs.handoff.wait_for_finish", side_effect=finish_at_once):
            yield {"Authorization": f"Bearer {build_world(team, agent)}"}
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def on_daphne(transactional_db, offline, live_server_url, team, agent) -> dict[str, str]:
    """The world, committed, for a real Daphne."""
    return {"Authorization": f"Bearer {build_world(team, agent)}"}


def other_credential(member, credential: str) -> dict[str, str]:
    """A credential the API refuses (401), does not allow (403) or shows nothing of the world to (404)."""
    if credential == "invalid":
        key = "sk_live_not-a-key"
    elif credential == "personal":
        _, key = create_access_token(team=member.team, kind=AccessToken.Kind.PERSONAL, user=member.user)
    else:
        _, key = create_access_token(team=member.team, kind=AccessToken.Kind.PUBLISHABLE)
    return {"Authorization": f"Bearer {key}"}


def as_named(operations) -> Iterator:
    """One request per operation, at the world's objects (no body, no query)."""
    for result in operations.get_all_operations():
        operation = result.ok()
        names = [parameter.name for parameter in operation.path_parameters]
        yield operation.Case(path_parameters={name: PATH_PARAMETERS.get(name, str(uuid.UUID(int=0))) for name in names})


# What the other credentials get, all operations together (201: seed 001's POST
# conversations needs no body, and a user or a publishable key may open one; 200 for a
# publishable key: the AI SDK's messages of a chat id it has not used yet are []; the probes
# and /metrics take no API credential: tests/genie/test_operations.py covers who may read them).
REFUSALS = {"invalid": {401}, "personal": {200, 201, 400, 403, 404}, "publishable": {200, 201, 400, 403, 404}}
API_OPERATIONS = json_operations.exclude(tag="operations")


def without_host(case: Any) -> Any:
    """Drop a generated ``Host`` header: it addresses the server, not the API (Django
    answers any request for a host it does not serve 400, before any view)."""
    if case.headers:
        case.headers = {name: value for name, value in case.headers.items() if name.lower() != "host"}
    return case


@json_operations.parametrize()
@hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the world is per operation
def test_json_responses_match_the_schema(case, in_process):
    without_host(case).call_and_validate(headers=in_process, checks=CHECKS)


@pytest.mark.parametrize("credential", REFUSALS)
def test_json_refusals_match_the_schema(in_process, member, credential):
    headers = other_credential(member, credential)

    statuses = {case.call_and_validate(headers=headers, checks=CHECKS).status_code for case in as_named(API_OPERATIONS)}

    assert statuses == REFUSALS[credential]


@pytest.mark.live
@stream_operations.parametrize()
@hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the world is per operation
def test_stream_responses_match_the_schema(case, on_daphne, live_server_url):
    without_host(case).call_and_validate(base_url=live_server_url, headers=on_daphne, checks=CHECKS)


@pytest.mark.live
@pytest.mark.parametrize(("credential", "status"), [("invalid", 401), ("personal", 404)])
def test_stream_refusals_match_the_schema(on_daphne, live_server_url, member, credential, status):
    headers = other_credential(member, credential)

    for case in as_named(stream_operations):
        assert case.call_and_validate(base_url=live_server_url, headers=headers, checks=CHECKS).status_code == status
