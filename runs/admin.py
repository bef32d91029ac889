from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from genie.egress import validate_public_url
from runs import connections
from runs.models import Connection, ConnectionAttempt, ConnectionProvider, Run, RunEvent, ToolCall


class ToolCallInline(admin.TabularInline):
    model = ToolCall
    extra = 0
    can_delete = False
    fields = [
        "call_id",
        "tool_name",
        "kind",
        "input",
        "output",
        "error",
        "status",
        "decided_by",
        "reason",
        "finished_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(ToolCall)
class ToolCallAdmin(admin.ModelAdmin):
    list_display = ["call_id", "tool_name", "kind", "status", "decided_by", "created_at", "finished_at"]
    list_filter = ["status", "kind", "created_at"]
    list_select_related = ["run"]
    search_fields = ["call_id", "tool_name", "run__uuid"]
    raw_id_fields = ["run"]
    readonly_fields = [f.name for f in ToolCall._meta.fields]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["uuid", "session", "status", "error_code", "attempts", "created_at", "started_at", "finished_at"]
    list_filter = ["status", "error_code", "created_at"]
    list_select_related = ["session"]
    search_fields = ["uuid", "session__uuid", "session__title", "error_message"]
    raw_id_fields = ["session", "user_message", "agent_message"]
    readonly_fields = [f.name for f in Run._meta.fields]
    date_hierarchy = "created_at"
    inlines = [ToolCallInline]  # the list's status filter shows the runs waiting (requires_action)


@admin.register(RunEvent)
class RunEventAdmin(admin.ModelAdmin):
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
