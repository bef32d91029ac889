"""Probes and metrics for operating several machines: /livez, /readyz, /metrics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.migrations.recorder import MigrationRecorder
from prometheus_client.parser import text_string_to_metric_families

from genie.connections import redis_client
from runs import services as run_services
from runs.metrics import broker_client
from runs.models import Run
from runs.stream_slots import release_slot_now, take_slot
from tests.factories import RunFactory

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def redis_unreachable(settings):
    """Every Redis client of the process points at a closed port for the test."""
    settings.REDIS_URL = CLOSED_PORT_REDIS
    settings.CELERY_BROKER_URL = CLOSED_PORT_REDIS
    redis_client.cache_clear()
    broker_client.cache_clear()
    yield
    redis_client.cache_clear()
    broker_client.cache_clear()


def scrape(client, **extra: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics as Prometheus reads it: sample (name, labels) → value."""
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_livez_answers_without_its_dependencies(client, redis_unreachable):
    response = client.get("/livez")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_database_redis_and_migrations(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "migrations": "ok"},
    }


@pytest.mark.django_db
def test_readyz_is_503_when_redis_is_unreachable(client, redis_unreachable):
    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"] == {"database": "ok", "redis": "unavailable", "migrations": "ok"}


@pytest.mark.django_db
def test_readyz_is_503_while_a_migration_is_not_applied(client):
    MigrationRecorder.Migration.objects.filter(app="runs").order_by("-id").first().delete()

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "pending"


@pytest.mark.django_db
def test_metrics_are_served_to_loopback_when_no_token_is_set(client):
    samples = scrape(client)

    assert ("genie_runs", (("status", "queued"),)) in samples
    assert sample(samples, "genie_metrics_source_up", source="postgresql") == 1
    assert sample(samples, "genie_metrics_source_up", source="redis") == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "extra",
    [{"REMOTE_ADDR": "10.0.0.7"}, {"HTTP_X_FORWARDED_FOR": "203.0.113.9"}, {"HTTP_FORWARDED": "for=203.0.113.9"}],
    ids=["another host", "through a proxy", "through a proxy (Forwarded)"],
)
def test_metrics_are_refused_to_other_hosts_without_a_token(client, extra):
    response = client.get("/metrics", **extra)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "metrics_forbidden"


@pytest.mark.django_db
def test_metrics_need_the_token_when_one_is_set(client, settings):
    settings.GENIE_METRICS_TOKEN = "scrape-me"

    missing = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    right = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me", REMOTE_ADDR="10.0.0.7")

    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="genie-metrics"'
    assert missing.json()["error"]["code"] == "not_authenticated"
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "authentication_failed"
    assert right.status_code == 200


@pytest.mark.django_db
def test_metrics_speak_openmetrics_when_asked(client):
    response = client.get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


@pytest.mark.django_db
def test_metrics_count_runs_by_status(client):
    before = scrape(client)
    RunFactory.create_batch(2)
    RunFactory(status=Run.Status.FAILED)

    after = scrape(client)

    assert sample(after, "genie_runs", status="queued") - sample(before, "genie_runs", status="queued") == 2
    assert sample(after, "genie_runs", status="failed") - sample(before, "genie_runs", status="failed") == 1


@pytest.mark.django_db
def test_an_ended_run_is_in_the_duration_and_first_token_histograms(client, django_capture_on_commit_callbacks):
    run = RunFactory()
    Run.objects.filter(pk=run.pk).update(first_token_at=run.created_at + timedelta(seconds=0.3))
    before = scrape(client)

    with django_capture_on_commit_callbacks(execute=True):
        run_services.end_run(run=run, status=Run.Status.SUCCEEDED, text="Done.")

    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("genie_run_duration_seconds_count", status="succeeded") == 1
    assert grew("genie_run_duration_seconds_count", status="failed") == 0
    assert grew("genie_run_time_to_first_token_seconds_count") == 1
    assert grew("genie_run_time_to_first_token_seconds_bucket", le="0.25") == 0
    assert grew("genie_run_time_to_first_token_seconds_bucket", le="0.5") == 1
    assert grew("genie_run_time_to_first_token_seconds_sum") == pytest.approx(0.3, abs=0.01)


@pytest.mark.django_db
def test_open_streams_are_counted_for_every_credential_capped_or_not(client, settings):
    settings.GENIE_MAX_STREAMS_PER_KEY = 0  # uncapped: still counted
    before = sample(scrape(client), "genie_open_streams")

    slots = [take_slot("user:1"), take_slot("token:2")]
    while_open = sample(scrape(client), "genie_open_streams")
    for ident, slot in zip(["user:1", "token:2"], slots, strict=True):
        release_slot_now(ident, slot)
    after = sample(scrape(client), "genie_open_streams")

    assert all(slots)
    assert while_open - before == 2
    assert after == before


@pytest.mark.django_db
def test_queue_depth_is_the_celery_queue_length(client):
    broker = broker_client()
    broker.delete("celery")
    broker.rpush("celery", "waiting-1", "waiting-2")
    try:
        samples = scrape(client)
    finally:
        broker.delete("celery")

    assert sample(samples, "genie_queue_depth", queue="celery") == 2


@pytest.mark.django_db
def test_metrics_still_answer_when_redis_is_unreachable(client, redis_unreachable):
    samples = scrape(client)

    assert sample(samples, "genie_metrics_source_up", source="redis") == 0
    assert sample(samples, "genie_metrics_source_up", source="postgresql") == 1
    assert ("genie_runs", (("status", "queued"),)) in samples
    assert ("genie_open_streams", ()) not in samples
