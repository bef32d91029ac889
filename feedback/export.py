"""The feedback export: one set of rows (``FeedbackExportSerializer``) in one of the
``EXPORT_RENDERERS`` formats, for the admin action and ``GET feedback/export`` alike."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils import timezone

from feedback.models import Feedback
from feedback.renderers import EXPORT_RENDERERS
from feedback.serializers import FeedbackExportSerializer


def export_rows(feedback: QuerySet[Feedback]) -> list[dict[str, Any]]:
    """The rows of ``feedback``, oldest first: one query, however many rows."""
    return FeedbackExportSerializer(feedback.for_export(), many=True).data


def attachment_disposition(file_format: str) -> str:
    return f'attachment; filename="feedback-{timezone.now():%Y%m%d-%H%M%S}.{file_format}"'


def export_file(feedback: QuerySet[Feedback], *, file_format: str) -> HttpResponse:
    """The export as a download, outside DRF (the admin action)."""
    renderer = EXPORT_RENDERERS[file_format]()
    content_type = renderer.media_type + (f"; charset={renderer.charset}" if renderer.charset else "")  # JSON has none
    response = HttpResponse(renderer.render(export_rows(feedback)), content_type=content_type)
    response["Content-Disposition"] = attachment_disposition(file_format)
    return response
