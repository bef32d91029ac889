"""Django under ASGI with its request chain run synchronously, and bodies over the limit
refused before they are read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import FileResponse, HttpRequest, HttpResponseBase
from django.urls import Resolver404, resolve

from genie.cors import asgi_cors
from genie.exceptions import error_body_for_status

# A multipart body is its file and a little more: boundaries, part headers, a field or two.
MULTIPART_OVERHEAD = 64 * 1024


class BodyTooLarge(Exception):
    """A body (sent without Content-Length) grew past the limit while it was read."""


def body_limit(scope: dict[str, Any]) -> int | None:
    """The largest body Django would accept for this request: an upload's file
    (GENIE_MAX_UPLOAD_BYTES) for a multipart body, DATA_UPLOAD_MAX_MEMORY_SIZE otherwise
    (None: no limit)."""
    content_type = header(scope, b"content-type").lower()
    if content_type.startswith("multipart/"):
        return settings.GENIE_MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def header(scope: dict[str, Any], name: bytes) -> str:
    return next((value.decode("latin-1") for key, value in scope.get("headers", []) if key.lower() == name), "")


class Admission:
    """At most ``limit`` requests' Django work at once in this process, the others waiting
    their turn in arrival order; a request still in Django after ``window`` seconds (a
    synchronous wait for a reply, a stop's wait, an upload's extraction) stops counting,
    so a slow request delays the ones behind it by ``window`` at most.

    Why: Django runs each request's sync work on the request's own thread, so a burst of
    50 new chats is 25 threads per Daphne sharing one GIL, each taking 5 ms turns: they
    all finish together, at the end of the burst, each holding a database connection (the
    pool ran dry and waited for new ones), while the event loop that relays the first
    tokens waits its turn among them. Admitted a few at a time, they finish one after
    another and the loop keeps its turns. ``limit`` 0: no limit."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        # One semaphore per event loop: an asyncio primitive belongs to the loop that
        # first waits on it (Daphne has one; tests start one per test).
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.limit <= 0:
            yield
            return
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:  # not built on every request only to be thrown away
            semaphore = self._semaphores[loop] = asyncio.Semaphore(self.limit)
        await semaphore.acquire()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                semaphore.release()

        timer = loop.call_later(self.window, release)
        try:
            yield
        finally:
            timer.cancel()
            release()


class SyncChainASGIHandler(ASGIHandler):
    """Django's ASGI handler with the middleware chain and the view loaded in sync mode
    and entered once per request, on the request's own thread (``ThreadSensitiveContext``,
    as Django runs a sync view).

    Every view behind it is sync (DRF) and so is every middleware hook in use. Django's
    own handler loads the chain in async mode and crosses between the event loop and the
    request's thread at each sync part: each sync-only middleware's hooks, the URL
    resolution, the view, the deferred render of DRF's response. On this project's chain
    that was 6 ms of Daphne CPU for the cheapest request (``/healthz``). Reading the body,
    disconnects, the request signals and sending the response (streamed ones included)
    stay with ``ASGIHandler`` on the event loop.

    A body over ``body_limit`` is refused with 413 ``request_too_large`` (in the voice of
    the view it was sent to) before Django reads it: at once by its Content-Length, or as
    soon as a body without one grows past the limit. Django would otherwise spool the
    whole body, then parse it, before the view's own 413.
    """

    def __init__(self) -> None:  # ASGIHandler's would load the chain in async mode first
        self.load_middleware(is_async=False)
        self.admission = Admission(settings.GENIE_REQUEST_CONCURRENCY, settings.GENIE_REQUEST_ADMISSION_WINDOW)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        limit = body_limit(scope)
        if limit is None:
            await super().handle(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            await self.refuse_body(scope, send, limit)
            return
        size = 0

        async def counted() -> dict[str, Any]:  # a body without Content-Length, or a longer one
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            if size > limit:
                raise BodyTooLarge()
            return message

        try:
            await super().handle(scope, counted, send)
        except BodyTooLarge:
            await self.refuse_body(scope, send, limit)

    async def refuse_body(self, scope: dict[str, Any], send: Any, limit: int) -> None:
        try:
            view = resolve(scope["path"]).func
        except Resolver404:
            view = None
        voice = getattr(getattr(view, "cls", view), "error_voice", error_body_for_status)
        message = f"The request body is larger than allowed ({limit} bytes)."
        body = json.dumps(voice("request_too_large", message, {"limit_bytes": limit}, 413)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        cors = await asgi_cors(scope)  # a widget's upload reads its 413 too
        await send({"type": "http.response.start", "status": 413, "headers": headers + cors.headers})
        await send({"type": "http.response.body", "body": body})

    async def run_get_response(self, request: HttpRequest) -> HttpResponseBase:
        async with self.admission.slot():
            response = await sync_to_async(self.get_response, thread_sensitive=True)(request)
        response._handler_class = self.__class__
        if isinstance(response, FileResponse):  # as ASGIHandler: the server does the chunking
            response.block_size = self.chunk_size
        return response
