"""GENIE_LOG_FORMAT=json: every process logs one JSON object per line, for a log collector."""

from __future__ import annotations

import json
import os

from tests.processes import run_python

LOG_THREE_RECORDS = """
import logging
import django
django.setup()
log = logging.getLogger("runs.loop")
log.info("Run %s started", "r-1", extra={"run_uuid": "r-1"})
try:
    1 / 0
except ZeroDivisionError:
    log.exception("Run failed")
logging.getLogger("celery.worker").warning("plain third-party record")
"""


def environment(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GENIE_LOG")}
    return {**env, "DJANGO_SETTINGS_MODULE": "genie.settings", **values}


def test_json_logs_are_one_object_per_line():
    result = run_python("-c", LOG_THREE_RECORDS, env=environment(GENIE_LOG_FORMAT="json"), timeout=60)

    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("INFO", "runs.loop", "Run r-1 started"),
        ("ERROR", "runs.loop", "Run failed"),
        ("WARNING", "celery.worker", "plain third-party record"),
    ]
    assert records[0]["run_uuid"] == "r-1"
    assert "ZeroDivisionError" in records[1]["exc_info"]
    assert all({"time", "pid"} <= record.keys() for record in records)


def test_plain_logs_are_the_default():
    result = run_python("-c", LOG_THREE_RECORDS, env=environment(), timeout=60)

    assert result.returncode == 0, result.stderr
    assert " INFO runs.loop Run r-1 started" in result.stderr.splitlines()[0]


def test_an_unknown_log_format_stops_the_process():
    result = run_python("-c", LOG_THREE_RECORDS, env=environment(GENIE_LOG_FORMAT="yaml"), timeout=60)

    assert result.returncode != 0
    assert "GENIE_LOG_FORMAT='yaml' is not a log format" in result.stderr
