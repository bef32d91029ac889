from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from genie.links import absolute_url
from genie.serializers import StrictSerializer
from runs.models import Run, RunEvent


class RunErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class RunUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)


class RunSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    stream_url = serializers.SerializerMethodField()
    session_uuid = serializers.UUIDField(source="session.uuid", read_only=True)
    user_message_uuid = serializers.UUIDField(source="user_message.uuid", read_only=True)
    agent_message_uuid = serializers.UUIDField(source="agent_message.uuid", read_only=True)
    error = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "uuid",
            "url",
            "stream_url",
            "session_uuid",
            "status",
            "error",
            "usage",
            "user_message_uuid",
            "agent_message_uuid",
            "attempts",
            "created_at",
            "started_at",
            "first_token_at",
            "finished_at",
        ]
        read_only_fields = fields  # output only

    def _url_kwargs(self, obj: Run) -> dict[str, Any]:
        return {"session_uuid": obj.session.uuid, "run_uuid": obj.uuid}

    def get_url(self, obj: Run) -> str:
        return absolute_url(self.context["request"], "runs:run-detail", **self._url_kwargs(obj))

    def get_stream_url(self, obj: Run) -> str:
        return absolute_url(self.context["request"], "runs:run-stream", **self._url_kwargs(obj))

    @extend_schema_field(RunErrorSerializer(allow_null=True))
    def get_error(self, obj: Run) -> dict[str, str] | None:
        return {"code": obj.error_code, "message": obj.error_message} if obj.error_code else None

    @extend_schema_field(RunUsageSerializer())
    def get_usage(self, obj: Run) -> dict[str, int | None]:
        return {"prompt_tokens": obj.prompt_tokens, "completion_tokens": obj.completion_tokens}


class RunEventSerializer(serializers.ModelSerializer):
    """A stored event; merged deltas cover the ids ``first_id``..``id``. With ``since_id``
    in the context, a delta that covers it keeps only the pieces after it."""

    id = serializers.IntegerField(source="seq")
    first_id = serializers.IntegerField(source="first_seq")
    run_uuid = serializers.UUIDField(source="run.uuid")
    data = serializers.SerializerMethodField()

    class Meta:
        model = RunEvent
        fields = ["id", "first_id", "run_uuid", "type", "data", "created_at"]
        read_only_fields = fields  # output only

    def get_data(self, obj: RunEvent) -> dict[str, Any]:
        return obj.data_after(self.context.get("since_id", 0))


class EventQuerySerializer(StrictSerializer):
    since_id = serializers.IntegerField(required=False, min_value=0)
    since_created_at = serializers.DateTimeField(required=False)
    page = serializers.CharField(required=False)
    page_size = serializers.CharField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "since_id" in attrs and "since_created_at" in attrs:
            raise serializers.ValidationError("Give since_id or since_created_at, not both.")
        return attrs
