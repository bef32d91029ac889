"""The Celery app. Workers run the threads pool: turns are long and I/O-bound."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "genie.settings")

app = Celery("genie")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def preload_providers(**_: object) -> None:
    from runs.providers import preload_providers

    preload_providers()
