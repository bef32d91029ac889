"""A body over the limit is refused with 413 before it is read (issue 26, finding 13: an
oversized upload was read whole, spooled and parsed before the 413): by its Content-Length
at once, or, sent without one, as soon as it grows past the limit. Driven through Genie's
ASGI application with the body never (or only partly) sent: a handler that read it would
wait for the rest and answer nothing."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.testing import ApplicationCommunicator

UPLOAD = "/api/v1/sessions/5e55105e-0000-4000-8000-00000000dead/uploads"


def scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }


async def answer(path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, dict]:
    from genie.asgi import application

    communicator = ApplicationCommunicator(application, scope(path, headers))
    for chunk in chunks:
        await communicator.send_input({"type": "http.request", "body": chunk, "more_body": True})
    start = await communicator.receive_output(timeout=10)
    body = await communicator.receive_output(timeout=10)
    await communicator.wait(timeout=10)
    return start["status"], json.loads(body["body"])


@pytest.mark.django_db
def test_an_upload_over_the_limit_is_413_by_its_content_length_before_it_is_read(settings):
    settings.GENIE_MAX_UPLOAD_BYTES = 1_000_000
    headers = [(b"content-type", b"multipart/form-data; boundary=x"), (b"content-length", b"50000000")]

    status, body = asyncio.run(answer(UPLOAD, headers, [b"--x\r\n"]))

    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    assert body["error"]["details"] == {"limit_bytes": 1_000_000 + 64 * 1024}


@pytest.mark.django_db
def test_a_body_without_a_length_is_refused_once_it_grows_past_the_limit(settings):
    settings.GENIE_MAX_UPLOAD_BYTES = 100_000
    headers = [(b"content-type", b"multipart/form-data; boundary=x")]

    status, body = asyncio.run(answer(UPLOAD, headers, [b"a" * 100_000, b"a" * 100_000]))

    assert status == 413
    assert body["error"]["code"] == "request_too_large"


@pytest.mark.django_db
def test_a_json_body_over_the_limit_is_413_in_the_protocols_voice(settings):
    headers = [(b"content-type", b"application/json"), (b"content-length", b"50000000")]

    status, body = asyncio.run(answer("/v1/chat/completions", headers, [b"{"]))

    assert status == 413
    assert body["error"]["type"] == "invalid_request_error"
