"""Requests of OpenAI's Responses API (``POST /v1/responses``), with OpenAI's names.

``input`` is a string (one user message) or a list of items, read into ``InputItem``s:
messages (``input_text`` parts, and ``output_text`` parts in an assistant message the client
sends back), ``function_call`` and ``function_call_output`` (a client function tool's call
and its result) and ``mcp_approval_response`` (the answer to an ``mcp_approval_request``).
A bad item is a 400 naming it (``input[1].content[0].type``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chat.serializers import validate_message_text
from genie.serializers import JSONObjectField, StrictSerializer
from protocols.openai.serializers import FunctionSerializer, JsonSchemaFormatSerializer

RESPONSE_ID_PREFIX = "resp_"
ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = {"input_text", "output_text"}
ITEM_TYPES = ("message", "function_call", "function_call_output", "mcp_approval_response")


@dataclass(frozen=True)
class InputItem:
    """One input item, read: ``type`` is OpenAI's; the other fields are those it has."""

    type: str
    role: str = ""
    text: str = ""
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    output: Any = None
    approve: bool = False
    reason: str = ""

    @property
    def is_answer(self) -> bool:
        return self.type in {"function_call_output", "mcp_approval_response"}


def item_error(index: int, field: str, message: str, code: str = "invalid_value") -> serializers.ValidationError:
    return serializers.ValidationError({index: {field: [serializers.ErrorDetail(message, code=code)]}})


def read_text(index: int, content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise item_error(index, "content", "Expected text or a list of text parts.", "invalid_type")
    texts = []
    for position, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS or not isinstance(part.get("text"), str):
            message = (
                f"Content part type {kind!r} is not supported: only text parts (input_text, output_text); "
                "attach files through Genie's uploads API."
            )
            raise serializers.ValidationError(
                {index: {"content": {position: {"type": [serializers.ErrorDetail(message, code="unsupported_value")]}}}}
            )
        texts.append(part["text"])
    return "\n".join(texts)


def read_item(index: int, data: Any) -> InputItem:
    if not isinstance(data, dict):
        raise serializers.ValidationError(
            {index: [serializers.ErrorDetail("Expected an object.", code="invalid_type")]}
        )
    kind = data.get("type", "message" if "role" in data else None)
    if kind not in ITEM_TYPES:
        raise item_error(
            index,
            "type",
            f"Input item type {kind!r} is not supported: one of {', '.join(ITEM_TYPES)}.",
            "unsupported_value",
        )
    return ITEM_READERS[kind](index, data)


def read_message(index: int, data: dict[str, Any]) -> InputItem:
    role = data.get("role")
    if role not in ROLES:
        raise item_error(index, "role", f"Role {role!r} is not one of {', '.join(ROLES)}.")
    return InputItem(type="message", role=role, text=read_text(index, data.get("content", "")))


def read_approval(index: int, data: dict[str, Any]) -> InputItem:
    request_id, approve = data.get("approval_request_id"), data.get("approve")
    if not isinstance(request_id, str) or not request_id:
        raise item_error(index, "approval_request_id", "Expected the id of an mcp_approval_request item.")
    if not isinstance(approve, bool):
        raise item_error(index, "approve", "Expected true or false.", "invalid_type")
    return InputItem(
        type="mcp_approval_response", call_id=request_id, approve=approve, reason=str(data.get("reason") or "")
    )


def read_call_id(index: int, data: dict[str, Any]) -> str:
    call_id = data.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise item_error(index, "call_id", "Expected the call_id of a function_call item.")
    return call_id


def read_function_call(index: int, data: dict[str, Any]) -> InputItem:
    call_id = read_call_id(index, data)
    name, arguments = data.get("name"), data.get("arguments", "")
    if not isinstance(name, str) or not isinstance(arguments, str):
        raise item_error(index, "arguments", "Expected a name and arguments as a JSON string.", "invalid_type")
    return InputItem(type="function_call", call_id=call_id, name=name, arguments=arguments)


def read_function_call_output(index: int, data: dict[str, Any]) -> InputItem:
    call_id = read_call_id(index, data)
    if "output" not in data:
        raise item_error(index, "output", "This field is required.", "required")
    output = data["output"]
    if isinstance(output, list):
        output = read_text(index, output)
    return InputItem(type="function_call_output", call_id=call_id, output=output)


ITEM_READERS = {
    "message": read_message,
    "function_call": read_function_call,
    "function_call_output": read_function_call_output,
    "mcp_approval_response": read_approval,
}


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"type": {"type": "string", "enum": list(ITEM_TYPES)}},
                    "additionalProperties": True,
                },
            },
        ],
        "description": "Text (one user message) or input items: messages with text parts, function_call, "
        "function_call_output, mcp_approval_response.",
    }
)
class InputField(serializers.Field):
    def to_internal_value(self, data: Any) -> list[InputItem]:
        if isinstance(data, str):
            return [InputItem(type="message", role="user", text=data)]
        if not isinstance(data, list) or not data:
            raise serializers.ValidationError("Expected text or a non-empty list of input items.", code="invalid_type")
        if len(data) > 1000:
            raise serializers.ValidationError("At most 1000 input items.", code="too_long")
        return [read_item(index, item) for index, item in enumerate(data)]

    def to_representation(self, value: Any) -> Any:
        return value


def accepted(field_class: type[serializers.Field], **kwargs: Any) -> serializers.Field:
    """A parameter accepted so that clients sending their defaults work, and not used."""
    return field_class(required=False, allow_null=True, help_text="Accepted; not used.", **kwargs)


class FunctionToolSerializer(FunctionSerializer):
    """A function tool, in the Responses API's flat shape: the client runs it."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") != "function":  # named first: other tools have no name
            try:
                self.fields["type"].run_validation(data.get("type"))
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"type": exc.detail}) from exc
        return super().to_internal_value(data)

    type = serializers.ChoiceField(
        choices=["function"],
        error_messages={
            "invalid_choice": "Tool type {input} is not supported: only function tools (the agent's own tools "
            "run on the server)."
        },
    )


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": ["none", "auto", "required"]},
            {
                "type": "object",
                "properties": {"type": {"type": "string", "enum": ["function"]}, "name": {"type": "string"}},
            },
        ],
        "nullable": True,
    }
)
class ToolChoiceField(serializers.Field):
    """``none``, ``auto``, ``required``, or one function by name; kept in the chat
    completions' shape the providers take (``{"type": "function", "function": {"name"}}``)."""

    def to_internal_value(self, data: Any) -> str | dict[str, Any]:
        if data in ("none", "auto", "required"):
            return data
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(data, dict) or data.get("type") != "function" or not isinstance(name, str):
            raise serializers.ValidationError(
                'Expected "none", "auto", "required" or {"type": "function", "name": …}.', code="invalid_value"
            )
        return {"type": "function", "function": {"name": name}}

    def to_representation(self, value: Any) -> Any:
        return value


class TextFormatSerializer(StrictSerializer):
    type = serializers.ChoiceField(choices=["text", "json_object", "json_schema"])
    name = serializers.CharField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    schema = JSONObjectField(required=False)
    strict = serializers.BooleanField(required=False, allow_null=True, default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["type"] != "json_schema":
            return {"type": attrs["type"]}
        spec = JsonSchemaFormatSerializer(data={k: v for k, v in attrs.items() if k != "type"})
        spec.is_valid(raise_exception=True)
        if "schema" not in attrs:
            raise serializers.ValidationError({"schema": ["Required for type json_schema."]}, code="required")
        return {"type": "json_schema", "json_schema": {**spec.validated_data, "strict": bool(attrs.get("strict"))}}


class TextSerializer(StrictSerializer):
    format = TextFormatSerializer(required=False, allow_null=True)
    verbosity = serializers.CharField(required=False, allow_null=True, help_text="Accepted; not used.")


class ResponseRequestSerializer(StrictSerializer):
    model = serializers.CharField(max_length=100, help_text="An agent's handle (or uuid): `GET /v1/models`.")
    input = InputField()
    previous_response_id = serializers.CharField(
        required=False, allow_null=True, default=None, help_text="Continue that response's session."
    )
    instructions = serializers.CharField(required=False, allow_null=True, allow_blank=True, default=None)
    metadata = JSONObjectField(required=False, allow_null=True, default=dict)
    store = serializers.BooleanField(required=False, allow_null=True, default=True)
    stream = serializers.BooleanField(required=False, allow_null=True, default=False)
    background = serializers.BooleanField(required=False, allow_null=True, default=False)
    user = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    tools = serializers.ListField(
        child=FunctionToolSerializer(), required=False, allow_null=True, default=list, max_length=128
    )
    tool_choice = ToolChoiceField(required=False, allow_null=True, default=None)
    text = TextSerializer(required=False, allow_null=True, default=None)
    temperature = serializers.FloatField(required=False, allow_null=True, default=None, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, allow_null=True, default=None, min_value=0, max_value=1)
    max_output_tokens = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
    parallel_tool_calls = accepted(serializers.BooleanField)
    truncation = accepted(serializers.CharField)
    include = accepted(serializers.ListField)
    reasoning = accepted(serializers.JSONField)
    service_tier = accepted(serializers.CharField)
    stream_options = accepted(serializers.JSONField)
    prompt_cache_key = accepted(serializers.CharField)
    safety_identifier = accepted(serializers.CharField)
    top_logprobs = accepted(serializers.IntegerField)
    max_tool_calls = accepted(serializers.IntegerField)

    def validate_metadata(self, value: dict[str, Any] | None) -> dict[str, Any]:
        value = value or {}
        if len(value) > 16 or any(len(str(k)) > 64 or not isinstance(v, str) or len(v) > 512 for k, v in value.items()):
            raise serializers.ValidationError(
                "At most 16 pairs of strings (keys up to 64 characters, values up to 512).", code="invalid_value"
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        for name in ("store", "stream", "background"):
            attrs[name] = bool(attrs.get(name)) if attrs.get(name) is not None else name == "store"
        attrs["metadata"] = attrs.get("metadata") or {}
        attrs["tools"] = attrs.get("tools") or []
        if attrs["background"] and not attrs["store"]:
            raise serializers.ValidationError(
                {"background": ["A background response is stored: background needs store true."]},
                code="invalid_value",
            )
        if not attrs["store"] and attrs["previous_response_id"] is not None:
            raise serializers.ValidationError(
                {
                    "store": [
                        "A response with store false opens no session to continue: send the conversation as input."
                    ]
                },
                code="invalid_value",
            )
        items: list[InputItem] = attrs["input"]
        answers = [item for item in items if item.is_answer]
        if attrs["previous_response_id"] is None and any(item.type == "mcp_approval_response" for item in answers):
            raise serializers.ValidationError(
                {"previous_response_id": ["An mcp_approval_response answers the response named here."]},
                code="required",
            )
        turn = last_user_index(items)
        if turn is None and attrs["previous_response_id"] is None:
            raise serializers.ValidationError(
                {"input": ["The input needs a user message: it is the new turn."]}, code="invalid_value"
            )
        if not answers and (items[-1].type != "message" or items[-1].role != "user"):
            raise serializers.ValidationError(
                {"input": {len(items) - 1: ["The last input item must be the user's message: it is the new turn."]}},
                code="invalid_value",
            )
        if turn is not None:
            try:
                validate_message_text(items[turn].text)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"input": {turn: {"content": exc.detail}}}) from exc
        return attrs


def last_user_index(items: list[InputItem]) -> int | None:
    users = [i for i, item in enumerate(items) if item.type == "message" and item.role == "user"]
    return users[-1] if users else None


def parse_response_id(value: str) -> str | None:
    """The run uuid (hex) a response id names, or None for one that is not a response id."""
    hex_part = value.removeprefix(RESPONSE_ID_PREFIX)
    if not value.startswith(RESPONSE_ID_PREFIX) or len(hex_part) != 32:
        return None
    try:
        int(hex_part, 16)
    except ValueError:
        return None
    return hex_part


def arguments_json(value: str) -> Any:
    try:
        return json.loads(value or "{}")
    except ValueError:
        return None


class InputItemsQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=100)
    order = serializers.ChoiceField(choices=["asc", "desc"], required=False, default="desc")
    after = serializers.CharField(required=False, default="", help_text="Items after this item id.")
