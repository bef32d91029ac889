from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from rest_framework import serializers

from chat.models import (
    MAX_PROMPT_CHARS,
    MAX_SUGGESTED_PROMPTS,
    Agent,
    Compaction,
    Message,
    Session,
    Upload,
    validate_suggested_prompts,
)
from chat.serializers import clean_tool_definitions
from genie.auth import actor_names


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class TranscriptInline(ReadOnlyInline):
    model = Message
    fields = ["created_at", "sender_role", "text", "files", "contexts", "tools_used", "status", "model_id", "rating"]
    readonly_fields = fields
    ordering = ["created_at", "id"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return (
            super()
            .get_queryset(request)
            .select_related("feedback", "run")
            .prefetch_related("run__tool_calls", "attachments")
        )

    @admin.display(description="Files")
    def files(self, obj: Message) -> str:
        return attachment_links(obj)

    @admin.display(description="UI / scan context")
    def contexts(self, obj: Message) -> str:
        return context_lines(obj)

    @admin.display(description="Tool calls")
    def tools_used(self, obj: Message) -> str:
        """Each call: tool, input → outcome, and who decided when it needed approval."""
        calls = tool_calls_of(obj) if obj.is_agent else []
        if not calls:
            return "—"
        names = actor_names(call.decided_by for call in calls if call.decided_by)
        return format_html_join(
            "",
            "<div><b>{}</b> {} → {} <i>{}</i>{}</div>",
            (
                (
                    call.tool_name,
                    json.dumps(call.input),
                    json.dumps(call.output) if call.output is not None else call.error or "",
                    call.status,
                    f" ({call.describe_decision(names[call.decided_by])})" if call.decision else "",
                )
                for call in calls
            ),
        )

    @admin.display(description="Rating")
    def rating(self, obj: Message) -> str:
        feedback = getattr(obj, "feedback", None)
        return f"{feedback.rating}: {feedback.body}" if feedback else "—"


def tool_calls_of(message: Message) -> list:
    """An agent message's tool calls (prefetched by ``transcript()``), none without a run."""
    run = getattr(message, "run", None)
    return list(run.tool_calls.all()) if run is not None else []


def attachment_links(message: Message) -> str:
    """Each attached file, linked to its download in the admin."""
    uploads = list(message.attachments.all())
    if not uploads:
        return "—"
    return format_html_join(
        "",
        '<div><a href="{}">{}</a> ({}, {} bytes)</div>',
        (
            (reverse("admin:chat_upload_download", args=[upload.pk]), upload.filename, upload.content_type, upload.size)
            for upload in uploads
        ),
    )


def context_lines(message: Message) -> str:
    lines = [(name, json.dumps(value)) for name, value in (("ui", message.ui_context), ("scan", message.scan_context))]
    shown = [(name, value) for name, value in lines if value != "null"]
    return format_html_join("", "<div><b>{}</b> {}</div>", shown) if shown else "—"


class CompactionInline(ReadOnlyInline):
    """The session's summaries (compaction), newest first: what later prompts start from."""

    model = Compaction
    fields = ["created_at", "summary", "messages_compacted", "before_tokens", "after_tokens", "automatic"]
    readonly_fields = fields
    show_change_link = False


class AgentForm(forms.ModelForm):
    # The provider key is never shown again: a blank field keeps the stored one.
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="The provider's key, never shown. Blank keeps the stored key (cleared when the base URL changes).",
    )
    clear_api_key = forms.BooleanField(required=False, label="Clear the stored key")
    # A prompt a line reads better than a JSON list; stored as the list the API returns.
    suggested_prompts = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=f"One prompt a line, at most {MAX_SUGGESTED_PROMPTS} lines of {MAX_PROMPT_CHARS} characters; "
        "offered as buttons on an empty chat.",
    )

    class Meta:
        model = Agent
        fields = "__all__"  # noqa: DJ007  (the admin shows every editable field)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and isinstance(self.instance.suggested_prompts, list):
            self.initial["suggested_prompts"] = "\n".join(self.instance.suggested_prompts)

    def clean_suggested_prompts(self) -> list[str]:
        prompts = [line.strip() for line in self.cleaned_data["suggested_prompts"].splitlines() if line.strip()]
        validate_suggested_prompts(prompts)
        return prompts

    def clean(self) -> dict:
        data = super().clean()
        if data.get("clear_api_key"):
            data["api_key"] = ""
        elif not data.get("api_key"):
            data["api_key"] = self.instance.api_key
        return data

    def clean_tools(self) -> list[dict]:
        try:
            return clean_tool_definitions(self.cleaned_data["tools"])
        except serializers.ValidationError as exc:
            raise forms.ValidationError(json.dumps(exc.detail, default=str)) from exc


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentForm
    list_display = ["name", "handle", "type", "team", "provider", "model", "is_public", "is_default", "archived_at"]
    list_filter = ["provider", "type", "is_public", "team"]
    list_select_related = ["team"]
    search_fields = ["name", "handle", "model"]
    readonly_fields = ["uuid", "created_at", "updated_at"]
    # ``tools`` is edited as JSON (a list of definitions, validated on save like the API's).


def conversation_url(message: Message) -> str:
    """Where staff read ``message`` in its conversation (the read-only view, at its anchor)."""
    url = reverse("admin:chat_session_conversation", args=[message.session_id])
    return f"{url}#message-{message.uuid}"


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    """Sessions; each has a read-only conversation view (``conversation/``) beside its change
    form, which its change page and the feedback list link to."""

    list_display = ["__str__", "agent", "team", "owner", "user_id", "created_at", "updated_at", "conversation"]
    list_filter = ["agent", "team", "created_at"]
    list_select_related = ["agent", "team", "owner"]
    raw_id_fields = ["owner", "agent", "created_by_token"]
    search_fields = ["title", "uuid", "user_id", "messages__text"]
    readonly_fields = ["uuid", "created_at", "updated_at", "title_generated"]
    date_hierarchy = "created_at"
    inlines = [TranscriptInline, CompactionInline]
    # Each inline row posts two hidden fields with the change form: a long transcript would
    # pass Django's DATA_UPLOAD_MAX_NUMBER_FIELDS (and make a heavy page). Past this many
    # messages the change form leaves it to the conversation view.
    transcript_inline_limit = 200

    def get_inlines(self, request: HttpRequest, obj: Session | None) -> list:
        if obj is not None and obj.messages.count() > self.transcript_inline_limit:
            return [CompactionInline]
        return super().get_inlines(request, obj)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False

    @admin.display(description="Conversation")
    def conversation(self, obj: Session) -> str:
        return format_html('<a href="{}">read</a>', reverse("admin:chat_session_conversation", args=[obj.pk]))

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.conversation_view)
        return [path("<path:object_id>/conversation/", view, name="chat_session_conversation"), *super().get_urls()]

    def conversation_view(self, request: HttpRequest, object_id: str) -> TemplateResponse:
        """The session read as a chat: bubbles, tool calls, files, ratings, and each reply's
        run (status and timings). Read-only; a fixed number of queries whatever its length."""
        session = self.get_object(request, object_id)
        if session is None:
            raise Http404("No such session.")
        if not self.has_view_permission(request, session):
            raise PermissionDenied
        transcript = list(Message.objects.filter(session=session).transcript())
        calls = [call for message in transcript if message.is_agent for call in tool_calls_of(message)]
        names = actor_names(call.decided_by for call in calls if call.decided_by)
        for call in calls:  # the prefetched rows the template reads
            call.decision_text = call.describe_decision(names.get(call.decided_by, ""))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Conversation: {session}",
            "subtitle": None,
            "session": session,
            "transcript": transcript,  # not "messages": the admin shows those
            "has_change_permission": self.has_change_permission(request, session),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/chat/session/conversation.html", context)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages, read-only: they are written by the API and the worker, never by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    list_display = ["__str__", "session_link", "sender_role", "status", "model_id", "rating", "created_at"]
    list_filter = ["sender_role", "status", "feedback__rating", "created_at"]
    list_select_related = ["session", "feedback"]
    raw_id_fields = ["session"]
    search_fields = ["text", "session__title", "uuid"]
    readonly_fields = [f.name for f in Message._meta.fields] + ["rating", "files"]
    exclude = ["attachments"]  # shown read-only, linked to their downloads
    date_hierarchy = "created_at"

    @admin.display(description="Files")
    def files(self, obj: Message) -> str:
        return attachment_links(obj)

    @admin.display(description="Session")
    def session_link(self, obj: Message) -> str:
        return format_html('<a href="{}">{}</a>', conversation_url(obj), obj.session)

    @admin.display(description="Rating")
    def rating(self, obj: Message) -> str:
        feedback = getattr(obj, "feedback", None)
        return feedback.rating if feedback else "—"


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    """Uploaded files: read-only, each downloadable by staff who may view it."""

    list_display = ["filename", "content_type", "size", "session", "created_at", "download"]
    list_filter = ["content_type", "created_at"]
    list_select_related = ["session"]
    raw_id_fields = ["session"]
    search_fields = ["filename", "file_id", "sha256"]
    readonly_fields = [
        "file_id",
        "session",
        "filename",
        "content_type",
        "size",
        "sha256",
        "text_cut",
        "created_at",
        "download",
    ]
    exclude = ["file"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="Download")
    def download(self, obj: Upload) -> str:
        return format_html('<a href="{}">download</a>', reverse("admin:chat_upload_download", args=[obj.pk]))

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.download_view)
        return [path("<int:pk>/download/", view, name="chat_upload_download"), *super().get_urls()]

    def download_view(self, request: HttpRequest, pk: int) -> FileResponse:
        upload = get_object_or_404(Upload, pk=pk)
        if not self.has_view_permission(request, upload):
            raise PermissionDenied
        response = FileResponse(
            upload.file.open("rb"), as_attachment=True, filename=upload.filename, content_type=upload.content_type
        )
        response["X-Content-Type-Options"] = "nosniff"
        return response
