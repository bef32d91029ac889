"""The AI SDK chat protocol's request: ``DefaultChatTransport``'s body and its
``UIMessage`` parts, as far as Genie reads them (its views: ``protocols.aisdk.views``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from chat.serializers import validate_message_text
from genie.serializers import StrictSerializer

ANSWERED_STATES = {"approval-responded", "output-available", "output-error"}


class ChatRequestSerializer(StrictSerializer):
    """The body ``DefaultChatTransport`` sends (plus ``agent``, through its ``body`` option)."""

    id = serializers.CharField(max_length=200, help_text="The client's chat id: one session per caller.")
    messages = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=1000)
    trigger = serializers.ChoiceField(choices=["submit-message", "regenerate-message"])
    messageId = serializers.CharField(required=False, allow_null=True, max_length=200)  # noqa: N815
    agent = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=100, help_text="A new chat's agent (handle)."
    )


@dataclass(frozen=True)
class ChatMessage:
    """One ``UIMessage`` of the request, as far as Genie reads it."""

    id: str
    role: str
    parts: list[dict[str, Any]]

    @classmethod
    def parse(cls, raw: dict[str, Any], index: int) -> ChatMessage:
        role, parts = raw.get("role"), raw.get("parts")
        if role not in {"user", "assistant", "system"} or not isinstance(parts, list):
            raise ValidationError(
                {"messages": {index: ["A UIMessage has `role` (user, assistant or system) and a list of `parts`."]}}
            )
        if not all(isinstance(part, dict) and isinstance(part.get("type"), str) for part in parts):
            raise ValidationError({"messages": {index: ["Each part is an object with a `type`."]}})
        if not all(valid_tool_part(part) for part in parts if is_tool_part(part)):
            raise ValidationError(
                {
                    "messages": {
                        index: [
                            "A tool part has a string `toolCallId` and `state`; its `approval`, if any, is an "
                            "object, with a boolean `approved` once responded."
                        ]
                    }
                }
            )
        return cls(id=str(raw.get("id", "")), role=role, parts=parts)

    def text(self, index: int) -> str:
        """The user turn: its text parts, joined. Other parts (files) are refused, not dropped."""
        other = sorted({part["type"] for part in self.parts if part["type"] != "text"} - {"step-start"})
        if other:
            raise ValidationError(
                {"messages": {index: [f"Only text parts can be sent here (got {', '.join(other)})."]}},
                code="unsupported_part",
            )
        return validate_message_text("".join(str(part.get("text", "")) for part in self.parts))

    def tool_answers(self) -> dict[str, dict[str, Any]]:
        """Its tool parts that carry an answer (an approval response, a client's output),
        by call id."""
        return {
            part["toolCallId"]: part for part in self.parts if is_tool_part(part) and part["state"] in ANSWERED_STATES
        }


def is_tool_part(part: dict[str, Any]) -> bool:
    return part["type"].startswith("tool-") or part["type"] == "dynamic-tool"


def valid_tool_part(part: dict[str, Any]) -> bool:
    """A tool part as the AI SDK writes it, as far as Genie reads it."""
    if not isinstance(part.get("toolCallId"), str) or not isinstance(part.get("state"), str):
        return False
    approval = part.get("approval")
    if approval is None:
        return part["state"] != "approval-responded"
    if not isinstance(approval, dict):
        return False
    approved, reason = approval.get("approved"), approval.get("reason")
    if part["state"] == "approval-responded" and not isinstance(approved, bool):
        return False
    return (approved is None or isinstance(approved, bool)) and (reason is None or isinstance(reason, str))
