"""The SQL statements on a new turn's way to its first token (issue 29: in a burst of new
chats every turn pays them before its first token, on the same cores). Pinned here, so a
change that adds one is seen."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from runs import loop
from runs.models import Run
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db(transaction=True)


def concrete_values(obj: object) -> dict[str, object]:
    return {field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields}


def test_the_claims_read_locks_the_run_and_loads_what_it_names_in_one_statement():
    run = RunFactory(state={"steps": 1, "b": 2, "a": [1]}, client_settings={"z": 1, "a": 2})
    run.session.agent.api_key = "sk-secret"
    run.session.agent.tools = [{"name": "t", "kind": "client", "input_schema": {"type": "object"}}]
    run.session.agent.save()
    expected = Run.objects.select_related("session__agent", "agent_message", "user_message").get(pk=run.pk)

    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        claimed = Run.objects.locked_for_claim(run.pk)
        same = (
            concrete_values(claimed) == concrete_values(expected),
            concrete_values(claimed.session) == concrete_values(expected.session),
            concrete_values(claimed.session.agent) == concrete_values(expected.session.agent),
            concrete_values(claimed.agent_message) == concrete_values(expected.agent_message),
            concrete_values(claimed.user_message) == concrete_values(expected.user_message),
        )

    assert same == (True, True, True, True, True)
    assert len(queries) == 1  # the related objects came with it
    assert queries[0]["sql"].endswith("FOR UPDATE OF r")
    assert claimed.session.agent.api_key == "sk-secret"  # decrypted, as the ORM reads it
    assert list(claimed.client_settings) == ["z", "a"]  # the stored key order
    assert Run.objects.locked_for_claim(run.pk + 1000) is None


def test_a_new_chats_post_is_the_agent_then_three_inserts_in_one_transaction(secret_api, agent, enqueued):
    """The agent's read (the key is cached), then the session, its two messages (one
    INSERT) and the run, with no savepoint (each was two more round trips)."""
    secret_api.post("/api/v1/sessions", {"text": "warm the key cache"}, format="json")

    with CaptureQueriesContext(connection) as queries:
        created = secret_api.post("/api/v1/sessions", {"text": "hi"}, format="json")

    assert created.status_code == 201
    statements = [query["sql"].split(" ", 1)[0] for query in queries]
    assert statements == ["SELECT", "BEGIN", "INSERT", "INSERT", "INSERT", "COMMIT"]


def test_the_claim_and_prompt_of_a_new_chat_are_six_statements_and_a_commit(secret_api, agent, enqueued):
    """Lock and load the run, lock the session (its earlier turns, its last event id), mark
    the run and its message started, commit; then where the prompt starts (no summary, no
    files: no attachments query) and its messages."""
    created = secret_api.post("/api/v1/sessions", {"text": "hi"}, format="json").json()
    run = Run.objects.get(uuid=created["run_uuid"])

    with CaptureQueriesContext(connection) as queries:
        claimed, writer = loop.claim_run(run.pk, worker_id="w")
        loop.provider_request(claimed, [], parts=loop.turn_prompt_parts(claimed))
    writer.close()

    statements = [query["sql"].split(" ", 1)[0] for query in queries]
    assert statements == ["BEGIN", "SELECT", "SELECT", "UPDATE", "UPDATE", "COMMIT", "SELECT", "SELECT"]
