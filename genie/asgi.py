"""ASGI entry point: Channels routes the SSE paths (the canonical two, the protocols') to the
lean relay, the rest to Django (through the edge that relays the streams its views hand off)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "genie.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application

from genie.handlers import SyncChainASGIHandler  # noqa: E402

django_application = SyncChainASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from protocols.routing import stream_routes  # noqa: E402
from runs.handoff import HandoffEdge  # noqa: E402
from runs.sse import stream_app  # noqa: E402
from runs.urls import RUN_STREAM_PATH, SESSION_STREAM_PATH  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                path(f"api/v1/{SESSION_STREAM_PATH}", stream_app),
                path(f"api/v1/{RUN_STREAM_PATH}", stream_app),
                *stream_routes,  # every protocol's resumable streams
                # Django, with the edge that relays a view's handed-off stream (a POST that
                # answers with its turn's stream).
                re_path(r"", HandoffEdge(django_application)),
            ]
        ),
    }
)
