"""The interface every wire format of the relay implements."""

from __future__ import annotations

from django.conf import settings

from runs.events import StreamEvent

Header = tuple[bytes, bytes]

INTERRUPTED = b": interrupted; resume with Last-Event-ID\n\n"


class StreamFormat:
    """How one protocol writes the event log: its headers, what opens the stream, each
    event's frame, and what closes it.

    One instance serves one stream, so a format may keep what it needs across events (the
    text so far, whether a part is open). The relay decides which events a stream covers
    and in which order; the format never reads Redis or the database.
    """

    name: str = ""
    content_type: bytes = b"text/event-stream"
    extra_headers: tuple[Header, ...] = ()
    heartbeat: bytes = b": ping\n\n"
    # A format whose frames sum up earlier events of the run (seed 001's ``agent.message``
    # holds the whole reply) reads a run's own stream from the run's start even when the
    # client resumes with Last-Event-ID; the relay then leaves out on the wire what the
    # client has (``StreamPlan.delivered_seq``), after the format has read it.
    reads_whole_run: bool = False

    def resume_from_frame(self, seq: int, frames: int) -> None:
        """The client resumed within event ``seq``, which it has the first ``frames`` frames
        of (``Last-Event-ID: <seq>.<i>``; only a format that reads the whole run names the
        frames of one event apart): leave those out."""

    def headers(self) -> list[Header]:
        return [
            (b"content-type", self.content_type),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            *self.extra_headers,
        ]

    def preamble(self) -> bytes:
        """The bytes before the first event."""
        return f": ok\n\nretry: {settings.GENIE_SSE_RETRY_MS}\n\n".encode()

    def frame(self, event: StreamEvent) -> str:
        """The event on the wire ('' when the protocol has nothing to say for it)."""
        raise NotImplementedError

    def ends_after(self, event: StreamEvent) -> bool:
        """Whether this response ends after ``event``, before the run's finish (a protocol
        whose turn ends at a pause). The relay always ends after the covered run's finish."""
        return False

    def epilogue(self, *, complete: bool) -> bytes:
        """The last bytes: ``complete`` when the stream reached its end, otherwise it was
        cut short (Redis went away, a gap not stored yet, the time limit) and the client
        should resume."""
        return b"" if complete else INTERRUPTED
