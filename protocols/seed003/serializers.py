"""The seed003 protocol's request and response shapes (its views: ``protocols.seed003.views``)."""

from __future__ import annotations

from rest_framework import serializers

from chat.serializers import MessageTextField, validate_message_text
from genie.serializers import JSONObjectField, StrictSerializer
from runs.serializers import ToolCallResultSerializer


class SendMessageSerializer(StrictSerializer):
    content = MessageTextField(help_text="The message text.")
    uiContext = JSONObjectField(  # noqa: N815
        required=False, allow_null=True, default=None, help_text="currentPage, selectedElements, formData…"
    )
    scanContext = JSONObjectField(  # noqa: N815
        required=False, allow_null=True, default=None, help_text="tabTitle, pageUrl…: how the visitor arrived."
    )

    def validate_content(self, value: str) -> str:
        return validate_message_text(value)


class CommandSerializer(ToolCallResultSerializer):
    """A UI command's result: ``output`` (any JSON), or ``error`` when the client could not run it."""

    session_id = serializers.UUIDField()
    call_id = serializers.CharField(max_length=100, help_text="The `call_id` of the stream's `command` event.")


class CommandResultSerializer(serializers.Serializer):
    session_id = serializers.UUIDField()
    call_id = serializers.CharField()
    status = serializers.CharField(
        help_text="The call's status: `succeeded`, or `failed` with an `error`; `recorded` for a command whose "
        "tool waits for no result (`wait_for_result: false`)."
    )
