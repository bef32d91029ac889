"""Translate sessions and messages to and from the API's shapes (seed 000)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chat.models import (
    MAX_GREETING_CHARS,
    MAX_PROMPT_CHARS,
    MAX_SUGGESTED_PROMPTS,
    PREVIEW_CHARS,
    Agent,
    Message,
    Session,
    Upload,
)
from genie.exceptions import PayloadTooLarge
from genie.links import absolute_url
from genie.serializers import JSONObjectField, StrictSerializer
from runs.models import ConnectionProvider, Run, ToolCall
from runs.serializers import PendingActionSerializer, ToolCallSerializer, ToolSpecSerializer, pending_actions
from runs.services import ON_ACTIVE_RUN_CHOICES
from runs.tools import MAX_TOOLS, get_tool


def validate_message_text(value: str) -> str:
    if len(value) > settings.GENIE_MAX_MESSAGE_CHARS:
        raise PayloadTooLarge(
            f"The text is {len(value)} characters; the limit is {settings.GENIE_MAX_MESSAGE_CHARS}.",
            details={"limit": settings.GENIE_MAX_MESSAGE_CHARS, "length": len(value)},
        )
    if not value.strip():
        raise serializers.ValidationError("The text is blank.", code="blank")
    return value


@extend_schema_field(
    {
        "type": "string",
        "minLength": 1,
        "pattern": r"\S",
        "description": "Not blank; at most GENIE_MAX_MESSAGE_CHARS characters (413 beyond).",
    }
)
class MessageTextField(serializers.CharField):
    """A turn's text, kept as sent; blank is refused here or by ``validate_message_text``
    (all whitespace), with the same error, and too long there (413)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, error_messages={"blank": "The text is blank."}, **kwargs)


def file_ids_field() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        default=list,
        max_length=settings.GENIE_MAX_ATTACHMENTS,
        help_text="Uploads to attach to the user message (`POST sessions/{s}/uploads`), at most 10.",
    )


class SessionCreateSerializer(StrictSerializer):
    text = MessageTextField(required=False, help_text="The first message; required unless `empty` is true.")
    empty = serializers.BooleanField(
        required=False,
        default=False,
        help_text="An empty session: no message and no run yet (upload files to it, then send its first message "
        "with `POST sessions/{s}/messages`). Takes no `text` or `file_ids`.",
    )
    title = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    agent = serializers.CharField(required=False, max_length=100)
    metadata = JSONObjectField(required=False, default=dict)
    user_id = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    ui_context = JSONObjectField(required=False, allow_null=True, default=None)
    scan_context = JSONObjectField(required=False, allow_null=True, default=None)
    file_ids = file_ids_field()

    def validate_text(self, value: str) -> str:
        return validate_message_text(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["empty"]:
            given = [name for name in ("text", "file_ids") if attrs.get(name)]
            if given:
                message = "An empty session starts with no message: send it with POST sessions/{s}/messages."
                raise serializers.ValidationError({name: [message] for name in given}, code="invalid")
        elif "text" not in attrs:
            raise serializers.ValidationError({"text": ["This field is required."]}, code="required")
        return attrs


class MessageEditSerializer(StrictSerializer):
    text = MessageTextField(help_text="The message's new text: a new turn from this point.")

    def validate_text(self, value: str) -> str:
        return validate_message_text(value)


class MessageCreateSerializer(StrictSerializer):
    text = MessageTextField()
    metadata = JSONObjectField(required=False, default=dict)
    ui_context = JSONObjectField(required=False, allow_null=True, default=None)
    scan_context = JSONObjectField(required=False, allow_null=True, default=None)
    file_ids = file_ids_field()
    stream = serializers.BooleanField(required=False, default=True)
    on_active_run = serializers.ChoiceField(choices=ON_ACTIVE_RUN_CHOICES, required=False, default="reject")

    def validate_text(self, value: str) -> str:
        return validate_message_text(value)


class SessionUpdateSerializer(StrictSerializer):
    title = serializers.CharField(required=False, allow_blank=True, max_length=200)
    metadata = JSONObjectField(required=False)


class SessionUserSerializer(serializers.Serializer):
    """A session's user: its owner (a member, by uuid) or the caller's end user (``user_id``, no uuid)."""

    uuid = serializers.UUIDField(allow_null=True)
    name = serializers.CharField()


class SessionSerializer(serializers.ModelSerializer):
    """The seed's session detail."""

    url = serializers.SerializerMethodField()
    user = serializers.SerializerMethodField()
    agent = serializers.SlugRelatedField(slug_field="handle", read_only=True)
    messages_url = serializers.SerializerMethodField()
    stream_url = serializers.SerializerMethodField()
    preview = serializers.SerializerMethodField(
        help_text="The start of the first user message (100 characters): what to show for a chat without a title."
    )

    class Meta:
        model = Session
        fields = [
            "uuid",
            "url",
            "title",
            "preview",
            "user",
            "user_id",
            "agent",
            "messages_url",
            "stream_url",
            "metadata",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields  # output only: SessionUpdateSerializer takes the input

    def get_url(self, obj: Session) -> str:
        return absolute_url(self.context["request"], "chat:session-detail", session_uuid=obj.uuid)

    def get_preview(self, obj: Session) -> str:
        if not hasattr(obj, "preview"):  # not read through ``with_preview()``
            first = obj.messages.current().filter(sender_role=Message.SenderRole.USER).first()
            return first.text[:PREVIEW_CHARS] if first else ""
        return obj.preview or ""

    def get_messages_url(self, obj: Session) -> str:
        return absolute_url(self.context["request"], "chat:message-list", session_uuid=obj.uuid)

    def get_stream_url(self, obj: Session) -> str:
        return absolute_url(self.context["request"], "runs:session-stream", session_uuid=obj.uuid)

    @extend_schema_field(SessionUserSerializer(allow_null=True))
    def get_user(self, obj: Session) -> dict[str, Any] | None:
        if obj.owner is not None:
            member = getattr(obj.owner, "member", None)
            return {
                "uuid": str(member.uuid) if member else None,
                "name": obj.owner.get_full_name() or obj.owner.get_username(),
            }
        if obj.user_id:
            return {"uuid": None, "name": obj.user_id}
        return None


class FeedbackInlineSerializer(serializers.Serializer):
    rating = serializers.CharField()
    body = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class MessageModelSerializer(serializers.Serializer):
    provider = serializers.CharField()
    model_id = serializers.CharField()


class UploadSerializer(serializers.ModelSerializer):
    """An uploaded file; ``url`` serves its bytes (with the caller's credentials)."""

    url = serializers.SerializerMethodField()

    class Meta:
        model = Upload
        fields = ["file_id", "filename", "content_type", "size", "sha256", "created_at", "url"]
        read_only_fields = fields

    def get_url(self, obj: Upload) -> str:
        session_uuid = self.context.get("session_uuid") or obj.session.uuid
        return absolute_url(
            self.context["request"], "chat:upload-content", session_uuid=session_uuid, file_id=obj.file_id
        )


class AttachmentSerializer(UploadSerializer):
    class Meta(UploadSerializer.Meta):
        fields = ["file_id", "filename", "content_type", "size", "url"]
        read_only_fields = fields


class MessageErrorSerializer(serializers.Serializer):
    """Why a failed or stopped reply ended (``stopped`` for a stop; else the run's error code)."""

    code = serializers.CharField()
    message = serializers.CharField()


class MessageSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    session_uuid = serializers.UUIDField(source="session.uuid", read_only=True)
    feedback_url = serializers.SerializerMethodField()
    feedback = serializers.SerializerMethodField()
    model = serializers.SerializerMethodField()
    tool_calls = serializers.SerializerMethodField()
    attachments = serializers.SerializerMethodField()
    error = MessageErrorSerializer(read_only=True, allow_null=True)
    replaced_by = serializers.SlugRelatedField(
        slug_field="uuid",
        read_only=True,
        allow_null=True,
        help_text="null, or the message that replaced this one: a regenerated reply's new reply, or the edited "
        "message that replaced this one and every one after it. Replaced messages are kept; prompts leave them out.",
    )

    class Meta:
        model = Message
        fields = [
            "uuid",
            "url",
            "session_uuid",
            "feedback_url",
            "feedback",
            "sender_role",
            "text",
            "status",
            "error",
            "tool_calls",
            "attachments",
            "temperature",
            "model",
            "metadata",
            "replaced_by",
            "created_at",
        ]
        read_only_fields = fields  # output only

    def _url_kwargs(self, obj: Message) -> dict[str, Any]:
        return {"session_uuid": obj.session.uuid, "message_uuid": obj.uuid}

    def get_url(self, obj: Message) -> str:
        return absolute_url(self.context["request"], "chat:message-detail", **self._url_kwargs(obj))

    @extend_schema_field(ToolCallSerializer(many=True))
    def get_tool_calls(self, obj: Message) -> list[dict[str, Any]]:
        """An agent message's tool calls, in order (prefetched by ``transcript()``)."""
        if not obj.is_agent:
            return []
        try:
            run = obj.run
        except ObjectDoesNotExist:
            return []
        return ToolCallSerializer(run.tool_calls.all(), many=True).data

    @extend_schema_field(AttachmentSerializer(many=True))
    def get_attachments(self, obj: Message) -> list[dict[str, Any]]:
        """The files attached to a user message (prefetched by ``transcript()``)."""
        context = {**self.context, "session_uuid": obj.session.uuid}
        return AttachmentSerializer(obj.attachments.all(), many=True, context=context).data

    def get_feedback_url(self, obj: Message) -> str | None:
        if not obj.is_agent:
            return None
        return absolute_url(self.context["request"], "feedback:message-feedback", **self._url_kwargs(obj))

    @extend_schema_field(FeedbackInlineSerializer(allow_null=True))
    def get_feedback(self, obj: Message) -> dict[str, Any] | None:
        feedback = getattr(obj, "feedback", None)
        return FeedbackInlineSerializer(feedback).data if feedback is not None else None

    @extend_schema_field(MessageModelSerializer())
    def get_model(self, obj: Message) -> dict[str, str]:
        return {"provider": obj.provider, "model_id": obj.model_id}


class SessionDetailSerializer(SessionSerializer):
    """One session: the list's fields and what its paused run waits for."""

    pending_actions = serializers.SerializerMethodField()

    class Meta(SessionSerializer.Meta):
        fields = [*SessionSerializer.Meta.fields, "pending_actions"]

    @extend_schema_field(PendingActionSerializer(many=True))
    def get_pending_actions(self, obj: Session) -> list[dict[str, Any]]:
        """What the session's paused run waits for (one query; empty when nothing waits)."""
        calls = ToolCall.objects.filter(run__session=obj, run__status=Run.Status.REQUIRES_ACTION).open()
        return pending_actions(
            list(calls.select_related("run__session", "connection_attempt")), self.context["request"]
        )


class SessionWithMessagesSerializer(SessionDetailSerializer):
    """The session detail; with ``?include=messages``, its transcript too."""

    # Not required: the schema of ``GET sessions/{s}`` covers the detail with and without it.
    messages = MessageSerializer(
        source="messages.transcript", many=True, required=False, help_text="Only with ?include=messages."
    )

    class Meta(SessionDetailSerializer.Meta):
        fields = [*SessionDetailSerializer.Meta.fields, "messages"]


class CompactSerializer(StrictSerializer):
    keep_last = serializers.IntegerField(
        required=False, default=4, min_value=0, max_value=100, help_text="The last messages kept verbatim."
    )


class ContextBreakdownSerializer(serializers.Serializer):
    system = serializers.IntegerField(help_text="Instructions and the latest UI and scan context.")
    tools = serializers.IntegerField(help_text="The tool definitions offered.")
    summary = serializers.IntegerField(help_text="The summary of compacted turns.")
    messages = serializers.IntegerField(help_text="The messages' text.")
    attachments = serializers.IntegerField(help_text="What the model gets of attached files.")


class ContextUsageSerializer(serializers.Serializer):
    """How much of the model's context the session's next prompt takes (``runs.context``)."""

    model = serializers.CharField()
    context_window = serializers.IntegerField()
    used_tokens = serializers.IntegerField()
    remaining_tokens = serializers.IntegerField(help_text="context_window - used_tokens (negative when over).")
    percent = serializers.FloatField(help_text="used_tokens / context_window x 100, one decimal.")
    breakdown = ContextBreakdownSerializer()
    messages_in_context = serializers.IntegerField()
    messages_total = serializers.IntegerField()
    last_compacted_at = serializers.DateTimeField(allow_null=True)


class SessionStartedSerializer(serializers.Serializer):
    """``POST sessions``: the new session, its first run, and where to follow them."""

    uuid = serializers.UUIDField(help_text="The session's uuid.")
    stream_url = serializers.URLField()
    messages_url = serializers.URLField()
    run_uuid = serializers.UUIDField(required=False, help_text="Absent for an empty session (no turn yet).")
    run_url = serializers.URLField(required=False)
    client_secret = serializers.CharField(
        required=False,
        help_text="Publishable keys only, shown once: send it as X-Session-Secret to act on this session.",
    )


class TurnStartedSerializer(serializers.Serializer):
    """``POST sessions/{s}/messages``: the new turn's agent message, its run, and where to follow them."""

    uuid = serializers.UUIDField(help_text="The agent message's uuid; the message is pending until the run ends.")
    stream_url = serializers.URLField()
    run_uuid = serializers.UUIDField()
    run_url = serializers.URLField()


class ReplyStartedSerializer(TurnStartedSerializer):
    """A regenerated reply or an edited message: the new turn, and the user message it answers."""

    user_message_uuid = serializers.UUIDField(
        help_text="The user message the new reply answers (an edit's new message; a regeneration's same one)."
    )


def unique_tool_names(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = [tool["name"] for tool in tools]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise serializers.ValidationError(f"Tool names must be unique: {', '.join(repeated)}.", code="unique")
    return tools


def clean_tool_definitions(value: Any) -> list[dict[str, Any]]:
    """Validate an agent's ``tools`` outside the API (the admin): the API's rules, the
    API's messages. Raises ``serializers.ValidationError``."""
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise serializers.ValidationError(f"A list of at most {MAX_TOOLS} tool definitions.")
    data = ToolSpecSerializer(data=value, many=True)
    data.is_valid(raise_exception=True)
    return unique_tool_names([dict(tool) for tool in data.validated_data])


@extend_schema_field(ToolSpecSerializer(many=True))
class ToolsField(serializers.JSONField):
    """An agent's tool definitions, always validated whole (a PATCH that sends ``tools``
    replaces the list: each definition gets its defaults), and each ``connection`` must
    name a provider of the agent's team."""

    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        tools = clean_tool_definitions(super().to_internal_value(data))
        slugs = {tool["connection"] for tool in tools if tool.get("connection")}
        known = set(
            ConnectionProvider.objects.filter(team=self.context["team"], slug__in=slugs).values_list("slug", flat=True)
        )
        in_browser = {tool["name"] for tool in tools if not get_tool(tool["kind"]).runs_on_server}
        problems = {
            tool["name"]: "A client tool runs in the browser: it cannot use a connection."
            if tool["name"] in in_browser
            else f"No connection provider {tool['connection']!r} in this team."
            for tool in tools
            if tool.get("connection") and (tool["name"] in in_browser or tool["connection"] not in known)
        }
        if problems:
            raise serializers.ValidationError(problems, code="invalid_connection")
        return tools

    def to_representation(self, value: Any) -> Any:
        return value


class AgentSerializer(serializers.ModelSerializer):
    """Agents of the team. ``api_key`` is write-only: it is never returned;
    ``webhook_secret`` is returned once, by the create (and by a rotation)."""

    tools = ToolsField(required=False)
    max_steps = serializers.IntegerField(min_value=1, max_value=32, required=False)
    context_window = serializers.IntegerField(
        min_value=256, max_value=10_000_000, required=False, allow_null=True, help_text="Blank: the model's default."
    )

    url = serializers.SerializerMethodField()
    handle = serializers.SlugField(max_length=100)
    type = serializers.CharField(
        max_length=50, required=False, allow_blank=True, help_text="A free label (support, sales…); blank by default."
    )
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    greeting = serializers.CharField(
        max_length=MAX_GREETING_CHARS,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="Shown on an empty chat (the page, the widget); not sent to the model. Blank by default.",
    )
    suggested_prompts = serializers.ListField(
        child=serializers.CharField(max_length=MAX_PROMPT_CHARS),
        max_length=MAX_SUGGESTED_PROMPTS,
        required=False,
        help_text="At most 6 prompts offered as buttons on an empty chat.",
    )
    api_key = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=500)
    has_api_key = serializers.SerializerMethodField()
    temperature = serializers.FloatField(min_value=0.0, max_value=2.0, required=False)
    max_tokens = serializers.IntegerField(min_value=1, max_value=100_000, required=False, allow_null=True)

    class Meta:
        model = Agent
        fields = [
            "uuid",
            "url",
            "handle",
            "name",
            "type",
            "description",
            "instructions",
            "greeting",
            "suggested_prompts",
            "provider",
            "model",
            "base_url",
            "api_key",
            "has_api_key",
            "temperature",
            "max_tokens",
            "tools",
            "max_steps",
            "vision",
            "context_window",
            "allow_client_settings",
            "generate_titles",
            "is_public",
            "is_default",
            "archived_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["uuid", "is_default", "archived_at", "created_at", "updated_at"]

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - {name for name, f in self.fields.items() if not f.read_only})
            if unknown:
                raise serializers.ValidationError({name: ["Unknown or read-only field."] for name in unknown})
        return super().to_internal_value(data)

    def get_url(self, obj: Agent) -> str:
        return absolute_url(self.context["request"], "chat:agent-detail", handle=obj.handle)

    def get_has_api_key(self, obj: Agent) -> bool:
        return bool(obj.api_key)

    def validate_handle(self, value: str) -> str:
        team = self.context["team"]
        clash = Agent.objects.for_team(team).filter(handle=value)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError("An agent with this handle exists.", code="unique")
        return value


class AgentProfileSerializer(serializers.ModelSerializer):
    """What an empty chat shows of its agent (``GET agent-profile``): readable by every
    caller that may start a session with it, a publishable key's widget included."""

    class Meta:
        model = Agent
        fields = ["handle", "name", "description", "greeting", "suggested_prompts"]
        read_only_fields = fields


class AgentCreatedSerializer(AgentSerializer):
    """The create's answer: the agent and its ``webhook_secret``, shown this once."""

    webhook_secret = serializers.CharField(read_only=True)

    class Meta(AgentSerializer.Meta):
        fields = [*AgentSerializer.Meta.fields, "webhook_secret"]
