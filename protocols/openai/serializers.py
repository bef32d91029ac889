"""The shapes of the OpenAI-compatible endpoint (``/v1/chat/completions``, ``/v1/models``):
a request as OpenAI documents it, validated in full (an unknown parameter is a 400 naming
it), and an agent as a model. Its views: ``protocols.openai.views``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from chat.models import Agent, Message
from chat.serializers import validate_message_text
from genie.serializers import JSONObjectField, StrictSerializer
from runs.tools import check_input_schema
from runs.tools.schema import check_schema

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


def last_user_index(messages: list[dict[str, Any]]) -> int | None:
    return next((index for index in range(len(messages) - 1, -1, -1) if messages[index]["role"] == "user"), None)


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
