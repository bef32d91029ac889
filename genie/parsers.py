"""The API's parsers: DRF's, refusing with a 400 what would otherwise end in a 500 later:
JSON nested deeper than GENIE_MAX_JSON_DEPTH (a RecursionError, here or wherever the data
is serialized again), and a NUL character in any text of a body (``genie.nul``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import DataAndFiles, JSONParser, MultiPartParser

from genie.nul import NulInText, contains_nul


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (iterative: no recursion limit)."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest


class GenieJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        limit = settings.GENIE_MAX_JSON_DEPTH
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(f"JSON parse error - nested deeper than {limit} levels.") from exc
        if json_depth(data) > limit:
            raise ParseError(f"JSON parse error - nested deeper than {limit} levels.")
        if contains_nul(data):
            raise NulInText()
        return data


class GenieMultiPartParser(MultiPartParser):
    """Multipart bodies: a NUL in a field's name or value or in a file's name is refused
    (a file's bytes are data, not text)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> DataAndFiles:
        parsed = super().parse(stream, media_type, parser_context)
        names = [[key, file.name or ""] for key, files in parsed.files.lists() for file in files]
        if contains_nul([dict(parsed.data.lists()), names]):
            raise NulInText()
        return parsed
