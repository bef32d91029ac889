"""What the model receives of a turn's attachments and contexts, driven in-process with
a scripted model: text inline, a PDF's text, an image part for a vision agent and a
note for the others, the cut note, and scan_context beside ui_context."""

from __future__ import annotations

import base64
import io

import pytest

from chat import services
from chat.models import Session
from runs import loop
from tests.factories import SessionFactory
from tests.files import pdf_with_text, png
from tests.runs.conftest import text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_settings")]


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def turn_prompt(script, session: Session, message: str, files: dict[str, bytes], **context) -> list[dict]:
    """Upload ``files``, post ``message`` with them, run the turn; the messages the model got."""
    uploads = [
        services.store_upload(session=session, file=io.BytesIO(data), filename=name) for name, data in files.items()
    ]
    run = services.post_message(
        session=session, text=message, file_ids=[upload.file_id for upload in uploads], **context
    )
    provider = script(text("ok"))
    loop.execute_run(run.pk)
    return provider.requests[0].messages


def test_a_text_file_json_and_a_pdf_reach_the_model_inline(script, enqueued):
    session = SessionFactory()

    prompt = turn_prompt(
        script,
        session,
        "Summarise these",
        {"notes.txt": b"Buy milk", "order.json": b'{"order": 42}', "invoice.pdf": pdf_with_text("Invoice 42")},
    )

    user = prompt[-1]
    assert user["role"] == "user"
    assert isinstance(user["content"], str)  # text only: one string, as every server reads it
    content = user["content"]
    assert content.startswith("Summarise these\n\n[Attached file: notes.txt (text/plain, 8 bytes)]\nBuy milk")
    assert '[Attached file: order.json (application/json, 13 bytes)]\n{"order": 42}' in content
    assert "[Attached file: invoice.pdf (application/pdf," in content
    assert "Invoice 42" in content


def test_a_cut_file_says_so_to_the_model(script, enqueued, settings):
    settings.GENIE_ATTACHMENT_TOKENS = 5  # 20 characters
    session = SessionFactory()

    content = turn_prompt(script, session, "Read", {"long.txt": b"abcdefghij" * 5})[-1]["content"]

    assert "\nabcdefghijabcdefghij\n[The file was cut here: the model reads its first 20 characters" in content


def test_a_vision_agent_gets_the_image_as_an_image_url_part(script, enqueued):
    session = SessionFactory(agent__vision=True)
    image = png()

    content = turn_prompt(script, session, "What colour?", {"pixel.png": image})[-1]["content"]

    assert content == [
        {"type": "text", "text": "What colour?"},
        {"type": "text", "text": f"[Attached file: pixel.png (image/png, {len(image)} bytes)]"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(image).decode()}},
    ]


def test_an_agent_without_vision_gets_a_note_instead_of_the_image(script, enqueued):
    session = SessionFactory(agent__vision=False)

    content = turn_prompt(script, session, "What colour?", {"pixel.png": png()})[-1]["content"]

    assert isinstance(content, str)
    assert "[Attached file: pixel.png (image/png," in content
    assert "An image; this model cannot see images." in content
    assert "base64" not in content


def test_earlier_turns_keep_their_attachments_in_later_prompts(script, enqueued):
    session = SessionFactory()
    turn_prompt(script, session, "Remember this", {"notes.txt": b"The code is 1234"})

    prompt = turn_prompt(script, session, "What was the code?", {})

    assert [message["role"] for message in prompt[-3:]] == ["user", "assistant", "user"]
    assert "The code is 1234" in prompt[-3]["content"]
    assert prompt[-1]["content"] == "What was the code?"


def test_scan_context_and_ui_context_are_given_to_the_agent(script, enqueued):
    session = SessionFactory()
    scan = {"tabTitle": "Pricing", "pageUrl": "https://shop.example/pricing"}

    prompt = turn_prompt(script, session, "hi", {}, ui_context={"view": "cart"}, scan_context=scan)

    system = [message["content"] for message in prompt if message["role"] == "system"]
    assert "The user's current UI context: {'view': 'cart'}" in system
    assert (
        'How the user arrived (scan context): {"pageUrl": "https://shop.example/pricing", "tabTitle": "Pricing"}'
        in system
    )
