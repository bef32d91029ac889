"""Every protocol's SSE GET routes served by the lean relay (``runs.sse``), for ``genie.asgi``."""

from django.urls import path

from protocols.aisdk.views import chat_stream_app
from protocols.responses.views import response_stream_app
from protocols.seed001.views import GENIE_RUN_STREAM_PATH, seed001_error
from runs.formats import Seed001Format
from runs.sse import StreamApp

stream_routes = [
    path("api/chat/<str:chat_id>/stream", chat_stream_app),  # the AI SDK's resume
    path(f"api/v1/{GENIE_RUN_STREAM_PATH}", StreamApp(wire=Seed001Format, error_voice=seed001_error)),
    # A response's stream (`?stream=true&starting_after=N`); without `stream`, on to Django.
    path("v1/responses/<str:response_id>", response_stream_app),
]
