from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import DurationField, ExpressionWrapper, F, QuerySet
from django.http import HttpRequest

from genie.auth import actor_names
from genie.egress import validate_public_url
from runs import connections
from runs.models import Connection, ConnectionAttempt, ConnectionProvider, Run, RunEvent, ToolCall


class SystemRecordAdmin(admin.ModelAdmin):
    """Records only the system writes (runs, their events and tool calls): staff read them,
    nobody adds or edits one by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.display(description="Decision")
def decision(call: ToolCall) -> str:
    """ "Approved by demo at …" for a call someone decided; "—" otherwise. ``call.decider``,
    when a list set it, saves the lookup of who decided."""
    if not call.decision:
        return "—"
    decider = getattr(call, "decider", None) or actor_names([call.decided_by])[call.decided_by]
    return call.describe_decision(decider)


class ToolCallInline(admin.TabularInline):
    model = ToolCall
    extra = 0
    can_delete = False
    fields = ["call_id", "tool_name", "kind", "input", "output", "error", "status", "decision", "finished_at"]
    readonly_fields = fields

    def has_add_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    @admin.display(description="Decision")
    def decision(self, obj: ToolCall) -> str:
        return decision(obj)


@admin.register(ToolCall)
class ToolCallAdmin(SystemRecordAdmin):
    list_display = ["call_id", "tool_name", "kind", "status", decision, "created_at", "finished_at"]
    list_filter = ["status", "kind", "created_at"]
    list_select_related = ["run"]
    search_fields = ["call_id", "tool_name", "run__uuid"]
    raw_id_fields = ["run"]
    readonly_fields = [*(f.name for f in ToolCall._meta.fields), decision]

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        """Who decided each call of the page, in one query (not one per row)."""
        changelist = super().get_changelist_instance(request)
        calls = list(changelist.result_list)  # evaluated here; the page reuses these rows
        names = actor_names(call.decided_by for call in calls if call.decided_by)
        for call in calls:
            call.decider = names.get(call.decided_by)
        return changelist


@admin.register(Run)
class RunAdmin(SystemRecordAdmin):
    list_display = [
        "uuid",
        "session",
        "kind",
        "status",
        "error_code",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
        "duration",
    ]
    list_filter = ["kind", "status", "error_code", "created_at"]
    list_select_related = ["session"]
    search_fields = ["uuid", "session__uuid", "session__title", "error_message"]
    raw_id_fields = ["session", "user_message", "agent_message"]
    readonly_fields = [*(f.name for f in Run._meta.fields), "duration"]
    date_hierarchy = "created_at"
    inlines = [ToolCallInline]  # the list's status filter shows the runs waiting (requires_action)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Run]:
        duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        return super().get_queryset(request).annotate(run_duration=duration)

    @admin.display(description="Duration", ordering="run_duration")
    def duration(self, obj: Run) -> str:
        """Started → finished (a paused run's wait for a person included); "—" while it runs."""
        seconds = obj.duration_seconds
        return "—" if seconds is None else f"{seconds:.2f} s"


@admin.register(RunEvent)
class RunEventAdmin(SystemRecordAdmin):
    list_display = ["seq", "type", "session", "run", "created_at"]
    list_filter = ["type", "created_at"]
    list_select_related = ["session", "run"]
    raw_id_fields = ["session", "run"]
    readonly_fields = [f.name for f in RunEvent._meta.fields]


class ConnectionProviderForm(forms.ModelForm):
    """``client_secret`` is write-only: never rendered; left blank, the stored one is kept."""

    client_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted and never shown. Leave blank to keep the current one.",
    )
    authorize_url = forms.URLField(max_length=2000, assume_scheme="https", validators=[validate_public_url])
    token_url = forms.URLField(max_length=2000, assume_scheme="https", validators=[validate_public_url])

    class Meta:
        model = ConnectionProvider
        fields = ["team", "slug", "name", "authorize_url", "token_url", "client_id", "client_secret", "scopes"]

    def clean_client_secret(self) -> str:
        return self.cleaned_data["client_secret"] or (self.instance.client_secret if self.instance.pk else "")


@admin.register(ConnectionProvider)
class ConnectionProviderAdmin(admin.ModelAdmin):
    form = ConnectionProviderForm
    list_display = ["slug", "name", "team", "client_id", "updated_at"]
    list_filter = ["team"]
    list_select_related = ["team"]
    search_fields = ["slug", "name"]
    raw_id_fields = ["team"]


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    """End users' connections; their tokens are never shown (revoke instead)."""

    list_display = ["provider", "user_id", "team", "expires_at", "revoked_at", "created_at"]
    list_filter = ["provider", "revoked_at"]
    list_select_related = ["provider", "team"]
    search_fields = ["user_id", "provider__slug"]
    fields = ["uuid", "team", "provider", "user_id", "token_type", "scope", "expires_at", "revoked_at", "created_at"]
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke the selected connections (their tokens are deleted)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for connection in queryset.live():
            connections.revoke_connection(connection=connection)


@admin.register(ConnectionAttempt)
class ConnectionAttemptAdmin(admin.ModelAdmin):
    list_display = ["attempt_id", "provider", "user_id", "status", "expires_at", "created_at"]
    list_filter = ["status"]
    list_select_related = ["provider"]
    search_fields = ["attempt_id", "user_id"]
    fields = ["attempt_id", "provider", "user_id", "status", "expires_at", "created_at", "updated_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
