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

import uuid
from typing import Any

from django.conf import settings
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
from chat.exceptions import ModelNotFound, SessionNotFound, TurnFailed
from chat.models import Agent, Message, Session
from chat.serializers import validate_message_text
from genie.auth import Caller, IsTeamCaller, NotPublishable
from genie.idempotency import run_idempotently
from genie.schema import IDEMPOTENCY_KEY
from genie.serializers import JSONObjectField, StrictSerializer
from runs.events import require_redis
from runs.exceptions import RunTimeout
from runs.formats.openai import ChatCompletionChunkFormat, completion_id, openai_finish_reason, openai_usage
from runs.handoff import stream_turn
from runs.models import Run, RunEvent
from runs.options import ClientSettings, TurnOptions
from runs.titles import fallback_title
from runs.waiting import wait_for_finish

SESSION_HEADER = "Genie-Session"
ROLES = {"user": Message.SenderRole.USER, "assistant": Message.SenderRole.AGENT}
TOOLS_UNSUPPORTED = "Client-side tools are not supported: the agent's own tools run on the server."
# OpenAI parameters Genie cannot honour, with the values that ask for nothing (accepted).
UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "n": ((None, 1), "n > 1 is not supported: an agent writes one reply per turn."),
    "tools": ((None, []), TOOLS_UNSUPPORTED),
    "tool_choice": ((None, "none", "auto"), TOOLS_UNSUPPORTED),
    "functions": ((None, []), TOOLS_UNSUPPORTED),
    "function_call": ((None, "none", "auto"), TOOLS_UNSUPPORTED),
    "response_format": ((None, {"type": "text"}), "Only text replies are supported (response_format text)."),
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


class ChatMessageSerializer(StrictSerializer):
    role = serializers.ChoiceField(
        choices=["system", "developer", "user", "assistant"],
        error_messages={
            "invalid_choice": "Role {input} is not supported: system, developer, user or assistant "
            "(the agent runs its own tools on the server)."
        },
    )
    content = MessageContentField(required=False, allow_null=True, default="")
    name = serializers.CharField(required=False, allow_blank=True, help_text="Accepted; not used.")
    # Parts of a client-side tool loop: accepted here so that such a message is refused
    # for what it is (its role, or the request's `tools`), not for an unknown field.
    tool_call_id = serializers.CharField(required=False, help_text="Not used: tool messages are refused.")
    tool_calls = serializers.JSONField(required=False, help_text="Not used: client-side tools are refused.")

    def validate_content(self, value: str | None) -> str:
        return value or ""


class StreamOptionsSerializer(StrictSerializer):
    include_usage = serializers.BooleanField(required=False, default=False)
    include_obfuscation = serializers.BooleanField(required=False, help_text="Accepted; not used.")


def accepted(field_class: type[serializers.Field]) -> serializers.Field:
    """An OpenAI parameter accepted so that clients sending it work, and not used."""
    return field_class(required=False, allow_null=True, help_text="Accepted; not used.")


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
    tools = unsupported()
    tool_choice = unsupported()
    functions = unsupported()
    function_call = unsupported()
    response_format = unsupported()
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
        if messages[-1]["role"] != "user":
            raise serializers.ValidationError(
                {"messages": ["The last message must be the user's: it is the new turn."]}, code="invalid_value"
            )
        for message in messages:
            if message["role"] in ROLES and message["content"].strip():
                validate_message_text(message["content"])
        try:
            validate_message_text(messages[-1]["content"])
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"messages": {len(messages) - 1: {"content": exc.detail}}}) from exc
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


def history_of(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The turns before the last message, as a new session's earlier messages."""
    return [(ROLES[m["role"]], m["content"]) for m in messages[:-1] if m["role"] in ROLES and m["content"].strip()]


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


def completion_body(run: Run, *, model: str) -> dict[str, Any]:
    """A finished (or paused) turn as a ``chat.completion``."""
    if run.status == Run.Status.REQUIRES_ACTION:
        finish_reason, usage = "tool_calls", run.state.get("usage")
    else:
        finish = RunEvent.objects.filter(run=run, type="finish").values_list("data", flat=True).first()
        finish_reason = openai_finish_reason(finish or {})
        usage = {"prompt_tokens": run.prompt_tokens, "completion_tokens": run.completion_tokens}
    message = {"role": "assistant", "content": run.agent_message.text, "refusal": None}
    return {
        "id": completion_id(str(run.uuid)),
        "object": "chat.completion",
        "created": int(run.created_at.timestamp()),
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": openai_usage(usage),
    }


def session_headers(request: Request, response: Response, run: Run) -> dict[str, str]:
    """The session that stores the call (send it back as ``Genie-Session`` to continue it),
    and for a publishable key the new session's secret (send it as ``X-Session-Secret``)."""
    headers = {SESSION_HEADER: str(run.session.uuid)}
    if response.data.get("client_secret"):
        headers["Genie-Client-Secret"] = response.data["client_secret"]
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


class ChatCompletionView(APIView):
    """``POST /v1/chat/completions``: one turn of the agent named by ``model``."""

    error_voice = staticmethod(openai_error)

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:  # noqa: FBT001, FBT002
        # A JSON answer (and JSON errors) whatever the client's Accept header says; a
        # streamed answer is the relay's.
        return super().perform_content_negotiation(request, force=True)

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
        agent = Agent.objects.startable_by(caller).pick(body["model"])
        if agent is None:
            raise ModelNotFound(
                f"The model `{body['model']}` does not exist or you do not have access to it.",
                details={"param": "model"},
            )
        session = self.continued_session(request, agent)
        options = TurnOptions(settings=client_settings(body, agent))
        start = lambda: run_idempotently(request, lambda: self._start(request, body, agent, session, options))  # noqa: E731
        if body["stream"]:
            include_usage = bool(body["stream_options"] and body["stream_options"]["include_usage"])
            wire = ChatCompletionChunkFormat(model=agent.handle, include_usage=include_usage)
            return stream_turn(request, start, wire=wire, headers=session_headers, session=session)
        return self._reply_when_done(request, start(), model=agent.handle)

    def continued_session(self, request: Request, agent: Agent) -> Session | None:
        """The session named by the ``Genie-Session`` header (None without one): reachable
        by the caller (the one access rule) and the same agent as ``model``."""
        value = request.headers.get(SESSION_HEADER, "").strip()
        if not value:
            return None
        sessions = Session.objects.reachable_by(request.auth).select_related("agent")
        session = sessions.filter(uuid=value).first() if is_uuid(value) else None
        if session is None:
            raise SessionNotFound(details={"param": SESSION_HEADER})
        if session.agent_id != agent.pk:
            raise serializers.ValidationError(
                {"model": [f"The session {value} is with the agent `{session.agent.handle}`."]}, code="model_mismatch"
            )
        return session

    def _start(
        self, request: Request, body: dict[str, Any], agent: Agent, session: Session | None, options: TurnOptions
    ) -> Response:
        require_redis()
        text = body["messages"][-1]["content"]
        client_secret = None
        if session is None:
            history = history_of(body["messages"])
            first = next((said for role, said in history if role == Message.SenderRole.USER), text)
            session, run, client_secret = services.start_session(
                caller=request.auth,
                agent=agent,
                text=text,
                title=fallback_title(first),  # from the first user message: no model call for a title
                metadata=body["metadata"],
                user_id=body["user"],
                history=history,
                options=options,
            )
        else:
            run = services.post_message(session=session, text=text, metadata=body["metadata"], options=options)
        started = {"run_uuid": str(run.uuid), "session_uuid": str(session.uuid)}
        if client_secret:
            started["client_secret"] = client_secret
        return Response(started, status=status.HTTP_201_CREATED)

    def _reply_when_done(self, request: Request, started: Response, *, model: str) -> Response:
        """Wait for the turn (its end, or a pause for a person or the client), answer with
        its ``chat.completion``."""
        run = Run.objects.select_related("session").get(uuid=started.data["run_uuid"])
        if not wait_for_finish(run=run, timeout=settings.GENIE_SYNC_TIMEOUT, or_pause=True):
            raise RunTimeout(details={"run_uuid": str(run.uuid), "session_uuid": str(run.session.uuid)})
        run = Run.objects.select_related("session", "agent_message").get(pk=run.pk)
        if run.status == Run.Status.FAILED:
            raise TurnFailed(
                run.error_message or None,
                details={"run_uuid": str(run.uuid), "session_uuid": str(run.session.uuid), "param": None},
            )
        response = Response(completion_body(run, model=model), headers=session_headers(request, started, run))
        if started.has_header("Idempotent-Replayed"):
            response["Idempotent-Replayed"] = started["Idempotent-Replayed"]
        return response


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class AgentModelViewSet(viewsets.GenericViewSet):
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
