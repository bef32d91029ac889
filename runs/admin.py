from __future__ import annotations

from django.contrib import admin

from runs.models import Run, RunEvent


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["uuid", "session", "status", "error_code", "attempts", "created_at", "started_at", "finished_at"]
    list_filter = ["status", "error_code", "created_at"]
    list_select_related = ["session"]
    search_fields = ["uuid", "session__uuid", "session__title", "error_message"]
    raw_id_fields = ["session", "user_message", "agent_message"]
    readonly_fields = [f.name for f in Run._meta.fields]
    date_hierarchy = "created_at"


@admin.register(RunEvent)
class RunEventAdmin(admin.ModelAdmin):
    list_display = ["seq", "type", "session", "run", "created_at"]
    list_filter = ["type", "created_at"]
    list_select_related = ["session", "run"]
    raw_id_fields = ["session", "run"]
    readonly_fields = [f.name for f in RunEvent._meta.fields]
