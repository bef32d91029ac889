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
from dataclasses import dataclass, replace
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import services
from chat.exceptions import ChatHistoryMismatch, ModelNotFound, SessionNotFound, TurnFailed
from chat.models import Agent, Message, Session
from chat.serializers import validate_message_text
from genie.auth import Caller, IsTeamCaller, NotPublishable
from genie.idempotency import IdempotentRequest
from genie.links import absolute_url
from genie.schema import IDEMPOTENCY_KEY
from genie.serializers import JSONObjectField, StrictSerializer
from protocols.base import ProtocolView, parse_uuid, pick_agent
from runs import vocabulary as ev
from runs.events import logged_text, read_run_log
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
from runs.providers import get_provider
from runs.services import ToolAnswer, Turn
from runs.titles import fallback_title
from runs.tools import check_input_schema
from runs.tools.schema import check_schema

SESSION_HEADER = "Genie-Session"
RUN_HEADER = "Genie-Run-Uuid"
RUN_STATUS_HEADER = "Genie-Run-Status"
# Parameters accepted so that clients sending them work, and not applied: a reply to a
# request that sent any of them names them in this header (nothing is ignored silently).
IGNORED_HEADER = "Genie-Ignored-Parameters"
IGNORED_PARAMETERS = ("store", "parallel_tool_calls", "logit_bias", "reasoning_effort", "service_tier")
ROLES = {"user": Message.SenderRole.USER, "assistant": Message.SenderRole.AGENT}
FUNCTIONS_UNSUPPORTED = "The legacy `functions` are not supported: send them as `tools`."
# OpenAI parameters Genie cannot honour, with the values that ask for nothing (accepted).
UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "n": ((None, 1), "n > 1 is not supported: an agent writes one reply per turn."),
    "functions": ((None, []), FUNCTIONS_UNSUPPORTED),
    "function_call": ((None, "none", "auto"), FUNCTIONS_UNSUPPORTED),
    "logprobs": ((None, False), "logprobs are not supported."),
    "top_logprobs": ((None, 0), "logprobs are not supported."),
    "modalities": ((None, ["text"]), 'Only text replies are supported (modalities ["text"]).'),
    "audio": ((None,), "Audio replies are not supported."),
    "prediction": ((None,), "Predicted outputs are not supported."),
}


# --- errors in OpenAI's voice -----------------------------------------------------------


def openai_error(code: str, message: str, details: Any, status_code: int) -> dict[str, Any]:
    """The one error path's answer in OpenAI's shape: ``{"error": {"message", "type",
    "param", "code"}}``. An invalid field names itself in ``param``."""
    param = None
    if code == "validation_error" and details:
        param, message, code = first_invalid(details)
    elif isinstance(details, dict):
        param = details.get("param")
    if status_code == status.HTTP_401_UNAUTHORIZED:
        code = "invalid_api_key"
    elif status_code == status.HTTP_429_TOO_MANY_REQUESTS:
        code = "rate_limit_exceeded"
    kind = "server_error" if status_code >= 500 else "requests" if status_code == 429 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def first_invalid(details: Any, param: str = "") -> tuple[str | None, str, str]:
    """The first error of a DRF validation error as ``(param, message, code)``; ``param``
    in OpenAI's notation (``messages[1].content``)."""
    if isinstance(details, dict) and details:
        name, value = next(iter(details.items()))
        name = str(name)
        if name.isdigit():
            return first_invalid(value, f"{param}[{name}]")
        if name == "non_field_errors":
            return first_invalid(value, param)
        return first_invalid(value, f"{param}.{name}" if param else name)
    if isinstance(details, list) and details:
        for index, item in enumerate(details):
            if isinstance(item, dict | list):
                if item:
                    return first_invalid(item, f"{param}[{index}]")
                continue
            code = getattr(item, "code", None) or "invalid_value"
            if code == "unknown_field":
                return param, f"Unrecognized request argument supplied: {param}", "unknown_parameter"
            return param or None, f"{param}: {item}" if param else str(item), code
    return param or None, "The request is invalid.", "invalid_value"


@csrf_exempt  # an API path, whatever the method: never a CSRF failure (a cookie-less client has no token)
def unknown_url(request: HttpRequest) -> JsonResponse:
    """Any other ``/v1/`` URL, as OpenAI answers it."""
    message = f"Invalid URL ({request.method} {request.path})"
    return JsonResponse(openai_error("unknown_url", message, None, 404), status=404)


# --- requests -----------------------------------------------------------------------------


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}},
                    "required": ["type", "text"],
                },
            },
        ],
        "nullable": True,
        "description": "Text, or text parts (joined with new lines); images are not taken here.",
    }
)
class MessageContentField(serializers.Field):
    def to_internal_value(self, data: Any) -> str:
        if data is None:
            return ""
        if isinstance(data, str):
            return data
        if not isinstance(data, list):
            raise serializers.ValidationError("Expected text or a list of text parts.", code="invalid_type")
        texts = []
        for part in data:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise serializers.ValidationError(
                    "Only text parts are supported; attach files through Genie's uploads API.",
                    code="unsupported_content",
                )
            texts.append(part["text"])
        return "\n".join(texts)

    def to_representation(self, value: str) -> str:
        return value


TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class FunctionCallSerializer(StrictSerializer):
    name = serializers.RegexField(TOOL_NAME)
    arguments = serializers.CharField(allow_blank=True, trim_whitespace=False)


class ToolCallSerializer(StrictSerializer):
    """A tool call of an earlier assistant message, as the client received it."""

    id = serializers.CharField(max_length=200)
    type = serializers.ChoiceField(choices=["function"], required=False, default="function")
    function = FunctionCallSerializer()
    index = serializers.IntegerField(required=False, help_text="Accepted (a streamed call's index); not used.")


class ChatMessageSerializer(StrictSerializer):
    role = serializers.ChoiceField(
        choices=["system", "developer", "user", "assistant", "tool"],
        error_messages={"invalid_choice": "Role {input} is not supported: system, developer, user, assistant or tool."},
    )
    content = MessageContentField(required=False, allow_null=True, default="")
    name = serializers.CharField(required=False, allow_blank=True, help_text="Accepted; not used.")
    tool_call_id = serializers.CharField(
        required=False, max_length=200, help_text="A `tool` message: the call it answers."
    )
    tool_calls = serializers.ListField(
        child=ToolCallSerializer(), required=False, allow_null=True, max_length=128, help_text="An assistant's calls."
    )
    refusal = serializers.CharField(required=False, allow_null=True, allow_blank=True, help_text="Accepted; not used.")

    def validate_content(self, value: str | None) -> str:
        return value or ""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["role"] == "tool" and not attrs.get("tool_call_id"):
            raise serializers.ValidationError(
                {"tool_call_id": ["A tool message names the call it answers."]}, code="required"
            )
        if attrs.get("tool_calls") and attrs["role"] != "assistant":
            raise serializers.ValidationError({"tool_calls": ["Only an assistant message has tool calls."]})
        attrs["tool_calls"] = attrs.get("tool_calls") or []
        return attrs


class FunctionSerializer(StrictSerializer):
    name = serializers.RegexField(TOOL_NAME, help_text="Letters, digits, `_` and `-`; at most 64.")
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)
    parameters = JSONObjectField(required=False, default=dict, help_text="A JSON Schema of the arguments (an object).")
    strict = serializers.BooleanField(required=False, allow_null=True, help_text="Accepted; arguments are checked.")

    def validate_parameters(self, value: dict[str, Any]) -> dict[str, Any]:
        value = value or {"type": "object", "properties": {}}
        if (problem := check_input_schema(value)) is not None:
            raise serializers.ValidationError(problem, code="invalid_schema")
        return value


class ToolSerializer(StrictSerializer):
    """A function the client runs itself, offered to the model beside the agent's tools."""

    type = serializers.ChoiceField(choices=["function"])
    function = FunctionSerializer()


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": ["none", "auto", "required"]},
            {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["function"]},
                    "function": {"type": "object", "properties": {"name": {"type": "string"}}},
                },
            },
        ],
        "nullable": True,
    }
)
class ToolChoiceField(serializers.Field):
    """``none``, ``auto``, ``required``, or one function by name."""

    def to_internal_value(self, data: Any) -> str | dict[str, Any]:
        if data in ("none", "auto", "required"):
            return data
        function = data.get("function") if isinstance(data, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(data, dict) or data.get("type") != "function" or not isinstance(name, str):
            raise serializers.ValidationError(
                'Expected "none", "auto", "required" or {"type": "function", "function": {"name": …}}.',
                code="invalid_value",
            )
        return {"type": "function", "function": {"name": name}}

    def to_representation(self, value: Any) -> Any:
        return value


class JsonSchemaFormatSerializer(StrictSerializer):
    name = serializers.RegexField(TOOL_NAME)
    description = serializers.CharField(required=False, allow_blank=True)
    schema = JSONObjectField(required=False, default=dict)
    strict = serializers.BooleanField(required=False, allow_null=True, default=False)

    def validate_schema(self, value: dict[str, Any]) -> dict[str, Any]:
        # The tools' rules (runs.tools.schema): no $ref outside the schema, patterns RE2 can run.
        problem = check_schema(value)
        if problem is not None:
            raise serializers.ValidationError(problem, code="invalid_schema")
        return value


class ResponseFormatSerializer(StrictSerializer):
    type = serializers.ChoiceField(choices=["text", "json_object", "json_schema"])
    json_schema = JsonSchemaFormatSerializer(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["type"] == "json_schema" and "json_schema" not in attrs:
            raise serializers.ValidationError({"json_schema": ["Required for type json_schema."]}, code="required")
        return attrs


class StreamOptionsSerializer(StrictSerializer):
    include_usage = serializers.BooleanField(required=False, default=False)
    include_obfuscation = serializers.BooleanField(required=False, help_text="Accepted; not used.")


def accepted(field_class: type[serializers.Field]) -> serializers.Field:
    """An OpenAI parameter accepted so that clients sending it work, and not used (the reply
    names it in ``Genie-Ignored-Parameters``)."""
    return field_class(
        required=False, allow_null=True, help_text="Accepted; not used: the reply names it in Genie-Ignored-Parameters."
    )


def applied(field_class: type[serializers.Field], **bounds: Any) -> serializers.Field:
    """A client setting forwarded to the model (unless the agent forbids client settings:
    then a 400 naming it)."""
    return field_class(
        required=False,
        allow_null=True,
        help_text="Applied to the turn's model calls (the agent's `allow_client_settings`).",
        **bounds,
    )


@extend_schema_field(
    {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}], "nullable": True}
)
class StopField(serializers.Field):
    """``stop``: one string or up to four."""

    def to_internal_value(self, data: Any) -> tuple[str, ...]:
        values = [data] if isinstance(data, str) else data
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values) or len(values) > 4:
            raise serializers.ValidationError("Expected a string or a list of up to 4 strings.", code="invalid_type")
        return tuple(values)

    def to_representation(self, value: tuple[str, ...]) -> list[str]:
        return list(value)


def unsupported() -> serializers.JSONField:
    return serializers.JSONField(required=False, help_text="Only the value that asks for nothing is accepted.")


class ChatCompletionRequestSerializer(StrictSerializer):
    model = serializers.CharField(max_length=100, help_text="An agent's handle (or uuid): `GET /v1/models`.")
    messages = serializers.ListField(child=ChatMessageSerializer(), min_length=1, max_length=1000)
    stream = serializers.BooleanField(required=False, default=False)
    stream_options = StreamOptionsSerializer(required=False, allow_null=True, default=None)
    user = serializers.CharField(
        required=False, allow_blank=True, max_length=200, default="", help_text="A new session's `user_id`."
    )
    metadata = JSONObjectField(required=False, default=dict, help_text="A new session's metadata.")
    temperature = applied(serializers.FloatField, min_value=0.0, max_value=2.0)
    top_p = applied(serializers.FloatField, min_value=0.0, max_value=1.0)
    max_tokens = applied(serializers.IntegerField, min_value=1)
    max_completion_tokens = applied(serializers.IntegerField, min_value=1)
    presence_penalty = applied(serializers.FloatField, min_value=-2.0, max_value=2.0)
    frequency_penalty = applied(serializers.FloatField, min_value=-2.0, max_value=2.0)
    seed = applied(serializers.IntegerField)
    stop = StopField(required=False, allow_null=True, help_text="Applied: the model stops before any of these.")
    store = accepted(serializers.BooleanField)
    parallel_tool_calls = accepted(serializers.BooleanField)
    logit_bias = accepted(serializers.JSONField)
    reasoning_effort = accepted(serializers.CharField)
    service_tier = accepted(serializers.CharField)
    n = unsupported()
    tools = serializers.ListField(
        child=ToolSerializer(), required=False, allow_null=True, max_length=128, help_text="The client's functions."
    )
    tool_choice = ToolChoiceField(required=False, allow_null=True)
    functions = unsupported()
    function_call = unsupported()
    response_format = ResponseFormatSerializer(required=False, allow_null=True)
    logprobs = unsupported()
    top_logprobs = unsupported()
    modalities = unsupported()
    audio = unsupported()
    prediction = unsupported()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        for name, (allowed, message) in UNSUPPORTED.items():
            if name in attrs and attrs[name] not in allowed:
                raise serializers.ValidationError({name: [message]}, code="unsupported_parameter")
        messages = attrs["messages"]
        turn = last_user_index(messages)
        if turn is None:
            raise serializers.ValidationError(
                {"messages": ["The last message must be the user's (the new turn), or tool results after it."]},
                code="invalid_value",
            )
        if messages[-1]["role"] == "assistant":
            raise serializers.ValidationError(
                {"messages": ["The last message must be the user's (the new turn), or tool results."]},
                code="invalid_value",
            )
        called: set[str] = set()
        for index, message in enumerate(messages):
            called.update(call["id"] for call in message["tool_calls"])
            if message["role"] == "tool" and message["tool_call_id"] not in called:
                raise serializers.ValidationError(
                    {"messages": {str(index): {"tool_call_id": ["No earlier assistant message made this call."]}}},
                    code="invalid_value",
                )
        for message in messages:
            if message["role"] in ROLES and message["content"].strip():
                validate_message_text(message["content"])
        try:
            validate_message_text(messages[turn]["content"])
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"messages": {turn: {"content": exc.detail}}}) from exc
        names = [tool["function"]["name"] for tool in attrs.get("tools") or []]
        if len(set(names)) != len(names):
            raise serializers.ValidationError({"tools": ["Each tool needs its own name."]}, code="invalid_value")
        choice = attrs.get("tool_choice")
        if isinstance(choice, dict) and choice["function"]["name"] not in names:
            raise serializers.ValidationError(
                {"tool_choice": ["It names no tool of the request's `tools`."]}, code="invalid_value"
            )
        return attrs


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


def last_user_index(messages: list[dict[str, Any]]) -> int | None:
    return next((index for index in range(len(messages) - 1, -1, -1) if messages[index]["role"] == "user"), None)


def transcript_of(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Messages as Genie stores a conversation: user messages, and one agent message per
    turn (an assistant's messages around its tool calls joined, as a run's reply holds
    all its steps' text); tool results and instructions are not part of it."""
    transcript: list[tuple[str, str]] = []
    for message in messages:
        if message["role"] == "user":
            transcript.append((Message.SenderRole.USER, message["content"]))
        elif message["role"] == "assistant":
            if transcript and transcript[-1][0] == Message.SenderRole.AGENT:
                transcript[-1] = (Message.SenderRole.AGENT, transcript[-1][1] + message["content"])
            else:
                transcript.append((Message.SenderRole.AGENT, message["content"]))
    return [(role, text) for role, text in transcript if text.strip()]


@dataclass(frozen=True)
class Conversation:
    """A request's messages as a turn: the conversation before it (``earlier``), its user
    message (``text``), and the tool loop the client ran after it (``steps``: assistant
    tool calls and tool results, as the model reads them; ``steps_text``: their assistant
    text), whose last tool results (``answers``: call id → content) may answer a paused
    run's calls."""

    earlier: list[tuple[str, str]]
    text: str
    steps: tuple[dict[str, Any], ...]
    steps_text: str
    answers: dict[str, str]

    @classmethod
    def of(cls, messages: list[dict[str, Any]]) -> Conversation:
        turn = last_user_index(messages)
        tail = [m for m in messages[turn + 1 :] if m["role"] in ("assistant", "tool")]
        steps: list[dict[str, Any]] = []
        for message in tail:
            if message["role"] == "tool":
                steps.append({"role": "tool", "tool_call_id": message["tool_call_id"], "content": message["content"]})
                continue
            step: dict[str, Any] = {"role": "assistant", "content": message["content"] or None}
            if message["tool_calls"]:
                step["tool_calls"] = [
                    {"id": call["id"], "type": "function", "function": dict(call["function"])}
                    for call in message["tool_calls"]
                ]
            steps.append(step)
        answers: dict[str, str] = {}
        for message in reversed(tail):
            if message["role"] != "tool":
                break
            answers[message["tool_call_id"]] = message["content"]
        return cls(
            earlier=transcript_of(messages[:turn]),
            text=messages[turn]["content"],
            steps=tuple(steps),
            steps_text="".join(m["content"] for m in tail if m["role"] == "assistant"),
            answers=dict(reversed(answers.items())),
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


def client_tools_of(body: dict[str, Any], agent: Agent) -> tuple[ClientToolSpec, ...]:
    """The request's ``tools``, to be offered beside the agent's own: refused for an agent
    whose model calls no tools, and for a name one of the agent's tools has."""
    tools = body.get("tools") or []
    if tools and not get_provider(agent.provider).supports_tools:
        raise serializers.ValidationError(
            {"tools": [f"The agent `{agent.handle}`'s model ({agent.provider}) does not call tools."]},
            code="unsupported_parameter",
        )
    own = {tool.get("name") for tool in agent.tools}
    for index, tool in enumerate(tools):
        if tool["function"]["name"] in own:
            raise serializers.ValidationError(
                {"tools": {str(index): {"function": {"name": ["The agent has a tool of this name."]}}}},
                code="invalid_value",
            )
    return tuple(
        ClientToolSpec(
            name=tool["function"]["name"],
            description=tool["function"]["description"],
            input_schema=tool["function"]["parameters"],
        )
        for tool in tools
    )


def turn_options(body: dict[str, Any], agent: Agent, conversation: Conversation) -> TurnOptions:
    """Everything the request asks of the turn besides its text (``runs.options``)."""
    asked = replace(
        client_settings(body, agent),
        response_format=response_format_of(body),
        tool_choice=body.get("tool_choice") if body.get("tools") else None,
    )
    return TurnOptions(
        settings=asked,
        tools=client_tools_of(body, agent),
        steps=conversation.steps,
        text=conversation.steps_text,
    )


def stored_transcript(session: Session) -> list[tuple[str, str]]:
    """A session's conversation as ``transcript_of`` reads a request's (replaced replies
    left out)."""
    rows = session.messages.filter(replaced_by__isnull=True).order_by("created_at", "id")
    return [(role, text) for role, text in rows.values_list("sender_role", "text") if text.strip()]


# Sessions compared at most, most recent first, when a request's history names none.
MATCH_CANDIDATES = 20


def session_with_history(caller: Caller, agent: Agent, earlier: list[tuple[str, str]]) -> Session | None:
    """The caller's session with ``agent`` whose stored transcript is exactly ``earlier``
    and that runs no turn now (a stateless client resending the conversation goes on in
    it), or None."""
    users = [text for role, text in earlier if role == Message.SenderRole.USER]
    if not users:
        return None
    candidates = (
        Session.objects.reachable_by(caller)
        .filter(agent=agent, messages__sender_role=Message.SenderRole.USER, messages__text=users[-1])
        .exclude(runs__status__in=Run.ACTIVE_STATUSES)
        .distinct()
        .order_by("-updated_at")[:MATCH_CANDIDATES]
    )
    return next((session for session in candidates if stored_transcript(session) == earlier), None)


def answered_run(caller: Caller, agent: Agent, conversation: Conversation) -> Run | None:
    """The caller's run (with ``agent``) whose client tool calls the request's last tool
    results answer, or None (results of calls Genie never made: the client's own loop)."""
    if not conversation.answers:
        return None
    calls = list(
        ToolCall.objects.filter(
            call_id__in=conversation.answers,
            run__session__in=Session.objects.reachable_by(caller),
            run__session__agent=agent,
        ).select_related("run__session__agent", "run__agent_message")
    )
    if not calls:
        return None
    if len({call.run_id for call in calls}) > 1 or len(calls) != len(conversation.answers):
        raise serializers.ValidationError(
            {"messages": ["The last tool results must answer the calls of one reply, and only those."]},
            code="invalid_value",
        )
    run = calls[0].run
    mine = client_tool_names(run.client_tools)
    waiting = run.tool_calls.filter(status=ToolCall.Status.AWAITING_RESULT, tool_name__in=mine)
    unanswered = sorted(set(waiting.values_list("call_id", flat=True)) - set(conversation.answers))
    if unanswered:
        raise serializers.ValidationError(
            {"messages": [f"Tool results are missing for: {', '.join(unanswered)}."]}, code="invalid_value"
        )
    return run


def tool_output(content: str) -> Any:
    """A ``tool`` message's content as the call's output: its JSON value, else the text."""
    try:
        return json.loads(content)
    except ValueError:
        return content


def pause_point(run: Run, call_ids: list[str]) -> tuple[int, int]:
    """Where ``run`` paused for ``call_ids``: the id of that step's ``finish-step`` (a
    continuation streams what follows it) and the length of the reply's text by then."""
    log = read_run_log(run)
    requested = [
        index
        for index, event in enumerate(log)
        if event.type == ev.DATA_CLIENT_TOOL_CALL and event.data.get("data", {}).get("call_id") in call_ids
    ]
    start = requested[-1] if requested else len(log) - 1
    seq = next((event.seq for event in log[start:] if event.type == ev.FINISH_STEP), log[-1].seq if log else 0)
    return seq, len(logged_text([event for event in log if event.seq <= seq]))


# --- responses ------------------------------------------------------------------------------


class AgentModelSerializer(serializers.Serializer):
    """An agent as an OpenAI model."""

    id = serializers.CharField(source="handle")
    object = serializers.SerializerMethodField()
    created = serializers.SerializerMethodField()
    owned_by = serializers.CharField(source="team.slug")
    name = serializers.CharField(help_text="The agent's name (not in OpenAI's shape; clients ignore it).")

    def get_object(self, agent: Agent) -> str:
        return "model"

    def get_created(self, agent: Agent) -> int:
        return int(agent.created_at.timestamp())


@extend_schema_serializer(many=False)  # the list's own envelope, not a list of it
class ModelListSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = AgentModelSerializer(many=True)


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


OPENAI_ERROR = {
    "type": "object",
    "description": "OpenAI's error shape.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "example": "invalid_request_error"},
                "param": {"type": "string", "nullable": True},
                "code": {"type": "string", "nullable": True},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
    "required": ["error"],
}


def openai_error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(OPENAI_ERROR, description=description)


COMMON_OPENAI_ERRORS = {
    401: openai_error_response("`invalid_api_key`: no key, or an invalid, revoked or expired one."),
    403: openai_error_response(
        "A credential that may not do this (`publishable_key_forbidden`, `origin_not_allowed`)."
    ),
    429: openai_error_response("`rate_limit_exceeded`: too many requests or open streams; see Retry-After."),
}
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
        missing = ModelNotFound(
            f"The model `{body['model']}` does not exist or you do not have access to it.", details={"param": "model"}
        )
        agent = pick_agent(caller, body["model"], missing=missing)
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

        if session is None:
            first = next((said for role, said in conversation.earlier if role == Message.SenderRole.USER), None)
            start = lambda: services.start_turn(  # noqa: E731
                caller=caller,
                idempotency=IdempotentRequest.of(request),
                agent=agent,
                text=conversation.text,
                title=fallback_title(first or conversation.text),  # from the first user message: no model call
                metadata=body["metadata"],
                user_id=body["user"],
                history=conversation.earlier,
                options=options,
            )
        else:
            start = lambda: services.start_turn(  # noqa: E731
                caller=caller,
                idempotency=IdempotentRequest.of(request),
                session=session,
                text=conversation.text,
                metadata=body["metadata"],
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
        (``apply_answers``: an answer the call has already is skipped, so a resent request
        finds the turn going on), and the request's settings and tools apply to its next
        model calls; the same run goes on."""
        after, offset = pause_point(run, list(answers))
        start = lambda: services.start_turn(  # noqa: E731
            caller=request.auth,
            idempotency=IdempotentRequest.of(request),
            session=run.session,
            run=run,
            answers=[ToolAnswer(call_id, output=tool_output(text)) for call_id, text in answers.items()],
            after_seq=after,
            options=options,
        )
        if body["stream"]:
            wire = self.wire(body, run.session.agent, options)
            return answer_turn(request, start, wire=wire, headers=session_headers, render=turn_continued)
        return answer_turn(request, start, wait=True, render=completion_rendered(offset=offset))

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
    """A replayed streamed call whose stream is no longer kept: what it started."""
    return Response({"run_uuid": str(turn.run.uuid), "session_uuid": str(turn.session.uuid)}, status=201)


def turn_continued(request: Request, turn: Turn) -> Response:
    return Response({"run_uuid": str(turn.run.uuid), "session_uuid": str(turn.session.uuid)})


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
            raise ModelNotFound(
                f"The model `{model}` does not exist or you do not have access to it.", details={"param": "model"}
            )
        return Response(self.get_serializer(agent).data)
