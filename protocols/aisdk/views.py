"""The AI SDK's own chat endpoint: ``useChat`` / ``DefaultChatTransport`` at ``/api/chat``.

- ``POST /api/chat {id, messages, trigger, messageId?, agent?}``: the client's chat ``id``
  names a session of the caller (created on first use, with ``agent`` or the default
  agent). The last user message's text parts are the new turn; ``regenerate-message``
  answers the last user message again; a last *assistant* message carries approval
  responses and client tool outputs, applied with the tool-call services, and the
  response continues that same message after its pause. Answers with the turn's stream
  in ``AISDKChatFormat`` (handed to the relay, like every streaming POST).
- ``GET /api/chat/{id}/stream``: the resume ``useChat`` sends (204 when idle, or when
  the chat id is new).
- ``GET /api/chat/{id}/messages``: the chat as ``UIMessage[]``, for the client's initial
  messages (``[]`` for a new chat id).
- ``POST /api/chat/{id}/stop``: stop the chat's run (``Chat.stop()`` only drops the connection).

A page Genie serves calls these with its session cookie and no other client code: a
cookie request whose ``Origin`` is the site's own (or a CSRF-trusted one) needs no CSRF
token (``SameOriginSessionAuthentication``).

Errors are the one error body with the AI SDK's error chunk fields beside it
(``{"type": "error", "errorText", "error": {code, message, details}}``): the SDK shows the
body as the error's message. Nothing is stored for a refused request.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.http import Http404, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import services
from chat.exceptions import ChatHistoryMismatch, NoToolAnswer, NoUserMessage
from chat.models import Agent, Message, Session
from genie.auth import BearerTokenAuthentication, Caller, CsrfSessionAuthentication
from genie.exceptions import error_body
from genie.idempotency import IdempotentRequest
from genie.schema import error_response
from protocols import base
from protocols.aisdk.serializers import ChatMessage, ChatRequestSerializer
from protocols.base import ProtocolView, parse_uuid
from runs import vocabulary as ev
from runs.events import pause_point
from runs.formats import AISDKChatFormat
from runs.handoff import answer_turn, turn_headers
from runs.models import Run, ToolCall
from runs.serializers import StopResultSerializer
from runs.services import ToolAnswer, Turn
from runs.sse import StreamApp, StreamPlan, StreamRefusal, plan_stream
from runs.waiting import stop_and_wait


class SameOriginSessionAuthentication(CsrfSessionAuthentication):
    """The session cookie, where a request from the site's own origin (or one in
    ``CSRF_TRUSTED_ORIGINS``) needs no CSRF token: ``useChat()`` on a page Genie serves
    sends none. Browsers send ``Origin`` with every POST and a page cannot set it, so it
    is Django's own origin check that decides; without an ``Origin`` the token is required."""

    def enforce_csrf(self, request: Request) -> None:
        if request.META.get("HTTP_ORIGIN") and CsrfViewMiddleware(lambda _: None)._origin_verified(request):
            return
        super().enforce_csrf(request)


AUTHENTICATION = [BearerTokenAuthentication, SameOriginSessionAuthentication]


def ai_sdk_error(code: str, message: str, details: Any, status_code: int) -> dict[str, Any]:
    """The one error body, with the AI SDK's ``error`` chunk fields beside it."""
    return {"type": "error", "errorText": message, **error_body(code, message, details)}


class AISDKChatView(ProtocolView, APIView):
    """``POST /api/chat``: one ``useChat`` request, answered with the turn's stream."""

    authentication_classes = AUTHENTICATION
    error_voice = staticmethod(ai_sdk_error)

    @extend_schema(
        request=ChatRequestSerializer,
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                {"type": "string"},
                description="The AI SDK UI message stream of the turn (`start` … `finish`, then `[DONE]`).",
            ),
            409: error_response(
                "`history_mismatch`: the messages contradict the stored chat; `run_active`; `already_decided`; "
                "`chat_id_taken`."
            ),
            413: error_response("`text_too_long`."),
        },
    )
    def post(self, request: Request) -> HttpResponse | Response:
        data = ChatRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        messages = [ChatMessage.parse(raw, index) for index, raw in enumerate(body["messages"])]
        session = Session.objects.with_chat_id(request.auth, body["id"]).select_related("agent").first()
        if body["trigger"] == "regenerate-message":
            return self.regenerate(request, session, messages, body.get("messageId"))
        if messages[-1].role == "assistant":
            return self.continue_reply(request, session, messages)
        if messages[-1].role != "user":
            raise NoUserMessage()
        text = messages[-1].text(len(messages) - 1)
        check_history(session, messages[:-1])
        agent = pick_agent(request.auth, body.get("agent")) if session is None else None
        start = lambda: services.start_turn(  # noqa: E731
            caller=request.auth,
            idempotency=IdempotentRequest.of(request),
            agent=agent,
            session=session,
            text=text,
            chat_id=body["id"] if session is None else "",
        )
        return answer_turn(request, start, wire=AISDKChatFormat(), headers=turn_headers, render=turn_started)

    def regenerate(
        self, request: Request, session: Session | None, messages: list[ChatMessage], message_id: str | None
    ) -> HttpResponse | Response:
        """The SDK drops the reply and sends the messages up to its user message."""
        if messages[-1].role != "user":
            raise NoUserMessage()
        reply = None if session is None else visible(session).filter(sender_role=Message.SenderRole.AGENT).last()
        if session is None or reply is None:
            raise ChatHistoryMismatch("This chat has no reply to regenerate.")
        if message_id and message_id not in {m.id for m in messages} and message_id != str(reply.uuid):
            raise ChatHistoryMismatch(
                "Only the chat's last reply can be regenerated.", details={"messageId": message_id}
            )
        check_history(session, messages[:-1], before=reply)
        start = lambda: services.start_turn(  # noqa: E731
            caller=request.auth, idempotency=IdempotentRequest.of(request), session=session, regenerate=reply
        )
        return answer_turn(request, start, wire=AISDKChatFormat(), headers=turn_headers, render=turn_started)

    def continue_reply(self, request: Request, session: Session | None, messages: list[ChatMessage]) -> HttpResponse:
        """The last message is a paused reply with answers: apply them (the tool-call
        services), then stream the same message on from its pause."""
        reply = messages[-1]
        run = None
        if session is not None and (reply_uuid := parse_uuid(reply.id)) is not None:
            run = session.runs.select_related("agent_message").filter(agent_message__uuid=reply_uuid).first()
        if run is None:
            raise ChatHistoryMismatch("The last message is not a reply of this chat.", details={"id": reply.id})
        check_history(session, messages[:-1], before=run.agent_message)
        answers = reply.tool_answers()
        calls = {call.call_id: call for call in run.tool_calls.filter(call_id__in=answers)}
        if unknown := sorted(set(answers) - set(calls)):
            raise ChatHistoryMismatch("Tool calls this reply never made.", details={"toolCallIds": unknown})
        if not calls:
            raise NoToolAnswer()
        wire = AISDKChatFormat(continues=(str(run.agent_message.uuid), str(run.uuid)))
        if run.is_finished:
            # The reply is over (the SDK sent it again, say after its last tool step):
            # nothing to apply, nothing more to stream.
            return answer_at_once(wire, run, FINISH_REASONS.get(run.status, "stop"))
        if run.status == Run.Status.REQUIRES_ACTION and not any(answers_now(calls[c], answers[c]) for c in calls):
            # The SDK sends the message again with answers the run has (say, an approved
            # client tool whose output is still to come): the turn still waits.
            return answer_at_once(wire, run, "tool-calls")
        pending = [call_id for call_id, call in calls.items() if call.is_open] or list(calls)
        start = lambda: services.start_turn(  # noqa: E731
            caller=request.auth,
            idempotency=IdempotentRequest.of(request),
            session=session,
            run=run,
            answers=[tool_answer(call_id, part) for call_id, part in answers.items()],
            after_seq=pause_point(run, pending).seq,
        )
        return answer_turn(request, start, wire=wire, headers=turn_headers, render=turn_started)


def turn_started(request: Request, turn: Turn) -> Response:
    """A replayed request whose stream is no longer kept: what it started (201), or
    continued (200)."""
    body = {"uuid": str(turn.session.uuid), "run_uuid": str(turn.run.uuid)}
    return Response(body, status=status.HTTP_201_CREATED if turn.after_seq is None else status.HTTP_200_OK)


def tool_answer(call_id: str, part: dict[str, Any]) -> ToolAnswer:
    """A tool part that carries an answer, as the tool-call services take it."""
    if part["state"] == "approval-responded":
        approval = part["approval"]  # an object with a boolean ``approved`` (ChatMessage.parse)
        return ToolAnswer(call_id, approved=approval["approved"], reason=str(approval.get("reason") or ""))
    if part["state"] == "output-error":
        return ToolAnswer(call_id, error=str(part.get("errorText") or "The client tool failed."))
    return ToolAnswer(call_id, output=part.get("output"))


def pick_agent(caller: Caller, handle: str | None) -> Agent:
    return base.pick_agent(caller, handle, missing=ValidationError({"agent": ["No such agent."]}, code="unknown_agent"))


def visible(session: Session) -> Any:
    """The chat as the AI SDK sees it: the transcript without replaced replies."""
    return session.messages.transcript().filter(replaced_by__isnull=True)


def check_history(session: Session | None, prior: list[ChatMessage], *, before: Message | None = None) -> None:
    """The messages before the new turn must not contradict the stored chat: a new chat
    has none; otherwise every assistant message is one of the chat's replies, in order,
    and the last of them is its latest reply (before ``before``, the reply being continued
    or regenerated). User messages keep the client's ids and are not compared."""
    if session is None:
        if prior:
            raise ChatHistoryMismatch("This chat id is new, but the messages hold an earlier conversation.")
        return
    replies = session.messages.filter(sender_role=Message.SenderRole.AGENT, replaced_by__isnull=True)
    if before is not None:
        replies = replies.filter(created_at__lt=before.created_at)
    stored = [str(value) for value in replies.order_by("created_at", "id").values_list("uuid", flat=True)]
    sent = [message.id for message in prior if message.role == "assistant"]
    positions = [stored.index(message_id) for message_id in sent if message_id in stored]
    if (
        len(positions) != len(sent)
        or positions != sorted(positions)
        or (stored and positions[-1:] != [len(stored) - 1])
    ):
        raise ChatHistoryMismatch(
            "The messages' assistant replies are not this chat's (load them from /api/chat/{id}/messages).",
            details={"stored": stored[-5:], "sent": sent[-5:]},
        )


def answers_now(call: ToolCall, part: dict[str, Any]) -> bool:
    """Whether ``part`` answers what ``call`` waits for."""
    if call.status == ToolCall.Status.PENDING_APPROVAL:
        return part["state"] == "approval-responded"
    return call.status == ToolCall.Status.AWAITING_RESULT and part["state"] in {"output-available", "output-error"}


# How a finished run's reply ended, as a ``finish`` chunk's ``finishReason`` (as its
# ``error`` or ``abort`` says it).
FINISH_REASONS = {Run.Status.FAILED: ev.ENDED_BY[ev.ERROR], Run.Status.STOPPED: ev.ENDED_BY[ev.ABORT]}


def answer_at_once(wire: AISDKChatFormat, run: Run, finish_reason: str) -> HttpResponse:
    """A continuation with nothing to relay (the turn still waits, or is over): its
    ``start``, then ``finish`` at once."""
    finish = {"type": ev.FINISH, "finishReason": finish_reason, "messageMetadata": {"run_uuid": str(run.uuid)}}
    body = wire.preamble() + ev.data_line(finish).encode() + wire.epilogue(complete=True)
    response = HttpResponse(body, content_type=wire.content_type.decode())
    for name, value in wire.headers():
        if name != b"content-type":
            response[name.decode()] = value.decode()
    return response


class ChatSessionView(ProtocolView, APIView):
    """A view on the session a chat id names."""

    authentication_classes = AUTHENTICATION
    error_voice = staticmethod(ai_sdk_error)

    def find_session(self, chat_id: str) -> Session | None:
        return Session.objects.with_chat_id(self.request.auth, chat_id).select_related("agent").first()

    def get_session(self, chat_id: str) -> Session:
        """The session, or 404 when the caller has none with this chat id."""
        session = self.find_session(chat_id)
        if session is None:
            raise Http404
        return session


class ChatMessagesView(ChatSessionView):
    @extend_schema(
        responses=OpenApiResponse(
            {"type": "array", "items": {"type": "object"}},
            description=(
                "`UIMessage[]`: `{id, role, parts, metadata?}`, oldest first (replaced replies left out); "
                "`[]` for a new chat id."
            ),
        )
    )
    def get(self, request: Request, chat_id: str) -> Response:
        """``GET /api/chat/{id}/messages``: the chat as ``UIMessage[]`` (``useChat({messages})``)."""
        session = self.find_session(chat_id)
        return Response([] if session is None else [ui_message(message) for message in visible(session)])


class ChatStopResultSerializer(StopResultSerializer):
    """``POST /api/chat/{id}/stop``'s answer: the canonical stop's."""


class ChatStopView(ChatSessionView):
    @extend_schema(request=None, responses=ChatStopResultSerializer)
    def post(self, request: Request, chat_id: str) -> Response:
        """``POST /api/chat/{id}/stop``: stop the chat's active run (as ``POST sessions/{s}/stream/stop``)."""
        session = self.get_session(chat_id)
        return Response(StopResultSerializer.of(session_uuid=session.uuid, outcome=stop_and_wait(session=session)))


def ui_message(message: Message) -> dict[str, Any]:
    """A stored message as a ``UIMessage``. A reply's parts: per step, ``step-start`` and
    its tool calls (in their current state), then the reply's text (the transcript keeps
    a turn's text whole, so it comes last)."""
    if not message.is_agent:
        return {"id": str(message.uuid), "role": "user", "parts": [{"type": "text", "text": message.text}]}
    run: Run | None = getattr(message, "run", None)
    steps: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for call in run.tool_calls.all() if run is not None else []:
        steps[call.step].append(tool_part(call))
    parts: list[dict[str, Any]] = []
    for step in sorted(steps):
        parts += [{"type": "step-start"}, *steps[step]]
    if message.text:
        parts += [{"type": "step-start"}, {"type": "text", "text": message.text, "state": "done"}]
    metadata: dict[str, Any] = {
        "usage": {"prompt_tokens": message.prompt_tokens, "completion_tokens": message.completion_tokens},
        "error": message.error,  # {code, message} of a failed or stopped reply, else null
    }
    if run is not None:
        metadata["run_uuid"] = str(run.uuid)
    return {"id": str(message.uuid), "role": "assistant", "parts": parts, "metadata": metadata}


def tool_part(call: ToolCall) -> dict[str, Any]:
    """A tool call as the AI SDK's tool part (``tool-<name>``) in the state it is in."""
    part: dict[str, Any] = {
        "type": f"tool-{call.tool_name}",
        "toolCallId": call.call_id,
        "input": call.input if call.input is not None else call.arguments,
    }
    approval = {"id": call.call_id} if call.decided_by or call.status == ToolCall.Status.PENDING_APPROVAL else None
    if approval is not None and call.decided_by:
        approval["approved"] = call.status != ToolCall.Status.DENIED
        if call.reason:
            approval["reason"] = call.reason
    if call.status == ToolCall.Status.SUCCEEDED:
        part.update(state="output-available", output=call.output)
    elif call.status == ToolCall.Status.DENIED:
        part["state"] = "output-denied"
    elif call.status in (ToolCall.Status.FAILED, ToolCall.Status.EXPIRED):
        part.update(state="output-error", errorText=call.error or call.status)
    elif call.status == ToolCall.Status.PENDING_APPROVAL:
        part["state"] = "approval-requested"
    elif call.decided_by:
        part["state"] = "approval-responded"
    else:
        part["state"] = "input-available"
    if approval is not None:
        part["approval"] = approval
    return part


class ChatStreamApp(StreamApp):
    """``GET /api/chat/{id}/stream``: the resume ``useChat`` sends. Replays the chat's
    active turn from its ``start`` and tails it (204 when none is active, or when the
    caller has no chat with this id yet: ``useChat({id, resume: true})`` on a new chat);
    during a pause it replays the turn up to the request and ends as the POST did."""

    def __init__(self) -> None:
        super().__init__(wire=AISDKChatFormat, error_voice=ai_sdk_error)

    def prepare(self, scope: dict) -> tuple[StreamPlan | StreamRefusal, AISDKChatFormat]:
        plan = plan_stream(
            headers=dict(scope["headers"]),
            query={},  # the SDK never sends Last-Event-ID
            session_uuid=None,
            run_uuid=None,
            client=scope.get("client"),
            chat_id=scope["url_route"]["kwargs"]["chat_id"],
        )
        if isinstance(plan, StreamRefusal) and plan.status == 404:  # no session has this chat id (yet)
            return StreamRefusal(204), AISDKChatFormat()
        if isinstance(plan, StreamRefusal):
            return plan, AISDKChatFormat()
        # Pauses the replay passes that were answered already do not end it.
        answered = (
            ToolCall.objects.filter(run__session__uuid=plan.session_uuid, run__status__in=Run.ACTIVE_STATUSES)
            .exclude(status__in=ToolCall.OPEN_STATUSES)
            .values_list("call_id", flat=True)
        )
        return plan, AISDKChatFormat(answered=answered)


chat_stream_app = ChatStreamApp()


# Under ``/api/`` (genie.urls): the AI SDK's default path is ``/api/chat``.
