"""Declared query filters for the feedback list and export (the admin's list filters, as parameters)."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime

import django_filters
from django import forms
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

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


class DayOrTimeField(forms.Field):
    """An ISO 8601 day (``2026-12-07``, taken in UTC) or date-time (``2026-12-07T10:00:00Z``)."""

    default_error_messages = {"invalid": "Enter a date (YYYY-MM-DD) or an ISO 8601 date-time."}

    def to_python(self, value: str | None) -> date | datetime | None:
        if value in self.empty_values:
            return None
        parsed: date | datetime | None = None
        # The day first: parse_datetime would read a bare day as its midnight. A well-formed
        # but impossible value (month 13) raises ValueError: invalid too.
        with contextlib.suppress(ValueError):
            parsed = parse_date(value) or parse_datetime(value)
        if parsed is None:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        if isinstance(parsed, datetime):
            try:  # in UTC, as stored: PostgreSQL refuses some offsets Python accepts
                parsed = timezone.make_aware(parsed, UTC) if timezone.is_naive(parsed) else parsed.astimezone(UTC)
            except OverflowError:  # a time next to year 1 or 9999 that the offset pushes out
                raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
        return parsed


class DayOrTimeFilter(django_filters.Filter):
    """``since``: rated at or after the time (or on or after the day); ``until``: at or
    before it (or on or before the day)."""

    field_class = DayOrTimeField

    def filter(self, qs: QuerySet[Feedback], value: date | datetime | None) -> QuerySet[Feedback]:
        if value is None:
            return qs
        after = self.lookup_expr == "gte"
        if isinstance(value, datetime):
            return qs.filter(**{f"{self.field_name}__{'gte' if after else 'lte'}": value})
        return qs.filter(**{f"{self.field_name}__date__{'gte' if after else 'lte'}": value})


class FeedbackFilter(django_filters.FilterSet):
    """``GET feedback``'s filters; a value that does not parse is a 400."""

    agent = django_filters.CharFilter(field_name="message__session__agent__handle", help_text="An agent's handle.")
    rating = django_filters.ChoiceFilter(choices=Feedback.Rating.choices)
    session = django_filters.UUIDFilter(field_name="message__session__uuid", help_text="A session's uuid.")
    since = DayOrTimeFilter(
        field_name="created_at",
        lookup_expr="gte",
        help_text="Rated at or after this time (ISO 8601), or on or after this day (YYYY-MM-DD, UTC).",
    )
    until = DayOrTimeFilter(
        field_name="created_at",
        lookup_expr="lte",
        help_text="Rated at or before this time (ISO 8601), or on or before this day (YYYY-MM-DD, UTC).",
    )

    class Meta:
        model = Feedback
        fields = ["agent", "rating", "session", "since", "until"]
