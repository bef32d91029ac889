"""Filters for the admin's read-only conversation view."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def pretty_json(value: Any) -> str:
    """A tool call's input or output as indented JSON (escaped by the template, as text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
