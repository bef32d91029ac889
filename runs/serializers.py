from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from genie.egress import validate_public_url
from genie.links import absolute_url
from genie.serializers import StrictSerializer
from runs.models import Connection, ConnectionProvider, Run, RunEvent, ToolCall
from runs.tools import DEFAULT_TIMEOUT, MAX_TIMEOUT, TOOL_KINDS, check_input_schema, get_tool

if TYPE_CHECKING:
    from runs.waiting import StopOutcome


class RunErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class RunUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)


class StopResultSerializer(serializers.Serializer):
    """A stop request's answer (``runs.waiting.StopOutcome``), read after the run's worker
    honoured the stop or GENIE_STOP_WAIT passed."""

    uuid = serializers.UUIDField(help_text="The session.")
    stopped = serializers.BooleanField(
        help_text="A run ended `stopped` by this request; false when nothing was active, when the run "
        "ended on its own first (see `status`), or while the stop is still pending (`status: running`)."
    )
    run_uuid = serializers.UUIDField(allow_null=True, help_text="The run that was active; null when none was.")
    status = serializers.CharField(
        allow_null=True,
        help_text="That run's status now: `stopped`, `succeeded` or `failed` (it ended before the stop "
        "took effect), `running` (its worker has not honoured the stop yet: it ends soon, as `GET …/runs/{r}` "
        "tells); null when nothing was active.",
    )

    @classmethod
    def of(cls, *, session_uuid: Any, outcome: StopOutcome) -> dict[str, Any]:
        run = outcome.run
        return cls(
            {
                "uuid": session_uuid,
                "stopped": outcome.stopped,
                "run_uuid": run.uuid if run is not None else None,
                "status": run.status if run is not None else None,
            }
        ).data


class ToolSpecSerializer(StrictSerializer):
    """One tool definition of an agent (see ``runs.tools``): the fields every kind has, then
    each kind's own (``Tool.spec_fields``, in registry order). A definition must have what
    its kind requires and stores only its kind's fields."""

    name = serializers.RegexField(r"^[A-Za-z0-9_-]{1,64}$", max_length=64)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")
    input_schema = serializers.JSONField(required=False, default=dict)
    kind = serializers.ChoiceField(choices=sorted(TOOL_KINDS))
    requires_approval = serializers.BooleanField(required=False, default=False)
    idempotent = serializers.BooleanField(required=False, default=False)
    connection = serializers.SlugField(required=False, allow_null=True, default=None, max_length=100)
    timeout = serializers.IntegerField(required=False, min_value=1, max_value=MAX_TIMEOUT, default=DEFAULT_TIMEOUT)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for kind in TOOL_KINDS:
            fields.update(get_tool(kind).spec_fields())
        return fields

    def validate_input_schema(self, value: Any) -> dict[str, Any]:
        value = value or {"type": "object"}
        problem = check_input_schema(value)
        if problem:
            raise serializers.ValidationError(problem, code="invalid_schema")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        tool = get_tool(attrs["kind"])
        for needs in tool.required_fields:
            if not attrs.get(needs):
                raise serializers.ValidationError(
                    {needs: [f"A {attrs['kind']} tool needs a {needs}."]}, code="required"
                )
        kept = {*self._declared_fields, *tool.spec_fields()}
        return {name: value for name, value in attrs.items() if name in kept}


class ToolCallSerializer(serializers.ModelSerializer):
    """A tool call as the transcript shows it (``tool_calls`` of an agent message)."""

    class Meta:
        model = ToolCall
        fields = [
            "call_id",
            "tool_name",
            "kind",
            "input",
            "output",
            "error",
            "status",
            "decided_by",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields  # output only


ACTION_TYPES = {
    ToolCall.Status.PENDING_APPROVAL: ("approval", "runs:tool-call-approval"),
    ToolCall.Status.AWAITING_RESULT: ("client_tool", "runs:tool-call-result"),
    ToolCall.Status.AWAITING_CONNECTION: ("connection", "runs:connection-link"),
}


class PendingActionSerializer(serializers.Serializer):
    """What a paused run waits for: ``type`` approval | client_tool | connection, and
    ``url``, where to answer it."""

    type = serializers.ChoiceField(choices=["approval", "client_tool", "connection"])
    call_id = serializers.CharField()
    tool_name = serializers.CharField()
    input = serializers.JSONField(allow_null=True)
    url = serializers.URLField()
    expires_at = serializers.DateTimeField(allow_null=True)


def pending_actions(calls: list[ToolCall], request: Any) -> list[dict[str, Any]]:
    """The open tool calls as pending actions (calls with their run loaded)."""
    actions = []
    for call in calls:
        action, url_name = ACTION_TYPES[call.status]
        if call.status == ToolCall.Status.AWAITING_CONNECTION and call.connection_attempt is not None:
            url = absolute_url(request, url_name, attempt_id=call.connection_attempt.attempt_id)  # the link_url
        else:
            url = absolute_url(request, url_name, session_uuid=call.run.session.uuid, call_id=call.call_id)
        actions.append(
            {
                "type": action,
                "call_id": call.call_id,
                "tool_name": call.tool_name,
                "input": call.input,
                "url": url,
                "expires_at": call.run.action_expires_at,
            }
        )
    return PendingActionSerializer(actions, many=True).data


class RunSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    stream_url = serializers.SerializerMethodField()
    session_uuid = serializers.UUIDField(source="session.uuid", read_only=True)
    user_message_uuid = serializers.UUIDField(source="user_message.uuid", read_only=True)
    agent_message_uuid = serializers.UUIDField(source="agent_message.uuid", read_only=True)
    error = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    pending_actions = serializers.SerializerMethodField()

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
            "pending_actions",
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

    @extend_schema_field(PendingActionSerializer(many=True))
    def get_pending_actions(self, obj: Run) -> list[dict[str, Any]]:
        if obj.status != Run.Status.REQUIRES_ACTION:
            return []
        calls = list(obj.tool_calls.open().select_related("run__session", "connection_attempt"))
        return pending_actions(calls, self.context["request"])

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


class ToolCallApprovalSerializer(StrictSerializer):
    approved = serializers.BooleanField()
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class ToolCallResultSerializer(StrictSerializer):
    output = serializers.JSONField(required=False)
    error = serializers.CharField(required=False, max_length=10_000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("output" in attrs) == ("error" in attrs):
            raise serializers.ValidationError("Send exactly one of output or error.", code="output_or_error")
        return attrs


class ConnectionProviderSerializer(serializers.ModelSerializer):
    """A team's OAuth provider. ``client_secret`` is write-only (stored encrypted, never
    shown); both URLs must pass the egress guard (the token URL is called by the server,
    the authorize URL is where users are sent)."""

    client_secret = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=2000)
    scopes = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=50, default=list
    )
    authorize_url = serializers.URLField(max_length=2000, validators=[validate_public_url])
    token_url = serializers.URLField(max_length=2000, validators=[validate_public_url])

    class Meta:
        model = ConnectionProvider
        fields = [
            "slug",
            "name",
            "authorize_url",
            "token_url",
            "client_id",
            "client_secret",
            "scopes",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def validate_slug(self, value: str) -> str:
        taken = ConnectionProvider.objects.of_team(self.context["team"]).filter(slug=value)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise serializers.ValidationError("The team already has a connection provider with this slug.")
        return value


class ConnectionSerializer(serializers.ModelSerializer):
    """An end user's connection, without its tokens (they never leave the server)."""

    provider = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    expired = serializers.BooleanField(source="is_expired", read_only=True)

    class Meta:
        model = Connection
        fields = ["uuid", "provider", "user_id", "scope", "expires_at", "expired", "created_at", "updated_at"]
        read_only_fields = fields  # output only


class AuthLinkSerializer(serializers.Serializer):
    url = serializers.URLField()
    expires_at = serializers.DateTimeField()


class ConnectionLinkSerializer(serializers.Serializer):
    """``POST connections/{attempt_id}/link``: a link to authorize, or ``authorized``."""

    attempt_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["auth_required", "authorized"])
    auth_link = AuthLinkSerializer(required=False)


class ConnectionRejectSerializer(serializers.Serializer):
    attempt_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["rejected"])
