from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html

from chat.admin import conversation_url
from feedback.export import export_file
from feedback.models import Feedback
from feedback.ratings_chart import ratings_charts


class ModelListFilter(admin.SimpleListFilter):
    """The model that wrote the rated reply (as stored on the message)."""

    title = "model"
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        models = Feedback.objects.order_by().values_list("message__model_id", flat=True).distinct()
        return [(name, name or "(none)") for name in sorted(models)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> QuerySet[Feedback]:
        if self.value() is None:
            return queryset
        return queryset.filter(message__model_id=self.value())


class RatingsPeriodForm(forms.Form):
    days = forms.TypedChoiceField(choices=[(n, n) for n in (7, 30, 90, 365)], coerce=int, required=False)


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    """Ratings review: filter by rating, agent, model and date; jump to the rated message in
    its conversation; export the selection (CSV, JSON); ratings over time per agent."""

    # Not "model": a display method of that name is shadowed by ``ModelAdmin.model`` (the
    # column read "Feedback" and showed the class on every row).
    list_display = ["rating", "body", "agent", "reply_model", "message_excerpt", "transcript_link", "created_at"]
    list_filter = [
        "rating",
        ("message__session__agent", admin.RelatedOnlyFieldListFilter),
        ModelListFilter,
        "created_at",
    ]
    search_fields = ["body", "message__text", "message__session__title"]
    raw_id_fields = ["message"]
    readonly_fields = ["uuid", "created_at", "updated_at", "transcript_link"]
    date_hierarchy = "created_at"
    actions = ["export_csv", "export_json"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Feedback]:
        return super().get_queryset(request).for_review()

    @admin.display(description="Agent", ordering="message__session__agent__name")
    def agent(self, obj: Feedback) -> str:
        return obj.message.session.agent.name

    @admin.display(description="Model", ordering="message__model_id")
    def reply_model(self, obj: Feedback) -> str:
        """The model that wrote the rated reply."""
        return obj.message.model_id or "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # ratings come from the people who read the replies (the API), not from staff

    @admin.display(description="Message")
    def message_excerpt(self, obj: Feedback) -> str:
        return obj.message.text[:80]

    @admin.display(description="Transcript")
    def transcript_link(self, obj: Feedback) -> str:
        return format_html('<a href="{}">{}</a>', conversation_url(obj.message), obj.message.session)

    @admin.action(description="Export the selected feedback as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> HttpResponse:
        return export_file(queryset, file_format="csv")

    @admin.action(description="Export the selected feedback as JSON")
    def export_json(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> HttpResponse:
        return export_file(queryset, file_format="json")

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.ratings_view)
        return [path("ratings/", view, name="feedback_feedback_ratings"), *super().get_urls()]

    def ratings_view(self, request: HttpRequest) -> TemplateResponse:
        """Ratings over time per agent: the last ``?days=`` days (30 by default), one small
        SVG chart per agent. Two queries."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = RatingsPeriodForm(request.GET)
        days = (form.is_valid() and form.cleaned_data["days"]) or 30
        last_day = timezone.localdate()
        first_day = last_day - timedelta(days=days - 1)
        rows = Feedback.objects.daily_counts(since=first_day)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Ratings over time",
            "days": days,
            "day_choices": [7, 30, 90, 365],
            "first_day": first_day,
            "last_day": last_day,
            "time_zone": timezone.get_current_timezone_name(),
            "charts": ratings_charts(rows, first_day=first_day, last_day=last_day),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/feedback/feedback/ratings.html", context)
