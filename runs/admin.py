from __future__ import annotations

from django.contrib import admin

from runs.models import Run, RunEvent, ToolCall


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
