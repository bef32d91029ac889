"""Seed 003, "messages and streaming", under ``/api/v1/chat/`` as its document writes it.

A session is Genie's session (its uuid is the document's ``session_id``); the document
creates none: a client opens one with seed 002's ``POST /chat`` or ``POST /api/v1/sessions``.
A thin layer over the sessions API: a message is ``chat.services.post_message`` answered
with its turn's stream in seed 003's format (``runs.formats.seed003``) by the one relay;
``uiContext`` and ``scanContext`` are the canonical ``ui_context`` and ``scan_context``;
a compaction is the canonical one (a compaction run, ``start_turn(compact=…)``) streamed as
``token``/``done``; context usage is the canonical body; a UI command is a client tool
call, answered by ``runs.services.submit_tool_result``.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import services
from chat.models import Session
from chat.serializers import CompactSerializer, ContextUsageSerializer
from chat.views import REDIS_UNAVAILABLE, TEXT_TOO_LONG
from genie.idempotency import IdempotentRequest
from genie.schema import IDEMPOTENCY_ERRORS, IDEMPOTENCY_KEY, error_response, register_error_voice
from protocols.base import ProtocolView, find_session
from protocols.seed003.serializers import (
    CommandResultSerializer,
    CommandSerializer,
    SendMessageSerializer,
)
from runs import context
from runs import services as run_services
from runs.formats import Seed003Format
from runs.handoff import answer_compaction, answer_turn, turn_headers
from runs.models import ToolCall
from runs.services import Turn

TAG = "seed 003"


def seed003_error(code: str, message: str, details: Any, status_code: int) -> dict[str, Any]:
    """Seed 003's error body: the shape of its stream's ``error`` event, so a client reads
    an error the same way whether it comes before the stream or in it."""
    return {"type": "error", "code": code, "message": message, "details": details}


register_error_voice(
    tag=TAG,
    component="Seed003Error",
    schema={
        "type": "object",
        "description": "Every error of the seed 003 API, shaped as its stream's `error` event: a stable code, "
        "a message, and details or null (for validation_error, the fields and their errors).",
        "properties": {
            "type": {"type": "string", "enum": ["error"]},
            "code": {"type": "string", "example": "validation_error"},
            "message": {"type": "string"},
            "details": {},
        },
        "required": ["type", "code", "message", "details"],
    },
)

# One event of the message stream as an SSE client parses it: ``data`` only.
SEED003_EVENT = {
    "type": "object",
    "properties": {
        "data": {
            "type": "string",
            "description": 'JSON: `{"type": "token", "content"}`, `{"type": "command", "call_id", "name", "input"}`, '
            '`{"type": "error", "code", "message"}`, `{"type": "done", "message": {"id", "role", "content"}, '
            '"metadata": {"run_id", "status", "commands", "usage", "context"}}`; a turn that waits for an '
            "approval or a sign-in ends with `done` whose `metadata.status` is `action_required`, with "
            "`pending_actions`; a compaction's `done` has `metadata.compaction`.",
        }
    },
    "required": ["data"],
}


def reachable_session(request: Request, session_id: str) -> Session:
    return find_session(request.auth, session_id, missing=NotFound("No such session."))


class SessionMessageView(ProtocolView, APIView):
    """``POST sessions/{session_id}/messages``: a message, answered with the reply's stream."""

    error_voice = staticmethod(seed003_error)
    json_always = True  # the answer is a stream whatever the Accept header asks; errors are JSON

    @extend_schema(
        tags=[TAG],
        request=SendMessageSerializer,
        parameters=[IDEMPOTENCY_KEY],
        examples=[
            OpenApiExample(
                "On the pricing page",
                {
                    "content": "Which plan fits a team of five?",
                    "uiContext": {"currentPage": "/pricing", "selectedElements": ["plan-team"]},
                    "scanContext": {"tabTitle": "Pricing", "pageUrl": "https://example.com/pricing"},
                },
                request_only=True,
            )
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                SEED003_EVENT,
                description="`data:` lines: `token` events, `command` for a UI command, `error`, then `done` "
                "with the whole message and its metadata.",
            ),
            409: error_response("`run_active`: the session's previous reply is still being written."),
            413: TEXT_TOO_LONG,
            **IDEMPOTENCY_ERRORS,
            503: REDIS_UNAVAILABLE,
        },
    )
    def post(self, request: Request, session_id: str) -> HttpResponse | Response:
        session = reachable_session(request, session_id)
        data = SendMessageSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        start = lambda: services.start_turn(  # noqa: E731
            caller=request.auth,
            idempotency=IdempotentRequest.of(request),
            session=session,
            text=data.validated_data["content"],
            ui_context=data.validated_data["uiContext"],
            scan_context=data.validated_data["scanContext"],
        )
        return answer_turn(request, start, wire=Seed003Format(), headers=turn_headers, render=run_started)


def run_started(request: Request, turn: Turn) -> Response:
    """A replayed message whose stream is no longer kept: the run it started."""
    return Response({"run_uuid": str(turn.run.uuid)}, status=status.HTTP_201_CREATED)


class SessionCompactView(ProtocolView, APIView):
    """``POST sessions/{session_id}/compact``: the canonical compaction (a run the worker
    writes, ``chat.services.start_turn(compact=…)``), streamed in seed 003's events."""

    error_voice = staticmethod(seed003_error)
    json_always = True  # the answer is a stream whatever the Accept header asks; errors are JSON

    @extend_schema(
        tags=[TAG],
        request=CompactSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                SEED003_EVENT,
                description="The summary as `token` events, then `done` whose `metadata.compaction` is "
                "`{before_tokens, after_tokens, messages_compacted}` (`error` first when the model fails).",
            ),
            409: error_response("`run_active`: a run is active; compact after it ends."),
            **IDEMPOTENCY_ERRORS,
            503: REDIS_UNAVAILABLE,
        },
    )
    def post(self, request: Request, session_id: str) -> HttpResponse | Response:
        """Summarise the session's earlier messages to free context (SSE)."""
        session = reachable_session(request, session_id)
        data = CompactSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        start = lambda: services.start_turn(  # noqa: E731
            caller=request.auth,
            idempotency=IdempotentRequest.of(request),
            session=session,
            compact=data.validated_data["keep_last"],
        )
        return answer_compaction(request, start, wire=Seed003Format())


class SessionContextUsageView(ProtocolView, APIView):
    """``GET sessions/{session_id}/context-usage``: the canonical body."""

    error_voice = staticmethod(seed003_error)

    @extend_schema(tags=[TAG], responses=ContextUsageSerializer)
    def get(self, request: Request, session_id: str) -> Response:
        """The session's token usage, as `GET /api/v1/sessions/{s}/context-usage`."""
        usage = context.context_usage(reachable_session(request, session_id))
        return Response(ContextUsageSerializer(usage).data)


class CommandView(ProtocolView, APIView):
    """``POST command``: the client's result of a UI command; the reply goes on."""

    error_voice = staticmethod(seed003_error)

    @extend_schema(
        tags=[TAG],
        request=CommandSerializer,
        examples=[
            OpenApiExample(
                "Navigated",
                {"session_id": "3f2c…", "call_id": "call_1", "output": {"navigated": "/pricing"}},
                request_only=True,
            )
        ],
        responses={
            200: CommandResultSerializer,
            404: error_response("`not_found`: no such session, or no such command in it."),
            409: error_response("`already_decided`: the command was answered before, or waits for no result."),
        },
    )
    def post(self, request: Request) -> Response:
        data = CommandSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        session = reachable_session(request, str(fields.pop("session_id")))
        call_id = fields.pop("call_id")
        try:
            call = run_services.submit_tool_result(session=session, call_id=call_id, **fields)
        except ToolCall.DoesNotExist as exc:
            raise NotFound("No such command in this session.") from exc
        status_ = ToolCall.RECORDED if call.is_ui_command else call.status
        return Response({"session_id": str(session.uuid), "call_id": call_id, "status": status_})
