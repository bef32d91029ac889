"""Uploads through the API with real files: the type judged from the bytes, the limits,
attachments on messages, and the files going with their session."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from chat import tasks
from chat.models import Message, Session, Upload
from genie.models import AccessToken
from genie.services import create_access_token
from tests.conftest import bearer_client
from tests.factories import SessionFactory, UserFactory
from tests.files import pdf_with_text, png

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def session(member, agent):
    return SessionFactory(agent=agent, owner=member.user)


def upload(api, session, name: str, content: bytes, content_type: str = "application/octet-stream", **headers):
    file = SimpleUploadedFile(name, content, content_type=content_type)
    return api.post(f"/api/v1/sessions/{session.uuid}/uploads", {"file": file}, format="multipart", **headers)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("notes.txt", "Crème brûlée, 3 eggs\n".encode(), "text/plain"),
        ("order.json", b'{"order": 42, "items": ["tea"]}', "application/json"),
        ("invoice.pdf", pdf_with_text("Invoice 42"), "application/pdf"),
        ("pixel.png", png(), "image/png"),
        ("photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(20), "image/jpeg"),
        ("anim.gif", b"GIF89a" + bytes(20), "image/gif"),
        ("pic.webp", b"RIFF\x1a\x00\x00\x00WEBPVP8 " + bytes(20), "image/webp"),
    ],
)
def test_an_upload_is_typed_from_its_bytes_and_stored(api, session, name, content, expected):
    # The client claims every file is a PNG: the bytes decide.
    response = upload(api, session, name, content, content_type="image/png")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["content_type"] == expected
    assert body["filename"] == name
    assert body["size"] == len(content)
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    content_url = f"http://testserver/api/v1/sessions/{session.uuid}/uploads/{body['file_id']}/content"
    assert body["url"] == content_url
    assert api.get(f"/api/v1/sessions/{session.uuid}/uploads/{body['file_id']}").json() == body
    download = api.get(content_url)
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == content
    assert download["Content-Type"] == expected
    assert download["X-Content-Type-Options"] == "nosniff"


def test_a_pdf_keeps_its_extracted_text_for_the_model(api, session):
    body = upload(api, session, "invoice.pdf", pdf_with_text("Invoice 42", "Total 99 EUR")).json()
    tasks.extract_upload_text(Upload.objects.get(file_id=body["file_id"]).pk)  # off the request (test_pdf_text)

    stored = Upload.objects.get(file_id=body["file_id"])
    assert "Invoice 42" in stored.text
    assert "Total 99 EUR" in stored.text
    assert not stored.text_cut


def test_a_long_text_file_is_cut_at_the_budget(api, session, settings):
    settings.GENIE_ATTACHMENT_TOKENS = 10  # 40 characters

    body = upload(api, session, "long.txt", b"x" * 100).json()

    stored = Upload.objects.get(file_id=body["file_id"])
    assert (stored.text, stored.text_cut) == ("x" * 40, True)


@pytest.mark.parametrize(
    "content",
    [b"\x00\x01\x02binary", b"PK\x03\x04zipfile", b"\xff\xfe\xfd not utf-8", b"MZ\x90\x00exe"],
)
def test_other_types_are_415_and_store_nothing(api, session, content):
    response = upload(api, session, "notes.txt", content, content_type="text/plain")

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_file_type"
    assert not Upload.objects.exists()


def test_a_file_over_the_limit_is_413(api, session, settings):
    settings.GENIE_MAX_UPLOAD_BYTES = 1000

    response = upload(api, session, "big.txt", b"a" * 1001)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    assert not Upload.objects.exists()
    assert upload(api, session, "ok.txt", b"a" * 1000).status_code == 201


def test_a_file_at_the_default_limit_of_10_mb_is_accepted_and_one_byte_more_refused(api, session):
    ten_mb = 10 * 1024 * 1024
    assert upload(api, session, "big.txt", b"a" * ten_mb).status_code == 201
    assert upload(api, session, "bigger.txt", b"a" * (ten_mb + 1)).status_code == 413


def test_an_upload_needs_the_file_field(api, session):
    response = api.post(f"/api/v1/sessions/{session.uuid}/uploads", {"other": "x"}, format="multipart")

    assert response.status_code == 400
    assert "file" in response.json()["error"]["details"]


def test_another_users_session_and_its_files_are_404(api, session):
    other = SessionFactory(agent=session.agent)  # another owner, same team
    file_id = Upload.objects.create(
        session=other, file="uploads/x", filename="x.txt", content_type="text/plain", size=1, sha256=""
    ).file_id

    assert upload(api, other, "a.txt", b"hello").status_code == 404
    assert api.get(f"/api/v1/sessions/{other.uuid}/uploads/{file_id}").status_code == 404
    assert api.get(f"/api/v1/sessions/{session.uuid}/uploads/{file_id}").status_code == 404
    assert api.get(f"/api/v1/sessions/{session.uuid}/uploads/{file_id}/content").status_code == 404


def test_the_idempotency_fingerprint_covers_the_files_content(api, session):
    first = upload(api, session, "a.txt", b"hello", HTTP_IDEMPOTENCY_KEY="k1")
    replay = upload(api, session, "a.txt", b"hello", HTTP_IDEMPOTENCY_KEY="k1")
    other_content = upload(api, session, "a.txt", b"world", HTTP_IDEMPOTENCY_KEY="k1")

    assert first.status_code == replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert other_content.status_code == 422
    assert Upload.objects.count() == 1


def test_file_ids_attach_uploads_to_the_user_message(api, session):
    text_file = upload(api, session, "notes.txt", b"hello").json()
    image = upload(api, session, "pixel.png", png()).json()

    response = api.post(
        f"/api/v1/sessions/{session.uuid}/messages",
        {"text": "Read these", "file_ids": [text_file["file_id"], image["file_id"]]},
        format="json",
    )

    assert response.status_code == 201
    user_message = session.messages.get(sender_role=Message.SenderRole.USER)
    transcript = api.get(f"/api/v1/sessions/{session.uuid}/messages").json()["results"]
    attachments = transcript[0]["attachments"]
    assert [item["file_id"] for item in attachments] == [text_file["file_id"], image["file_id"]]
    assert attachments[1] == {key: image[key] for key in ("file_id", "filename", "content_type", "size", "url")}
    assert user_message.attachments.count() == 2
    assert transcript[1]["attachments"] == []


def test_unknown_or_foreign_file_ids_are_400_and_create_nothing(api, session):
    other = SessionFactory(agent=session.agent, owner=session.owner)
    foreign = upload(api, other, "notes.txt", b"hello").json()["file_id"]
    before = Message.objects.count()

    for file_ids in ([foreign], ["00000000-0000-0000-0000-000000000000"]):
        response = api.post(
            f"/api/v1/sessions/{session.uuid}/messages", {"text": "hi", "file_ids": file_ids}, format="json"
        )
        assert response.status_code == 400
        assert "file_ids" in response.json()["error"]["details"]
    assert Message.objects.count() == before


def test_at_most_ten_file_ids(api, session):
    ids = [upload(api, session, f"{n}.txt", b"hi").json()["file_id"] for n in range(11)]

    response = api.post(f"/api/v1/sessions/{session.uuid}/messages", {"text": "hi", "file_ids": ids}, format="json")

    assert response.status_code == 400
    assert "file_ids" in response.json()["error"]["details"]


def test_a_new_session_takes_copies_of_files_the_caller_uploaded(api, session):
    file_id = upload(api, session, "notes.txt", b"hello").json()["file_id"]

    response = api.post("/api/v1/sessions", {"text": "Read this", "file_ids": [file_id]}, format="json")

    assert response.status_code == 201
    new_session = response.json()["uuid"]
    attachments = api.get(f"/api/v1/sessions/{new_session}/messages").json()["results"][0]["attachments"]
    assert len(attachments) == 1
    assert attachments[0]["file_id"] != file_id  # the new session's own copy
    assert attachments[0]["url"].startswith(f"http://testserver/api/v1/sessions/{new_session}/uploads/")
    assert b"".join(api.get(attachments[0]["url"]).streaming_content) == b"hello"


def test_scan_context_is_stored_beside_ui_context(api, session):
    scan = {"tabTitle": "Pricing", "pageUrl": "https://shop.example/pricing"}

    api.post(
        f"/api/v1/sessions/{session.uuid}/messages",
        {"text": "hi", "ui_context": {"view": "cart"}, "scan_context": scan},
        format="json",
    )

    message = session.messages.get(sender_role=Message.SenderRole.USER)
    assert (message.ui_context, message.scan_context) == ({"view": "cart"}, scan)


def test_scan_context_is_size_limited(api, session, settings):
    settings.GENIE_MAX_METADATA_BYTES = 50

    response = api.post("/api/v1/sessions", {"text": "hi", "scan_context": {"pageUrl": "x" * 100}}, format="json")

    assert response.status_code == 400
    assert "scan_context" in response.json()["error"]["details"]


@pytest.mark.django_db(transaction=True)
def test_files_are_deleted_with_their_session_from_storage_too(api, session):
    body = upload(api, session, "notes.txt", b"hello").json()
    name = Upload.objects.get(file_id=body["file_id"]).file.name
    assert default_storage.exists(name)

    assert api.delete(f"/api/v1/sessions/{session.uuid}").status_code == 204

    assert not Upload.objects.exists()
    assert not default_storage.exists(name)


def test_the_admin_shows_attachments_and_contexts_and_downloads_the_files(api, session, client):
    file_id = upload(api, session, "notes.txt", b"hello admin").json()["file_id"]
    api.post(
        f"/api/v1/sessions/{session.uuid}/messages",
        {"text": "hi", "file_ids": [file_id], "scan_context": {"tabTitle": "Pricing"}, "ui_context": {"v": 1}},
        format="json",
    )
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    stored = Upload.objects.get(file_id=file_id)
    message = session.messages.get(sender_role=Message.SenderRole.USER)

    transcript = client.get(f"/admin/chat/session/{session.pk}/change/").content.decode()
    detail = client.get(f"/admin/chat/message/{message.pk}/change/")
    download = client.get(f"/admin/chat/upload/{stored.pk}/download/")

    assert f"/admin/chat/upload/{stored.pk}/download/" in transcript
    assert "notes.txt" in transcript
    assert "Pricing" in transcript
    assert detail.status_code == 200
    assert b"notes.txt" in detail.content
    assert b"".join(download.streaming_content) == b"hello admin"
    assert client.get(f"/admin/chat/upload/{stored.pk}/change/").status_code == 200


def test_a_publishable_key_reaches_only_the_files_of_its_own_sessions(team, agent):
    _, key = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)
    widget = bearer_client(key)
    started = widget.post("/api/v1/sessions", {"text": "hi"}, format="json").json()
    mine = bearer_client(key, HTTP_X_SESSION_SECRET=started["client_secret"])
    session = Session.objects.get(uuid=started["uuid"])

    created = upload(mine, session, "notes.txt", b"hello")
    file_id = created.json()["file_id"]

    assert created.status_code == 201
    assert (
        b"".join(mine.get(f"/api/v1/sessions/{session.uuid}/uploads/{file_id}/content").streaming_content) == b"hello"
    )
    assert upload(widget, session, "notes.txt", b"hello").status_code == 404  # without its client secret
    assert widget.get(f"/api/v1/sessions/{session.uuid}/uploads/{file_id}").status_code == 404
