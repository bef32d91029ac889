"""Shared fixtures: API clients with real credentials, and the live stack (a real Daphne
server, a real Celery worker process, real PostgreSQL and Redis, a scripted fake LLM)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.core.management.base import CommandError
from django.core.management.commands import flush
from django.db import connection
from rest_framework.test import APIClient

from chat import tasks as chat_tasks
from genie.models import AccessToken
from genie.services import create_access_token
from runs import loop, tasks
from runs.models import Run
from tests.factories import AgentFactory, MemberFactory, TeamFactory
from tests.fakellm import FakeLLM
from tests.oauthserver import OAuthServer
from tests.processes import LiveProcess, free_port, start_beat, start_daphne, start_worker
from tests.runs.conftest import ScriptedProvider
from tests.webhooks import WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Live tests last (a stable sort: each group keeps its order). Once started, the live
    stack's beat sweeps the shared test database every second and would race the
    in-process tests of the sweeper and the loop."""
    items.sort(key=lambda item: item.get_closest_marker("live") is not None)


# The fake model and the test peers listen on loopback: the operator allows it here, as an
# operator would allow an internal endpoint. The egress tests set their own allowlist.
TEST_EGRESS_ALLOW = "127.0.0.1,localhost"


@pytest.fixture(autouse=True)
def _loopback_egress_allowed(settings) -> None:
    settings.GENIE_EGRESS_ALLOW = TEST_EGRESS_ALLOW


@pytest.fixture(autouse=True)
def _failed_auth_not_throttled(settings) -> None:
    """Every test's client is 127.0.0.1 and the suite sends hundreds of bad keys on
    purpose: counted together (in Redis, across tests), they would lock out the good ones.
    The tests of that throttle set GENIE_RATE_AUTH_FAILURES themselves."""
    settings.GENIE_RATE_AUTH_FAILURES = ""


@pytest.fixture(scope="session", autouse=True)
def _require_real_services() -> None:
    assert connection.vendor == "postgresql", "The suite runs on PostgreSQL: set DATABASE_URL (see README)."
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture(scope="session", autouse=True)
def _flush_survives_a_deadlock() -> Iterator[None]:
    """A transactional test's teardown TRUNCATEs every table while the live processes may
    be inside a transaction of their own (the sweeper every second, a title task), and
    PostgreSQL breaks such a deadlock by failing one side: when it picks the flush, the
    flush is tried again, as the worker's side would be."""
    original = flush.Command.handle

    def handle(self: flush.Command, **options: object) -> None:
        for attempt in range(3):
            try:
                return original(self, **options)
            except CommandError as exc:
                if attempt == 2 or "deadlock" not in str(exc.__cause__).lower():
                    raise
                time.sleep(0.2)
        return None

    flush.Command.handle = handle
    yield
    flush.Command.handle = original


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A team's webhook server on loopback (tools of kind ``webhook``)."""
    server = WebhookReceiver()
    yield server
    server.server.shutdown()


@pytest.fixture
def oauth() -> Iterator[OAuthServer]:
    """A provider's OAuth authorization server on loopback (connections)."""
    server = OAuthServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def aisdk_installed() -> Path:
    """tests/aisdk (the AI SDK's npm packages) installed from its lock file."""
    folder = Path(__file__).resolve().parent / "aisdk"
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are required for the AI SDK client tests (apt-get install nodejs npm)")
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture
def fresh_rate_counters():
    """Rate-limit counters live in the Redis cache: start and end a test with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def team():
    return TeamFactory()


@pytest.fixture
def member(team):
    return MemberFactory(team=team)


@pytest.fixture
def agent(team):
    return AgentFactory(team=team, is_default=True)


def bearer_client(key: str, **headers: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}", **headers)
    return client


@pytest.fixture
def personal_key(member) -> str:
    _, key = create_access_token(team=member.team, kind=AccessToken.Kind.PERSONAL, user=member.user)
    return key


@pytest.fixture
def secret_api(team, agent) -> APIClient:
    """A client authenticated with a secret key of the team (the team has an agent)."""
    _, key = create_access_token(team=team, kind=AccessToken.Kind.SECRET)
    return bearer_client(key)


@pytest.fixture
def api(personal_key, agent) -> APIClient:
    """A client authenticated with a personal token of a team member (the team has an agent)."""
    return bearer_client(personal_key)


# --- the live stack -------------------------------------------------------------------


@pytest.fixture
def enqueued() -> Iterator[dict[str, list[Any]]]:
    """The tasks enqueued (after commit), by name, instead of sending them to a broker."""
    sent: dict[str, list[Any]] = defaultdict(list)
    patches = [
        mock.patch.object(task, "delay", side_effect=lambda *args, name=name: sent[name].append(args[0]))
        for name, task in {
            "execute_run": tasks.execute_run,
            "continue_run": tasks.continue_run,
            "generate_title": tasks.generate_title,
            "extract_upload_text": chat_tasks.extract_upload_text,
        }.items()
    ]
    for patch in patches:
        patch.start()
    yield sent
    for patch in patches:
        patch.stop()


def run_in_process(*, run: Run, timeout: float, or_pause: bool = False) -> bool:
    """``runs.waiting.wait_for_finish`` for a test without a worker: an active run is
    executed in process by the real loop at that point, as a worker would."""
    if Run.objects.get(pk=run.pk).is_active:
        loop.execute_run(run.pk)
    return True


@pytest.fixture
def replies_in_process() -> Iterator[ScriptedProvider]:
    """The model's replies (append to its ``scripts``); a turn a view waits for
    (``runs.handoff``'s synchronous wait) runs in process then (``run_in_process``)."""
    provider = ScriptedProvider([])
    with (
        mock.patch.object(loop, "get_provider", return_value=provider),
        mock.patch("runs.handoff.wait_for_finish", side_effect=run_in_process),
        mock.patch("runs.handoff.wait_for_continuation"),
    ):
        yield provider


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def live_env(django_db_setup, django_db_blocker, tmp_path_factory) -> dict[str, str]:
    """Environment for the server and worker processes: the test database, test Redis,
    a folder of their own for uploaded files."""
    db = connection.settings_dict
    credentials = f"{db['USER'] or 'postgres'}:{db['PASSWORD']}" if db["PASSWORD"] else db["USER"] or "postgres"
    url = f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        REDIS_URL=settings.REDIS_URL,
        DJANGO_SETTINGS_MODULE="genie.settings",
        GENIE_EVENT_FLUSH_INTERVAL="0.05",
        GENIE_PROVIDER_RETRY_BACKOFF="0.05",
        GENIE_SSE_HEARTBEAT="2",
        GENIE_PROVIDER_TIMEOUT="2",
        GENIE_SSE_MAX_BACKLOG_BYTES="200000",
        GENIE_SSE_STALL_TIMEOUT="1",
        GENIE_RUN_LEASE="3",
        GENIE_SYNC_TIMEOUT="3",
        GENIE_SWEEP_INTERVAL="1",
        GENIE_EGRESS_ALLOW=TEST_EGRESS_ALLOW,
        GENIE_ACTION_TTL="6",  # a pause nobody answers expires within the test's patience
        GENIE_RATE_AUTH_FAILURES="",  # bad keys on purpose, all from 127.0.0.1 (see _failed_auth_not_throttled)
        GENIE_MEDIA_ROOT=str(tmp_path_factory.mktemp("media")),
        # The live server's own address (its port chosen now): URLs built outside a request,
        # such as an OAuth redirect_uri, lead back to it.
        GENIE_PUBLIC_URL=f"http://127.0.0.1:{free_port()}",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="session")
def live_server_url(live_env, tmp_path_factory) -> Iterator[str]:
    port = int(live_env["GENIE_PUBLIC_URL"].rsplit(":", 1)[1])
    server, url = start_daphne(live_env, tmp_path_factory.mktemp("daphne") / "daphne.log", port=port)
    yield url
    server.stop()


@pytest.fixture(scope="session")
def celery_worker(live_env, tmp_path_factory) -> Iterator[LiveProcess]:
    worker = start_worker(live_env, tmp_path_factory.mktemp("worker") / "worker.log")
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def celery_beat(live_env, tmp_path_factory) -> Iterator[LiveProcess]:
    """Beat drives the sweeper (every GENIE_SWEEP_INTERVAL) and the hourly purge."""
    beat = start_beat(live_env, tmp_path_factory.mktemp("beat"))
    yield beat
    beat.stop()


@pytest.fixture
def live(live_server_url, celery_worker, celery_beat, fake_llm, transactional_db):
    """The whole stack, with a committed team, member, token and a scripted agent."""
    from tests.live import LiveStack

    return LiveStack.create(base_url=live_server_url, fake_llm=fake_llm)
