from __future__ import annotations

from functools import partial

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from genie.cors import forget_origins, normalize_origins
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


class AccessTokenForm(forms.ModelForm):
    """Allowed origins are checked and stored normalised, as the API does (``genie.cors``)."""

    class Meta:
        model = AccessToken
        fields = ["team", "user", "kind", "name", "allowed_origins", "expires_at", "revoked_at"]

    def clean_allowed_origins(self) -> list[str]:
        origins = self.cleaned_data.get("allowed_origins") or []
        if not isinstance(origins, list) or not all(isinstance(origin, str) for origin in origins):
            raise forms.ValidationError('A JSON list of origins, e.g. ["https://shop.example"].')
        try:
            return normalize_origins(origins)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("allowed_origins") and cleaned.get("kind") != AccessToken.Kind.PUBLISHABLE:
            self.add_error("allowed_origins", "Only publishable keys have allowed origins.")
        return cleaned


@admin.register(AccessToken)
class AccessTokenAdmin(admin.ModelAdmin):
    form = AccessTokenForm
    list_display = [
        "prefix",
        "kind",
        "name",
        "team",
        "user",
        "origins",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["kind", "team"]
    list_select_related = ["team", "user"]
    raw_id_fields = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    readonly_fields = ["prefix", "last_used_at", "created_at"]
    actions = ["revoke"]

    @admin.display(description="allowed origins")
    def origins(self, obj: AccessToken) -> str:
        return ", ".join(obj.allowed_origins)

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[AccessToken]) -> None:
        for token in queryset:
            token.revoke()

    def save_model(self, request: HttpRequest, obj: AccessToken, form: object, change: bool) -> None:  # noqa: FBT001
        if change:
            super().save_model(request, obj, form, change)
            transaction.on_commit(partial(forget_origins, obj.allowed_origins))
            return
        token, key = create_access_token(
            team=obj.team,
            kind=obj.kind,
            name=obj.name,
            user=obj.user,
            expires_at=obj.expires_at,
            allowed_origins=obj.allowed_origins,
        )
        obj.pk, obj.prefix = token.pk, token.prefix
        self.message_user(request, f"New key: {key} (copy it now, it is not shown again)", messages.WARNING)
