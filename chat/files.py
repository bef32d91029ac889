"""Uploaded files: what a file is (judged from its bytes, never the client's header), the
text the model reads of it, and how an attachment enters a prompt.

Text and JSON files are read as UTF-8 when they are uploaded. A PDF's text is extracted
with pypdf off the request thread: by the ``chat.extract_upload_text`` task the upload
enqueues, or by the turn that needs it first (``ensure_text``, in the worker), in a child
process bounded by GENIE_PDF_MAX_PAGES pages, GENIE_PDF_TIMEOUT seconds and
GENIE_PDF_MAX_MEMORY bytes (``chat.pdftext``; a crafted 15 KB PDF held a Daphne thread
7.7 s). Texts are cut at GENIE_ATTACHMENT_TOKENS (estimated at 4 characters a token)
with a visible note. Images reach agents marked ``vision`` as OpenAI-style ``image_url``
parts (a base64 data URL); other agents get a one-line note that an image was attached.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from typing import IO, Any

from django.conf import settings

from chat.models import Upload
from chat.pdftext import MORE_PAGES as PDF_MORE_PAGES

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # the budget's estimate: English text averages ~4 characters a token
IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


# Every byte but the C0 controls that text does not use (all except tab, LF, FF, CR).
NOT_CONTROL_BYTES = bytes(set(range(256)) - (set(range(32)) - {9, 10, 12, 13}))


def sniff_content_type(head: bytes, *, whole: bytes | None = None) -> str | None:
    """The file's type from its bytes: PDF, PNG/JPEG/WebP/GIF, JSON, plain text; None for
    anything else. ``head`` is the start of the file; ``whole`` the whole file when it is
    small enough to tell text (and JSON) from binary."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    for signature, content_type in IMAGE_SIGNATURES:
        if head.startswith(signature):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    data = head if whole is None else whole
    if data.translate(None, NOT_CONTROL_BYTES):  # control characters other than whitespace: binary
        return None
    try:
        decoded = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    try:
        json.loads(decoded)
    except ValueError:
        return "text/plain"
    return "application/json"


def text_budget_chars() -> int:
    return settings.GENIE_ATTACHMENT_TOKENS * CHARS_PER_TOKEN


def extract_text(data: bytes, content_type: str) -> tuple[str, bool]:
    """What the model reads of a file, within the budget, and whether it was cut. Images
    have none; a PDF pypdf cannot read gets a note instead of text. A PDF is read in a
    bounded child process (``pdf_text``): never call this for one on a request thread."""
    budget = text_budget_chars()
    if content_type in {"text/plain", "application/json"}:
        text = data.decode("utf-8-sig")
    elif content_type == "application/pdf":
        text = pdf_text(data, limit=budget + 1)
    else:
        return "", False
    if len(text) > budget:
        return text[:budget], True
    return text, False


def pdf_text(data: bytes, *, limit: int) -> str:
    """The PDF's text, page after page, reading no further than ``limit`` characters, the
    first GENIE_PDF_MAX_PAGES pages and GENIE_PDF_TIMEOUT seconds (the pages read by then,
    with a note), in a child process limited to GENIE_PDF_MAX_MEMORY bytes."""
    timeout, max_pages = settings.GENIE_PDF_TIMEOUT, settings.GENIE_PDF_MAX_PAGES
    command = [sys.executable, "-m", "chat.pdftext", str(limit), str(max_pages), str(settings.GENIE_PDF_MAX_MEMORY)]
    try:
        done = subprocess.run(  # noqa: S603 (our own module, with numbers)
            command, input=data, capture_output=True, timeout=timeout, cwd=settings.BASE_DIR, check=False
        )
    except subprocess.TimeoutExpired as exc:
        logger.info("PDF text extraction stopped after %s s", timeout)
        text = (exc.stdout or b"").decode("utf-8", errors="ignore")
        return f"{text}\n\n[Reading this PDF stopped after {timeout:g} s: the rest of its text is not included.]"
    text = done.stdout.decode("utf-8", errors="replace")
    if done.returncode == PDF_MORE_PAGES:
        return f"{text}\n\n[Only the first {max_pages} pages of this PDF were read.]"
    if done.returncode != 0:
        logger.info("PDF text extraction failed (%s): %s", done.returncode, done.stderr[-500:].decode(errors="replace"))
        return "[The PDF's text could not be extracted.]"
    return text


def ensure_text(upload: Upload) -> Upload:
    """The upload with its text, extracted now (bounded, see ``pdf_text``) when nobody has
    yet: the task enqueued by the upload, or a turn that got there first. Both may extract
    at once; the first to store wins, the text is the same. Worker side only."""
    if upload.text_ready:
        return upload
    with upload.file.open("rb") as file:
        data = file.read()
    text, cut = extract_text(data, upload.content_type)
    Upload.objects.filter(pk=upload.pk, text_ready=False).update(text=text, text_cut=cut, text_ready=True)
    upload.refresh_from_db(fields=["text", "text_cut", "text_ready"])
    return upload


def read_upload(file: IO[bytes]) -> bytes:
    """The whole file, or one byte more than GENIE_MAX_UPLOAD_BYTES (the caller refuses it)."""
    file.seek(0)
    return file.read(settings.GENIE_MAX_UPLOAD_BYTES + 1)


def attachment_parts(upload: Upload, *, vision: bool) -> list[dict[str, Any]]:
    """One attachment as content parts of its user message (OpenAI chat format)."""
    header = f"[Attached file: {upload.filename} ({upload.content_type}, {upload.size} bytes)]"
    if upload.is_image:
        if not vision:
            return [{"type": "text", "text": f"{header} An image; this model cannot see images."}]
        with upload.file.open("rb") as file:
            encoded = base64.b64encode(file.read()).decode()
        return [
            {"type": "text", "text": header},
            {"type": "image_url", "image_url": {"url": f"data:{upload.content_type};base64,{encoded}"}},
        ]
    if not upload.text_ready:  # read where no turn extracts (a request's context usage)
        return [{"type": "text", "text": f"{header}\n[The file's text is being extracted.]"}]
    text = f"{header}\n{upload.text}"
    if upload.text_cut:
        text += (
            f"\n[The file was cut here: the model reads its first {len(upload.text)} characters "
            f"(GENIE_ATTACHMENT_TOKENS = {settings.GENIE_ATTACHMENT_TOKENS}).]"
        )
    return [{"type": "text", "text": text}]


def user_content(text: str, uploads: list[Upload], *, vision: bool) -> str | list[dict[str, Any]]:
    """A user message's content: its text alone, or with its attachments. Text-only
    content stays a string (every OpenAI-compatible server and llama.cpp reads it); a
    list of parts only when an image part is in it."""
    if not uploads:
        return text
    parts = [{"type": "text", "text": text}]
    for upload in uploads:
        parts.extend(attachment_parts(upload, vision=vision))
    if any(part["type"] != "text" for part in parts):
        return parts
    return "\n\n".join(part["text"] for part in parts)
