"""The feedback export's file formats, as DRF renderers: the API negotiates them
(``?format=csv|json``) and the admin action renders with the same classes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rest_framework.renderers import JSONRenderer
from rest_framework_csv.renderers import CSVRenderer

from feedback.serializers import EXPORT_COLUMNS

# A spreadsheet runs a cell that starts with one of these as a formula; ratings' comments
# and messages are end users' text, so such a cell is written with a leading quote (OWASP).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class FeedbackCSVRenderer(CSVRenderer):
    """One row per rating, the columns of ``EXPORT_COLUMNS`` in order (a header even when
    there are no rows), UTF-8."""

    header = EXPORT_COLUMNS

    def tablize(self, data: Any, header: Any = None, labels: Any = None) -> Iterator[list[Any]]:
        for row in super().tablize(data, header=header, labels=labels):
            yield [f"'{cell}" if isinstance(cell, str) and cell.startswith(FORMULA_PREFIXES) else cell for cell in row]


# format → renderer; the first is the default when a request names none.
EXPORT_RENDERERS: dict[str, type[JSONRenderer] | type[FeedbackCSVRenderer]] = {
    "json": JSONRenderer,
    "csv": FeedbackCSVRenderer,
}
