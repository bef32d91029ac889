"""The AI SDK UI message stream (the default): each stored event as it was written."""

from __future__ import annotations

from runs.events import StreamEvent
from runs.formats.base import StreamFormat


class UIMessageFormat(StreamFormat):
    """``id: <seq>`` and ``data: <chunk>``: the event log is already in this protocol, so a
    client resumes with ``Last-Event-ID`` across runs."""

    name = "ui-message"
    extra_headers = ((b"x-vercel-ai-ui-message-stream", b"v1"),)

    def frame(self, event: StreamEvent) -> str:
        return event.sse()
