"""Declared query filters for the session list."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from chat.models import Session


class SessionFilter(django_filters.FilterSet):
    user_id = django_filters.CharFilter(field_name="user_id")
    agent = django_filters.CharFilter(field_name="agent__handle")
    search = django_filters.CharFilter(method="filter_search")

    class Meta:
        model = Session
        fields = ["user_id", "agent", "search"]

    def filter_search(self, queryset: QuerySet[Session], name: str, value: str) -> QuerySet[Session]:
        return queryset.filter(Q(title__icontains=value) | Q(messages__text__icontains=value)).distinct()
