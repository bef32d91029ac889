"""Absolute URLs of API objects, for responses and events."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse


def absolute_url(request: Any, name: str, **kwargs: Any) -> str:
    """The URL named ``name``: on the request's own host inside a request, else on
    GENIE_PUBLIC_URL (events and tasks have no request)."""
    path = reverse(name, kwargs=kwargs)
    if request is None:
        return f"{settings.GENIE_PUBLIC_URL}{path}"
    return request.build_absolute_uri(path)
