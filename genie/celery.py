"""The Celery app. Workers run the threads pool: turns are long and I/O-bound."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "genie.settings")

app = Celery("genie")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
