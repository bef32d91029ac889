"""A PDF's text is read off the request thread and within bounds (issue 26, finding 7: a
crafted 15 KB PDF held a Daphne thread for 7.7 s, three pages 22.7 s): the upload is
answered at once with the same body, the ``chat.extract_upload_text`` task (or the first
turn that needs the text) extracts it in a child process bounded in time, pages and
memory, keeping the pages read by the time bound."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from chat import files, tasks
from chat.models import Upload
from tests.factories import SessionFactory
from tests.files import pdf_of_streams, pdf_slow_to_read, pdf_with_pages, pdf_with_text

pytestmark = pytest.mark.django_db

UPLOAD_FIELDS = {"file_id", "filename", "content_type", "size", "sha256", "created_at", "url"}


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.mark.timeout(60)  # the request thread would read the hostile PDF for minutes
def test_a_pdf_upload_is_answered_at_once_and_its_text_extracted_by_a_task(
    api, member, agent, django_capture_on_commit_callbacks
):
    session = SessionFactory(agent=agent, owner=member.user)
    url = f"/api/v1/sessions/{session.uuid}/uploads"

    with (
        mock.patch.object(tasks.extract_upload_text, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        hostile = api.post(url, {"file": SimpleUploadedFile("slow.pdf", pdf_slow_to_read())}, format="multipart")
        invoice = api.post(
            url, {"file": SimpleUploadedFile("invoice.pdf", pdf_with_text("Invoice 42"))}, format="multipart"
        )

    assert (hostile.status_code, invoice.status_code) == (201, 201)
    assert set(invoice.json()) == UPLOAD_FIELDS
    assert invoice.json()["content_type"] == "application/pdf"
    stored = Upload.objects.get(file_id=invoice.json()["file_id"])
    assert (stored.text, stored.text_ready) == ("", False)
    assert [call.args for call in delay.call_args_list] == [
        (Upload.objects.get(file_id=hostile.json()["file_id"]).pk,),
        (stored.pk,),
    ]

    tasks.extract_upload_text(stored.pk)

    stored.refresh_from_db()
    assert stored.text_ready
    assert "Invoice 42" in stored.text


@pytest.mark.timeout(60)  # unbounded, pypdf reads this page for minutes
def test_a_hostile_pdf_is_read_no_longer_than_the_time_bound(settings):
    settings.GENIE_PDF_TIMEOUT = 1

    text, _ = files.extract_text(pdf_slow_to_read(), "application/pdf")

    assert text.endswith("[Reading this PDF stopped after 1 s: the rest of its text is not included.]")


def test_the_pages_read_before_the_time_bound_are_kept(settings):
    settings.GENIE_PDF_TIMEOUT = 2
    quick = b"BT /F1 12 Tf 72 720 Td (First page) Tj ET"
    slow = b"BT /F1 12 Tf " + b"1 0 0 1 72 720 Tm (a) Tj " * 400_000 + b"ET"

    text, _ = files.extract_text(pdf_of_streams([quick, slow], compress=True), "application/pdf")

    assert text.startswith("First page")
    assert "stopped after 2 s" in text


def test_only_the_first_pages_are_read(settings):
    settings.GENIE_PDF_MAX_PAGES = 2

    text, cut = files.extract_text(pdf_with_pages(["one"], ["two"], ["three"]), "application/pdf")

    assert "one" in text
    assert "two" in text
    assert "three" not in text
    assert text.endswith("[Only the first 2 pages of this PDF were read.]")
    assert not cut
    assert files.extract_text(pdf_with_pages(["one"], ["two"]), "application/pdf")[0] == "one\n\n\ntwo\n"


def test_an_unreadable_pdf_gets_a_note(settings):
    text, cut = files.extract_text(b"%PDF-1.4\nnot really a pdf", "application/pdf")

    assert (text, cut) == ("[The PDF's text could not be extracted.]", False)


def test_a_pdf_that_needs_more_memory_than_allowed_gets_a_note(settings):
    settings.GENIE_PDF_MAX_MEMORY = 128 * 1024 * 1024
    # 60 KB that inflate to 60 MB (under pypdf's own inflation limit), read for ~30 s unbounded
    bomb = pdf_of_streams([b"BT /F1 12 Tf (x) Tj ET " + b" " * (60 * 1024 * 1024)], compress=True)

    text, _ = files.extract_text(bomb, "application/pdf")

    assert text == "[The PDF's text could not be extracted.]"
