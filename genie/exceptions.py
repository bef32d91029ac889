"""The one error format: ``{"error": {"code", "message", "details"}}`` for every 4xx and 5xx."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)

# A publishable key reaches a session only with that session's client secret; without it
# every session is a 404 (whether it exists is not told), and this says what is missing.
NOT_FOUND_FOR_PUBLISHABLE = (
    "Not found. A publishable key reaches a session only with its client secret: "
    "send it in the X-Session-Secret header."
)


class GenieError(exceptions.APIException):
    """A domain error with a stable code; subclasses set status and code."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "bad_request"
    default_detail = "Bad request."

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        super().__init__(message or self.default_detail, self.default_code)
        self.details = details


class PayloadTooLarge(GenieError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "text_too_long"
    default_detail = "The message text is longer than allowed."


class RequestTooLarge(GenieError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"
    default_detail = "The request body is larger than allowed."


class Conflict(GenieError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "The request conflicts with the current state."


class ServiceUnavailable(GenieError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "service_unavailable"
    default_detail = "A backing service is unavailable; retry shortly."


class RedisUnavailable(ServiceUnavailable):
    default_code = "redis_unavailable"
    default_detail = "The event store (Redis) is unavailable; retry shortly."


CODE_BY_EXCEPTION: list[tuple[type[Exception], str]] = [
    (exceptions.ValidationError, "validation_error"),
    (exceptions.ParseError, "malformed_request"),
    (exceptions.NotAuthenticated, "not_authenticated"),
    (exceptions.AuthenticationFailed, "authentication_failed"),
    (exceptions.PermissionDenied, "permission_denied"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "rate_limited"),
]


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _describe(exc: exceptions.APIException) -> tuple[str, str, Any]:
    if isinstance(exc, GenieError):
        return exc.default_code, str(exc.detail), exc.details
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return "validation_error", "The request is invalid.", detail
    code = next((c for cls, c in CODE_BY_EXCEPTION if isinstance(exc, cls)), None)
    detail_code = getattr(exc.detail, "code", None)
    if code is None or (detail_code and detail_code not in {exc.default_code, "error"}):
        code = detail_code or exc.default_code
    return str(code), str(exc.detail), None


def genie_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge(details={"limit_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE})
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        logger.error("Unhandled error in %s", context.get("view"), exc_info=exc)
        voice: ErrorVoice = getattr(context.get("view"), "error_voice", error_body_for_status)
        return Response(
            voice("internal_error", "An internal error occurred.", None, 500),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    code, message, details = _describe(exc)
    if response.status_code == status.HTTP_404_NOT_FOUND and names_session_without_secret(context):
        message = NOT_FOUND_FOR_PUBLISHABLE
    # One error path, several voices: a view serving another API's documented shape (the
    # OpenAI-compatible and seed adapters) writes the same error its own way.
    voice: ErrorVoice = getattr(context.get("view"), "error_voice", error_body_for_status)
    response.data = voice(code, message, details, response.status_code)
    return response


ErrorVoice = Callable[[str, str, Any, int], dict[str, Any]]

# How a view's URL (or seed 003's command body) names a session.
SESSION_KWARGS = ("session_uuid", "session_id", "chat_id")


def names_session_without_secret(context: dict[str, Any]) -> bool:
    """A request for a session by a publishable key that did not send the session's secret:
    its 404 says what is missing (and nothing about the session)."""
    request = context.get("request")
    caller = getattr(request, "auth", None)
    if not getattr(caller, "lacks_session_secret", False):
        return False
    kwargs = context.get("kwargs") or {}
    body = getattr(request, "data", None)
    return any(name in kwargs for name in SESSION_KWARGS) or (isinstance(body, dict) and "session_id" in body)


def error_body_for_status(code: str, message: str, details: Any, status_code: int) -> dict[str, Any]:
    """Genie's own voice: ``{"error": {"code", "message", "details"}}``."""
    return error_body(code, message, details)


def json_error_view(status_code: int, code: str, message: str):
    @csrf_exempt  # an error answer changes nothing; a CSRF refusal would hide the real error
    def view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
        return JsonResponse(error_body(code, message), status=status_code)

    return view


handler400 = json_error_view(400, "bad_request", "Bad request.")
handler403 = json_error_view(403, "permission_denied", "Permission denied.")
handler404 = json_error_view(404, "not_found", "Not found.")
handler500 = json_error_view(500, "internal_error", "An internal error occurred.")


def csrf_failure(request: HttpRequest, reason: str = "") -> JsonResponse:
    return JsonResponse(error_body("csrf_failed", f"CSRF verification failed: {reason}"), status=403)
