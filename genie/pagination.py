"""The one pagination class: page numbers, ``{count, next, previous, results}``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.paginator import InvalidPage
from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.views import APIView


class GeniePagination(PageNumberPagination):
    page_size_query_param = "page_size"

    @property
    def max_page_size(self) -> int:  # read at call time so tests may override settings
        return settings.GENIE_MAX_PAGE_SIZE

    def _positive_int(self, request: Request, name: str, default: int, maximum: int | None) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1 or (maximum is not None and value > maximum):
            limit = f"between 1 and {maximum}" if maximum is not None else "a positive integer"
            raise ValidationError({name: [f"Must be {limit}."]}, code="invalid_pagination")
        return value

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["maximum"] = self.max_page_size
        return parameters

    def get_page_size(self, request: Request) -> int:
        return self._positive_int(request, self.page_size_query_param, self.page_size, self.max_page_size)

    def paginate_queryset(self, queryset: QuerySet, request: Request, view: APIView | None = None) -> list:
        self.request = request
        page_size = self.get_page_size(request)
        # Validate the number before Django's paginator touches it: a huge page must be a 400.
        number = self._positive_int(request, self.page_query_param, 1, 10**9)
        paginator = self.django_paginator_class(queryset, page_size)
        try:
            self.page = paginator.page(number)
        except InvalidPage as exc:
            raise ValidationError({self.page_query_param: [f"Page {number} is out of range."]}) from exc
        return list(self.page)
