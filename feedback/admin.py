from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from feedback.models import Feedback


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    """Ratings review: filter by rating, agent and date; jump to the rated message in its transcript."""

    list_display = ["rating", "body", "agent", "message_excerpt", "transcript_link", "created_at"]
    list_filter = ["rating", "message__session__agent", "created_at"]
    search_fields = ["body", "message__text", "message__session__title"]
    raw_id_fields = ["message"]
    readonly_fields = ["uuid", "created_at", "updated_at"]
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Feedback]:
        return super().get_queryset(request).for_review()

    @admin.display(description="Agent", ordering="message__session__agent__name")
    def agent(self, obj: Feedback) -> str:
        return obj.message.session.agent.name

    @admin.display(description="Message")
    def message_excerpt(self, obj: Feedback) -> str:
        return obj.message.text[:80]

    @admin.display(description="Transcript")
    def transcript_link(self, obj: Feedback) -> str:
        url = reverse("admin:chat_session_change", args=[obj.message.session_id])
        return format_html('<a href="{}#message-{}">{}</a>', url, obj.message.uuid, obj.message.session)
