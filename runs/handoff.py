"""A Django view that answers with a turn's stream.

The view does the request's work in Django (authentication, CSRF, validation, idempotency,
the turn's writes) and ends with ``hand_off``: a placeholder response that names a stream
plan. ``HandoffEdge``, the ASGI layer around Django in ``genie.asgi``, sees the placeholder
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
from typing import Any

from django.db.models import Max
from django.http import HttpResponse
from rest_framework.request import Request
from rest_framework.response import Response

from chat.models import Session
from genie.throttles import client_ip
from runs.exceptions import TooManyStreams
from runs.formats import StreamFormat
from runs.models import Run, RunEvent
from runs.sse import StreamPlan, events_before, plan_backlog, relay_stream
from runs.stream_slots import credential_ident, release_slot_now, take_slot

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


def stream_turn(
    request: Request,
    start: Callable[[], Response],
    *,
    wire: StreamFormat,
    headers: Callable[[Request, Response, Run], dict[str, str]],
    session: Session | None = None,
    after_seq: int | None = None,
    run_field: str = "run_uuid",
) -> HttpResponse | Response:
    """Start a turn with ``start`` (a view's JSON answer naming the run in ``run_field``:
    an adapter names it in its own words) and answer with its stream instead (from after
    ``after_seq`` when given: a paused turn goes on). ``session``: the session the turn
    goes to, when known before ``start`` (which may create it). The stream's slot is taken
    first, so a caller at its cap gets 429 before anything is written; an error answer
    (4xx) is returned as it is."""
    ident = credential_ident(request.auth, client_ip(request.META))
    slot = take_slot(ident)
    if slot is None:
        raise TooManyStreams()
    try:
        stored_before = stored_seq(session) if session is not None else 0
        response = start()
        if response.status_code >= 300 or run_field not in (response.data or {}):
            release_slot_now(ident, slot)
            return response
        run = Run.objects.select_related("session", "agent_message").get(uuid=response.data[run_field])
        # What the JSON answer said in its headers (an idempotent replay says so) still holds.
        said = {name: value for name, value in response.items() if name.lower() != "content-type"}
        fresh = response.get("Idempotent-Replayed") != "true"
        plan = turn_plan(run, (ident, slot), stored_before=stored_before if fresh else None, after_seq=after_seq)
        said.update(headers(request, response, run))
    except BaseException:
        release_slot_now(ident, slot)
        raise
    if plan is None:  # a replayed turn whose events are no longer kept: its JSON answer is all there is
        release_slot_now(ident, slot)
        return response
    return hand_off(plan=plan, wire=wire, headers=said)


def stored_seq(session: Session) -> int:
    return RunEvent.objects.filter(session=session).aggregate(m=Max("seq"))["m"] or 0


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
