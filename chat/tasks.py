"""Celery tasks of the chat app: thin, keyed by primary key (see ``runs.tasks``)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="chat.extract_upload_text", ignore_result=True)
def extract_upload_text(upload_id: int) -> None:
    """A PDF's text, off the request thread that stored it (``chat.files.ensure_text``:
    bounded, and nothing to do when a turn extracted it first)."""
    from chat import files
    from chat.models import Upload

    upload = Upload.objects.filter(pk=upload_id).first()
    if upload is not None:
        files.ensure_text(upload)
