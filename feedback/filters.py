"""Declared query filters for the feedback export: the admin's list filters, as parameters."""

from __future__ import annotations

import django_filters

from feedback.models import Feedback


class FeedbackExportFilter(django_filters.FilterSet):
    rating = django_filters.ChoiceFilter(choices=Feedback.Rating.choices)
    agent = django_filters.CharFilter(field_name="message__session__agent__handle", help_text="An agent's handle.")
    model = django_filters.CharFilter(field_name="message__model_id", help_text="The model that wrote the reply.")
    since = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__gte", help_text="Rated on or after this day (YYYY-MM-DD, UTC)."
    )
    until = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__lte", help_text="Rated on or before this day (YYYY-MM-DD, UTC)."
    )

    class Meta:
        model = Feedback
        fields = ["rating", "agent", "model", "since", "until"]
