"""PostgreSQL drops every connection (as a restart does): the pooled connections of the
server and the worker are checked when taken from the pool and replaced, so no request
answers 500 and the next turn completes, without restarting any process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

pytestmark = pytest.mark.live


def drop_every_other_connection() -> int:
    """Terminate every backend of the test database but the test's own, as a restart would."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_requests_and_turns_after_the_database_dropped_its_connections(live):
    live.script([("text", "before")], [("text", "after the drop")])
    session = live.start_session("first")
    # The run's own stream replays a run that is over before the client asks; the session's is 204 then.
    assert live.read_stream(f"{session['run_url']}/stream").text == "before"
    with ThreadPoolExecutor(8) as pool:  # several connections into the server's pool
        warm = list(pool.map(lambda _: live.api("GET", "sessions").status_code, range(16)))
    assert warm == [200] * 16

    assert drop_every_other_connection() > 0

    statuses = [live.api("GET", "sessions").status_code for _ in range(20)]
    assert statuses == [200] * 20
    follow_up = live.api("POST", f"sessions/{session['uuid']}/messages", json={"text": "again"})
    assert follow_up.status_code == 201, follow_up.text
    assert live.read_stream(f"{follow_up.json()['run_url']}/stream").text == "after the drop"
