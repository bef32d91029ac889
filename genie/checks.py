"""Cross-setting rules, as system checks."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def check_genie_settings(app_configs: Any, **kwargs: Any) -> list:
    problems = []
    if settings.REST_FRAMEWORK["PAGE_SIZE"] > settings.GENIE_MAX_PAGE_SIZE:
        problems.append(Error("GENIE_MAX_PAGE_SIZE is below the default page size.", id="genie.E001"))
    if settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] <= settings.GENIE_RUN_TIMEOUT:
        problems.append(Error("The broker visibility timeout must exceed GENIE_RUN_TIMEOUT.", id="genie.E002"))
    if not settings.DEBUG and "insecure" in settings.SECRET_KEY:
        problems.append(Warning("SECRET_KEY is the embedded development key.", id="genie.W001"))
    return problems
