"""Answering a turn: ``answer_turn`` relays its stream, waits for its reply, or renders it.

A streamed answer: the view does the request's work in Django (authentication, CSRF,
validation, idempotency, the turn's writes) and ends with ``hand_off``: a placeholder
response that names a stream plan. ``HandoffEdge``, the ASGI layer around Django in ``genie.asgi``, sees the placeholder
and relays that plan on the same response, with the relay's own backpressure and
disconnect handling; the headers Django added (CORS, ``Location``) go with it. A plan
that no edge picks up (the test client, a WSGI server) expires after HANDOFF_TTL and gives
its stream slot back.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from rest_framework.request import Request
from rest_framework.response import Response

from chat.models import Message
from genie.links import absolute_url
from genie.throttles import client_ip
from runs.compaction import replayed_events
from runs.events import StreamEvent
from runs.exceptions import RunRequiresAction, RunTimeout, TooManyStreams
from runs.formats import StreamFormat
from runs.models import Run
from runs.serializers import pending_actions
from runs.services import Turn
from runs.sse import StreamPlan, events_before, plan_backlog, relay_stream
from runs.stream_slots import credential_ident, release_slot_now, take_slot
from runs.vocabulary import to_json
from runs.waiting import wait_for_continuation, wait_for_finish

HANDOFF_HEADER = b"genie-relay-handoff"
HANDOFF_TTL = 30.0

_pending: dict[str, tuple[float, StreamPlan, StreamFormat]] = {}
_pending_lock = threading.Lock()


def wants_event_stream(request: Request) -> bool:
    return "text/event-stream" in request.META.get("HTTP_ACCEPT", "")


def hand_off(*, plan: StreamPlan, wire: StreamFormat, headers: dict[str, str] | None = None) -> HttpResponse:
    """The placeholder response for ``plan``: the edge relays it in ``wire``'s protocol."""
    token = secrets.token_urlsafe(18)
    now = time.monotonic()
    with _pending_lock:
        for stale in [t for t, (at, _, _) in _pending.items() if now - at > HANDOFF_TTL]:
            _, old, _ = _pending.pop(stale)
            release_slot_now(*old.slot)
        _pending[token] = (now, plan, wire)
    response = HttpResponse(status=200, content_type=wire.content_type.decode())
    for name, value in (headers or {}).items():
        response[name] = value
    response[HANDOFF_HEADER.decode()] = token
    return response


def take_handoff(token: str) -> tuple[StreamPlan, StreamFormat] | None:
    with _pending_lock:
        entry = _pending.pop(token, None)
    return None if entry is None else entry[1:]


def turn_plan(
    run: Run, slot: tuple[str, str], *, stored_before: int | None = None, after_seq: int | None = None
) -> StreamPlan | None:
    """The stream of one turn from its start (or from after ``after_seq``, a paused
    turn's continuation) to its finish (only its own events).

    ``stored_before``: the session's last stored event id read before the turn was
    created, so none of the turn's: the relay reads the rest from Redis (and fills any gap
    from PostgreSQL), with no backlog query. Otherwise (a replayed turn, which may be long
    over, or a continuation) the plan is read from the log."""
    if stored_before is not None and after_seq is None:
        return StreamPlan(
            session_uuid=str(run.session.uuid),
            after_seq=stored_before,
            close_after_run=str(run.uuid),
            run_filter=str(run.uuid),
            backlog=[],
            slot=slot,
        )
    after = events_before(run) if after_seq is None else after_seq
    plan = plan_backlog(session=run.session, last_event_id=after, run_uuid=str(run.uuid))
    if not isinstance(plan, StreamPlan):
        return None  # the run is over and nothing of it is left to send (its events were purged)
    return replace(plan, slot=slot)


def answer_turn(
    request: Request,
    start: Callable[[], Turn],
    *,
    render: Callable[[Request, Turn], Response],
    wire: StreamFormat | None = None,
    headers: Callable[[Request, Turn], dict[str, str]] | None = None,
    wait: bool = False,
    timed_out: Callable[[Request, Run], Exception] | None = None,
) -> HttpResponse | Response:
    """Start a turn with ``start`` (a ``chat.services.start_turn`` call) and answer it, the
    one way every entry answers one:

    - ``wire``: with the turn's stream in that format, relayed by ``HandoffEdge`` (from its
      ``after_seq`` for a continued turn), with ``headers(request, turn)``. The stream's slot is
      taken before ``start``, so a caller at its cap gets 429 before anything is written.
      A replayed turn whose events are no longer kept is answered with ``render``.
    - ``wait``: with ``render(request, turn)`` once the run ended or paused (``wait_for_reply``;
      ``timed_out``: the protocol's own error for a run that goes on).
    - otherwise with ``render(request, turn)`` at once.

    A replayed turn (an ``Idempotency-Key`` seen before) says so in ``Idempotent-Replayed``."""
    if wire is not None:
        return _relay(request, start, render=render, wire=wire, headers=headers)
    turn = start()
    if wait:
        turn = replace(turn, run=wait_for_reply(request, turn, timed_out=timed_out))
    response = render(request, turn)
    if turn.replayed:
        response["Idempotent-Replayed"] = "true"
    return response


def _relay(
    request: Request,
    start: Callable[[], Turn],
    *,
    render: Callable[[Request, Turn], Response],
    wire: StreamFormat,
    headers: Callable[[Request, Turn], dict[str, str]] | None,
) -> HttpResponse | Response:
    ident = credential_ident(request.auth, client_ip(request.META))
    slot = take_slot(ident)
    if slot is None:
        raise TooManyStreams()
    try:
        turn = start()
        plan = turn_plan(turn.run, (ident, slot), stored_before=turn.stored_before, after_seq=turn.after_seq)
        said = {"Idempotent-Replayed": "true"} if turn.replayed else {}
        said.update(headers(request, turn) if headers is not None else {})
    except BaseException:
        release_slot_now(ident, slot)
        raise
    if plan is None:  # a replayed turn whose events are no longer kept: its JSON answer is all there is
        release_slot_now(ident, slot)
        response = render(request, turn)
        response["Idempotent-Replayed"] = "true"
        return response
    return hand_off(plan=plan, wire=wire, headers=said)


def wait_for_reply(
    request: Request, turn: Turn, *, timed_out: Callable[[Request, Run], Exception] | None = None
) -> Run:
    """The one synchronous wait (``stream: false``, seed 002, ``/v1`` without ``stream``,
    ``/v1/responses``): the run once it ended or paused for an answer, reloaded with its
    session, agent message and user message. A continued turn (answers to its pause) is
    first waited for until it left that pause. Holds no database connection while it
    waits; after GENIE_SYNC_TIMEOUT, ``timed_out(request, run)`` or ``RunTimeout`` (504),
    naming the run, which goes on."""
    run = turn.run
    if turn.after_seq is not None and not turn.replayed and run.status == Run.Status.REQUIRES_ACTION:
        wait_for_continuation(run, paused_at=run.updated_at)
    if not wait_for_finish(run=run, timeout=settings.GENIE_SYNC_TIMEOUT, or_pause=True):
        raise timed_out(request, run) if timed_out is not None else RunTimeout(details=run_urls(request, run))
    return Run.objects.select_related("session__agent", "agent_message", "user_message").get(pk=run.pk)


def reply_of(request: Request, run: Run) -> Message:
    """The agent message of a run that ended; ``RunRequiresAction`` (409) for a run that
    paused, naming what it waits for."""
    if run.status == Run.Status.REQUIRES_ACTION:
        calls = run.tool_calls.open().select_related("run__session", "connection_attempt")
        waiting = pending_actions(list(calls), request)
        raise RunRequiresAction(details={**run_urls(request, run), "pending_actions": waiting})
    return Message.objects.select_related("session", "feedback").get(pk=run.agent_message_id)


def run_urls(request: Request, run: Run) -> dict[str, str]:
    kwargs = {"session_uuid": run.session.uuid, "run_uuid": run.uuid}
    return {"run_uuid": str(run.uuid), "run_url": absolute_url(request, "runs:run-detail", **kwargs)}


def turn_headers(request: Request, turn: Turn) -> dict[str, str]:
    """A streaming POST's headers (the canonical API's, seed 003's, the AI SDK's): where to
    resume (the run's own stream, with Last-Event-ID), what it created, and a publishable
    key's new session's ``client_secret`` in ``Genie-Client-Secret`` (shown once)."""
    run = turn.run
    kwargs = {"session_uuid": run.session.uuid, "run_uuid": run.uuid}
    headers = {
        "Location": absolute_url(request, "runs:run-stream", **kwargs),
        "Genie-Session-Uuid": str(run.session.uuid),
        "Genie-Message-Uuid": str(run.agent_message.uuid),
        "Genie-Run-Uuid": str(run.uuid),
    }
    if turn.client_secret:
        headers["Genie-Client-Secret"] = turn.client_secret
    return headers


def answer_compaction(request: Request, start: Callable[[], Turn], *, wire: StreamFormat) -> HttpResponse | Response:
    """``answer_turn`` for a compaction run (``start``: a ``start_turn(compact=…)`` call), the
    canonical API's and seed 003's: relayed in ``wire``, with where to resume it
    (``compaction_headers``). A replay whose events were purged gets the stream rebuilt
    from what the run stored (``runs.compaction.replayed_events``)."""
    return answer_turn(
        request, start, wire=wire, headers=compaction_headers, render=partial(replayed_compaction, wire=wire)
    )


def compaction_headers(request: Request, turn: Turn) -> dict[str, str]:
    """A compaction's stream headers: ``turn_headers`` but the message (it has none)."""
    run = turn.run
    kwargs = {"session_uuid": run.session.uuid, "run_uuid": run.uuid}
    return {
        "Location": absolute_url(request, "runs:run-stream", **kwargs),
        "Genie-Session-Uuid": str(run.session.uuid),
        "Genie-Run-Uuid": str(run.uuid),
    }


def replayed_compaction(request: Request, turn: Turn, *, wire: StreamFormat) -> HttpResponse:
    run = turn.run
    events = [
        StreamEvent(0, str(run.uuid), type_, to_json({"type": type_, **fields}))
        for type_, fields in replayed_events(run)
    ]
    body = wire.preamble() + "".join(wire.frame(event) for event in events).encode()
    response = HttpResponse(body, content_type=wire.content_type.decode())
    for name, value in wire.headers():
        if name != b"content-type":
            response[name.decode()] = value.decode()
    for name, value in compaction_headers(request, turn).items():
        response[name] = value
    return response


class HandoffEdge:
    """ASGI layer around Django: relays a handed-off plan on the response that named it;
    every other response passes through untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        handed: dict[str, Any] = {}

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                token = dict(message.get("headers", [])).get(HANDOFF_HEADER)
                found = take_handoff(token.decode()) if token else None
                if found is not None:
                    kept = [(k, v) for k, v in message["headers"] if k.lower() not in DROPPED_HEADERS]
                    handed.update(plan=found[0], wire=found[1], headers=kept)
                    return
            elif handed:
                return  # the placeholder's empty body
            await send(message)

        await self.app(scope, receive, capture)
        if handed:
            await relay_stream(handed["plan"], receive, send, handed["headers"], handed["wire"])


# The relay writes its own content type; the placeholder's length is not the stream's.
DROPPED_HEADERS = {HANDOFF_HEADER, b"content-type", b"content-length"}
