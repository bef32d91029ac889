from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from genie.models import AccessToken, Member, Team
from genie.services import create_access_token


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "uuid", "created_at"]
    list_select_related = ["user", "team"]
    raw_id_fields = ["user"]
    search_fields = ["user__username", "user__email"]
    actions = ["issue_personal_token"]

    @admin.action(description="Issue a personal access token (shown once)")
    def issue_personal_token(self, request: HttpRequest, queryset: QuerySet[Member]) -> None:
        for member in queryset.select_related("user", "team"):
            _, key = create_access_token(
                team=member.team, kind=AccessToken.Kind.PERSONAL, user=member.user, name="admin"
            )
            self.message_user(
                request, f"Token for {member.user}: {key} (copy it now, it is not shown again)", messages.WARNING
            )


@admin.register(AccessToken)
class AccessTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "kind", "name", "team", "user", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["kind", "team"]
    list_select_related = ["team", "user"]
    raw_id_fields = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    readonly_fields = ["prefix", "last_used_at", "created_at"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[AccessToken]) -> None:
        for token in queryset:
            token.revoke()

    def save_model(self, request: HttpRequest, obj: AccessToken, form: object, change: bool) -> None:  # noqa: FBT001
        if change:
            super().save_model(request, obj, form, change)
            return
        token, key = create_access_token(
            team=obj.team, kind=obj.kind, name=obj.name, user=obj.user, expires_at=obj.expires_at
        )
        obj.pk, obj.prefix = token.pk, token.prefix
        self.message_user(request, f"New key: {key} (copy it now, it is not shown again)", messages.WARNING)
