"""The OpenAI-compatible endpoint: agents as models (``/v1/models``) and one turn per
``POST /v1/chat/completions``, plain or streamed, in OpenAI's shapes and errors.

Each call is stored as a Genie session, named in the ``Genie-Session`` response header.
Without that header in the request, the call opens a new session whose earlier turns are
the request's earlier user and assistant messages (OpenAI clients resend the whole
conversation); with it, the call continues that session and only its last message, the
user's, is new. ``system`` and ``developer`` messages and the sampling settings apply to
the turn (after the agent's own instructions, ``max_tokens`` within the agent's limit),
unless the agent's ``allow_client_settings`` is off (then they are a 400). The agent's
tools run on the server inside the turn; the client sees the reply's text only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import services
from chat.exceptions import ChatHistoryMismatch, SessionNotFound, TurnFailed
from chat.models import Agent, Message, Session
from genie.auth import Caller, IsTeamCaller, NotPublishable
from genie.idempotency import IdempotentRequest
from genie.links import absolute_url
from genie.schema import IDEMPOTENCY_KEY
from protocols.base import ProtocolView, parse_uuid, pick_agent
from protocols.openai.conversation import (
    Conversation,
    answered_run,
    offered_tools,
    session_with_history,
    stored_transcript,
    tool_output,
)
from protocols.openai.errors import COMMON_OPENAI_ERRORS, model_not_found, openai_error, openai_error_response
from protocols.openai.serializers import AgentModelSerializer, ChatCompletionRequestSerializer, ModelListSerializer
from runs import vocabulary as ev
from runs.events import pause_point
from runs.formats.openai import (
    ChatCompletionChunkFormat,
    awaited_note,
    completion_id,
    openai_finish_reason,
    openai_usage,
)
from runs.handoff import answer_turn
from runs.models import Run, RunEvent, ToolCall
from runs.options import ClientSettings, ClientToolSpec, TurnOptions, client_tool_names
from runs.services import ToolAnswer, Turn
from runs.titles import fallback_title

SESSION_HEADER = "Genie-Session"
RUN_HEADER = "Genie-Run-Uuid"
RUN_STATUS_HEADER = "Genie-Run-Status"
# Parameters accepted so that clients sending them work, and not applied: a reply to a
# request that sent any of them names them in this header (nothing is ignored silently).
IGNORED_HEADER = "Genie-Ignored-Parameters"
IGNORED_PARAMETERS = ("store", "parallel_tool_calls", "logit_bias", "reasoning_effort", "service_tier")


@csrf_exempt  # an API path, whatever the method: never a CSRF failure (a cookie-less client has no token)
def unknown_url(request: HttpRequest) -> JsonResponse:
    """Any other ``/v1/`` URL, as OpenAI answers it."""
    message = f"Invalid URL ({request.method} {request.path})"
    return JsonResponse(openai_error("unknown_url", message, None, 404), status=404)


# --- what a request asks of its turn -------------------------------------------------------


# The request's settings of the turn's model calls, in OpenAI's names.
SETTING_PARAMETERS = (
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "max_tokens",
    "max_completion_tokens",
)
INSTRUCTION_ROLES = ("system", "developer")


def client_settings(body: dict[str, Any], agent: Agent) -> ClientSettings:
    """What the request asks of the turn's model calls: its ``system`` and ``developer``
    messages (after the agent's own instructions) and sampling settings. An agent that
    does not allow client settings refuses them: a 400 naming the first one."""
    asked = [name for name in SETTING_PARAMETERS if body.get(name) is not None]
    instructions = [
        (index, message["content"])
        for index, message in enumerate(body["messages"])
        if message["role"] in INSTRUCTION_ROLES and message["content"].strip()
    ]
    if not agent.allow_client_settings:
        refusal = f"The agent `{agent.handle}` does not take the client's settings"
        if asked:
            raise serializers.ValidationError(
                {asked[0]: [f"{refusal}: leave `{asked[0]}` out."]}, code="unsupported_parameter"
            )
        if instructions:
            index = instructions[0][0]
            raise serializers.ValidationError(
                {"messages": {str(index): [f"{refusal}: its own instructions stand (no system messages)."]}},
                code="unsupported_parameter",
            )
    return ClientSettings(
        instructions=tuple(text for _, text in instructions),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        presence_penalty=body.get("presence_penalty"),
        frequency_penalty=body.get("frequency_penalty"),
        seed=body.get("seed"),
        stop=body.get("stop") or (),
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
    )


def response_format_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """``response_format`` as the providers take it (None for text)."""
    asked = body.get("response_format")
    if not asked or asked["type"] == "text":
        return None
    if asked["type"] == "json_object":
        return {"type": "json_object"}
    spec = asked["json_schema"]
    return {
        "type": "json_schema",
        "json_schema": {"name": spec["name"], "schema": spec["schema"], "strict": bool(spec.get("strict"))},
    }


def turn_options(body: dict[str, Any], agent: Agent, conversation: Conversation) -> TurnOptions:
    """Everything the request asks of the turn besides its text (``runs.options``)."""
    asked = replace(
        client_settings(body, agent),
        response_format=response_format_of(body),
        tool_choice=body.get("tool_choice") if body.get("tools") else None,
    )
    return TurnOptions(
        settings=asked,
        tools=offered_tools(
            agent,
            [
                ClientToolSpec(
                    name=tool["function"]["name"],
                    description=tool["function"]["description"],
                    input_schema=tool["function"]["parameters"],
                )
                for tool in body.get("tools") or []
            ],
            name_at=("function", "name"),
        ),
        steps=conversation.steps,
        text=conversation.steps_text,
    )


# --- responses ------------------------------------------------------------------------------


def completion_body(run: Run, *, model: str, offset: int = 0) -> dict[str, Any]:
    """A finished (or paused) turn as a ``chat.completion``: its text after ``offset``
    (what an earlier reply of the same run said is not said again). Paused for the
    client's own tools: ``tool_calls`` and ``finish_reason: "tool_calls"``; paused for
    anything else: content that says what is awaited and where, ``finish_reason: "stop"``."""
    content = run.agent_message.text[offset:]
    calls: list[dict[str, Any]] = []
    if run.status == Run.Status.REQUIRES_ACTION:
        usage = run.state.get("usage")
        mine = client_tool_names(run.client_tools)
        for call in run.tool_calls.open().select_related("connection_attempt__provider").order_by("step", "position"):
            if call.status == ToolCall.Status.AWAITING_RESULT and call.tool_name in mine:
                calls.append(
                    {
                        "id": call.call_id,
                        "type": "function",
                        # The model's own text of the arguments: the keys in its order.
                        "function": {
                            "name": call.tool_name,
                            "arguments": call.arguments or json.dumps(call.input or {}),
                        },
                    }
                )
            else:
                content += "\n\n" + awaited(call)
        finish_reason = "tool_calls" if calls else "stop"
    else:
        finish = RunEvent.objects.filter(run=run, type=ev.FINISH).values_list("data", flat=True).first()
        finish_reason = openai_finish_reason(finish or {})
        usage = {"prompt_tokens": run.prompt_tokens, "completion_tokens": run.completion_tokens}
    message: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else ""), "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": completion_id(str(run.uuid)),
        "object": "chat.completion",
        "created": int(run.created_at.timestamp()),
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": openai_usage(usage),
    }


def awaited(call: ToolCall) -> str:
    """What an open call of a paused run waits for, and where it is answered."""
    session_uuid = call.run.session.uuid
    if call.status == ToolCall.Status.PENDING_APPROVAL:
        url = absolute_url(None, "runs:tool-call-approval", session_uuid=session_uuid, call_id=call.call_id)
        return awaited_note("approval", call.tool_name, url)
    if call.status == ToolCall.Status.AWAITING_CONNECTION and call.connection_attempt is not None:
        attempt = call.connection_attempt
        url = absolute_url(None, "runs:connection-link", attempt_id=attempt.attempt_id)
        return awaited_note("connection", attempt.provider.slug, url)
    url = absolute_url(None, "runs:tool-call-result", session_uuid=session_uuid, call_id=call.call_id)
    return awaited_note("client_tool", call.tool_name, url)


def session_headers(request: Request, turn: Turn) -> dict[str, str]:
    """The session that stores the call (send it back as ``Genie-Session`` to continue it),
    the turn's run, for a paused turn its status, for a publishable key the new session's
    secret (send it as ``X-Session-Secret``), and the parameters sent but not applied."""
    run = turn.run
    headers = {SESSION_HEADER: str(turn.session.uuid), RUN_HEADER: str(run.uuid)}
    if run.status == Run.Status.REQUIRES_ACTION:
        headers[RUN_STATUS_HEADER] = run.status
    if turn.client_secret:
        headers["Genie-Client-Secret"] = turn.client_secret
    ignored = [name for name in IGNORED_PARAMETERS if request.data.get(name) is not None]
    if ignored:
        headers[IGNORED_HEADER] = ", ".join(ignored)
    return headers


COMPLETION = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["chat.completion"]},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "system_fingerprint": {"type": "string", "nullable": True},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "message": {
                        "type": "object",
                        "properties": {
                            "role": {"type": "string", "enum": ["assistant"]},
                            "content": {"type": "string"},
                            "refusal": {"type": "string", "nullable": True},
                        },
                    },
                    "logprobs": {"type": "object", "nullable": True},
                    "finish_reason": {"type": "string", "enum": ["stop", "length", "content_filter", "tool_calls"]},
                },
            },
        },
        "usage": {
            "type": "object",
            "properties": {
                "prompt_tokens": {"type": "integer"},
                "completion_tokens": {"type": "integer"},
                "total_tokens": {"type": "integer"},
            },
        },
    },
    "required": ["id", "object", "created", "model", "choices", "usage"],
}
CHUNK_STREAM = {
    "type": "string",
    "description": "`data: {chat.completion.chunk}` lines: the role, content deltas, a chunk with `finish_reason`, "
    "the usage chunk (`stream_options.include_usage`), then `data: [DONE]`; a failed turn ends with "
    '`data: {"error": …}`.',
}
SESSION_PARAMETER = OpenApiParameter(
    SESSION_HEADER,
    str,
    location=OpenApiParameter.HEADER,
    description="Continue this Genie session (its uuid, from an earlier answer's `Genie-Session`): only the "
    "last message is new. Without it, a new session whose earlier turns are the request's messages.",
)
SESSION_RESPONSE_HEADER = OpenApiParameter(
    SESSION_HEADER,
    str,
    location=OpenApiParameter.HEADER,
    response=[200],
    description="The Genie session that stores this call.",
)


# --- views --------------------------------------------------------------------------------


class ChatCompletionView(ProtocolView, APIView):
    """``POST /v1/chat/completions``: one turn of the agent named by ``model``."""

    error_voice = staticmethod(openai_error)
    json_always = True  # a JSON answer (and JSON errors) whatever Accept says; a streamed one is the relay's

    @extend_schema(
        operation_id="openai_chat_completions",
        request=ChatCompletionRequestSerializer,
        parameters=[SESSION_PARAMETER, IDEMPOTENCY_KEY, SESSION_RESPONSE_HEADER],
        examples=[
            OpenApiExample(
                "Ask an agent",
                {"model": "assistant", "messages": [{"role": "user", "content": "Name five cats."}]},
                request_only=True,
            )
        ],
        responses={
            (200, "application/json"): OpenApiResponse(COMPLETION, description="The turn's reply (`stream: false`)."),
            (200, "text/event-stream"): OpenApiResponse(CHUNK_STREAM, description="The turn (`stream: true`)."),
            400: openai_error_response(
                "`invalid_value`, `unknown_parameter`, `unsupported_parameter` (`n` > 1, tools…); `param` names it."
            ),
            404: openai_error_response("`model_not_found`; `session_not_found` (header Genie-Session)."),
            409: openai_error_response("`run_active`: the continued session's previous turn is still going."),
            413: openai_error_response("`text_too_long`, `request_too_large`."),
            415: openai_error_response("`unsupported_media_type`: the body is not JSON."),
            422: openai_error_response("`idempotency_key_reused`."),
            502: openai_error_response("`turn_failed`: the agent's turn failed (`stream: false`)."),
            503: openai_error_response("`redis_unavailable`: nothing was stored; retry."),
            504: openai_error_response("`run_timeout` (`stream: false`): the turn goes on in its session."),
            **COMMON_OPENAI_ERRORS,
        },
    )
    def post(self, request: Request) -> Response | HttpResponse:
        data = ChatCompletionRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        caller: Caller = request.auth
        agent = pick_agent(caller, body["model"], missing=model_not_found(body["model"]))
        session = self.continued_session(request, agent)
        conversation = Conversation.of(body["messages"])
        options = turn_options(body, agent, conversation)
        paused = answered_run(caller, agent, conversation)
        if paused is not None:
            if session is not None and paused.session_id != session.pk:
                raise ChatHistoryMismatch(
                    "The tool results answer calls of another session.", details={"param": SESSION_HEADER}
                )
            return self.answer_calls(request, body, paused, conversation.answers, options, model=agent.handle)
        if session is None:
            session = session_with_history(caller, agent, conversation.earlier)
        elif conversation.earlier and stored_transcript(session) != conversation.earlier:
            raise ChatHistoryMismatch(
                "The messages before the last contradict the session's stored transcript (header Genie-Session).",
                details={"param": "messages"},
            )

        first = next((said for role, said in conversation.earlier if role == Message.SenderRole.USER), None)
        start = lambda: services.start_turn(  # noqa: E731
            caller=caller,
            idempotency=IdempotentRequest.of(request),
            agent=agent,
            session=session,  # None: a new session with the agent, its title, user and earlier turns
            text=conversation.text,
            title=fallback_title(first or conversation.text),  # from the first user message: no model call
            metadata=body["metadata"],
            user_id=body["user"],
            history=conversation.earlier if session is None else None,
            options=options,
        )
        if body["stream"]:
            wire = self.wire(body, agent, options)
            return answer_turn(request, start, wire=wire, headers=session_headers, render=turn_started)
        return answer_turn(request, start, wait=True, render=completion_rendered(offset=len(options.text)))

    def wire(self, body: dict[str, Any], agent: Agent, options: TurnOptions) -> ChatCompletionChunkFormat:
        include_usage = bool(body["stream_options"] and body["stream_options"]["include_usage"])
        tools = frozenset(tool.name for tool in options.tools)
        return ChatCompletionChunkFormat(model=agent.handle, include_usage=include_usage, client_tools=tools)

    def answer_calls(
        self,
        request: Request,
        body: dict[str, Any],
        run: Run,
        answers: dict[str, str],
        options: TurnOptions,
        *,
        model: str,
    ) -> Response | HttpResponse:
        """The request's tool results answer the client tool calls ``run`` waits for
        (``runs.services.apply_answers``: an answer the call has already is skipped, so a resent request
        finds the turn going on), and the request's settings and tools apply to its next
        model calls; the same run goes on."""
        paused_at = pause_point(run, list(answers))
        start = lambda: services.start_turn(  # noqa: E731
            caller=request.auth,
            idempotency=IdempotentRequest.of(request),
            session=run.session,
            run=run,
            answers=[ToolAnswer(call_id, output=tool_output(text)) for call_id, text in answers.items()],
            after_seq=paused_at.seq,
            options=options,
        )
        if body["stream"]:
            wire = self.wire(body, run.session.agent, options)
            return answer_turn(request, start, wire=wire, headers=session_headers, render=turn_started)
        return answer_turn(request, start, wait=True, render=completion_rendered(offset=paused_at.text_length))

    def continued_session(self, request: Request, agent: Agent) -> Session | None:
        """The session named by the ``Genie-Session`` header (None without one): reachable
        by the caller (the one access rule) and the same agent as ``model``."""
        value = request.headers.get(SESSION_HEADER, "").strip()
        if not value:
            return None
        sessions = Session.objects.reachable_by(request.auth).select_related("agent")
        session = sessions.filter(uuid=value).first() if parse_uuid(value) is not None else None
        if session is None:
            raise SessionNotFound(details={"param": SESSION_HEADER})
        if session.agent_id != agent.pk:
            raise serializers.ValidationError(
                {"model": [f"The session {value} is with the agent `{session.agent.handle}`."]}, code="model_mismatch"
            )
        return session


def turn_started(request: Request, turn: Turn) -> Response:
    """A replayed streamed call whose stream is no longer kept: what it started (201), or
    continued (200)."""
    body = {"run_uuid": str(turn.run.uuid), "session_uuid": str(turn.session.uuid)}
    return Response(body, status=201 if turn.after_seq is None else 200)


def completion_rendered(*, offset: int = 0) -> Callable[[Request, Turn], Response]:
    """A turn that ended (or paused for a person or the client) as its ``chat.completion``
    (its text from ``offset``: what an earlier answer of the same run said is not said
    again); a failed one is 502 ``turn_failed``."""

    def render(request: Request, turn: Turn) -> Response:
        run = turn.run
        if run.status == Run.Status.FAILED:
            raise TurnFailed(
                run.error_message or None,
                details={"run_uuid": str(run.uuid), "session_uuid": str(run.session.uuid), "param": None},
            )
        body = completion_body(run, model=turn.session.agent.handle, offset=offset)
        return Response(body, headers=session_headers(request, turn))

    return render


class AgentModelViewSet(ProtocolView, viewsets.GenericViewSet):
    """``GET /v1/models``: the team's agents as models (not for publishable keys, which
    never read agents)."""

    permission_classes = [IsTeamCaller, NotPublishable]
    serializer_class = AgentModelSerializer
    pagination_class = None
    error_voice = staticmethod(openai_error)

    def get_queryset(self) -> QuerySet[Agent]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Agent.objects.none()
        return Agent.objects.for_team(self.request.auth.team).live().select_related("team").order_by("handle")

    @extend_schema(operation_id="openai_models_list", responses={200: ModelListSerializer, **COMMON_OPENAI_ERRORS})
    def list(self, request: Request) -> Response:
        return Response({"object": "list", "data": self.get_serializer(self.get_queryset(), many=True).data})

    @extend_schema(
        operation_id="openai_models_retrieve",
        responses={
            200: AgentModelSerializer,
            404: openai_error_response("`model_not_found`."),
            **COMMON_OPENAI_ERRORS,
        },
    )
    def retrieve(self, request: Request, model: str) -> Response:
        agent = self.get_queryset().by_handle_or_uuid(model).first()
        if agent is None:
            raise model_not_found(model)
        return Response(self.get_serializer(agent).data)
