"""NUL characters are refused with a 400 wherever a request carries text: PostgreSQL's
text cannot hold U+0000, so a NUL that reached a query or a row was a 500.

Three doors, one rule (``contains_nul``):
- ``RefuseNulMiddleware``: the path's parameters, the query string and the headers of
  every Django request (``%00`` in a path, ``?search=%00``), answered in the voice of the
  view it would have reached (``error_voice``, as the exception handler does);
- ``genie.parsers``: every JSON and multipart body (``"\\u0000"`` in any key or string,
  a form field, a file's name); a file's bytes are not text and pass;
- ``runs.sse.StreamApp``: the SSE routes Channels serves without Django's middleware.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.exceptions import ParseError

CODE = "malformed_request"
MESSAGE = "NUL characters (U+0000) are not allowed in text."


def contains_nul(value: Any) -> bool:
    """Whether a string, or any key or string nested in lists and dicts, holds a NUL
    (iterative: any depth the parser accepted)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


class NulInText(ParseError):
    """A body with a NUL in its text: 400 ``malformed_request`` in the view's voice."""

    default_detail = MESSAGE


class RefuseNulMiddleware:
    """Refuses a request whose path parameters, query string or headers hold a NUL,
    before its view runs. After URL resolution: a path that matches no route stays a 404."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> HttpResponse | None:
        headers = [value for name, value in request.META.items() if name.startswith("HTTP_")]
        if not contains_nul([request.path, list(args), kwargs, dict(request.GET.lists()), headers]):
            return None
        # Imported here: genie.exceptions imports DRF's views, whose settings import the
        # parsers, which import this module.
        from genie.exceptions import error_body_for_status

        voice = getattr(getattr(view, "cls", view), "error_voice", error_body_for_status)
        return JsonResponse(voice(CODE, MESSAGE, None, 400), status=400)
