"""OpenAI's voice for the one error path, shared by ``/v1`` and the Responses API:
``{"error": {"message", "type", "param", "code"}}``, an invalid field named in ``param`` in
OpenAI's notation (``messages[1].content``), and its OpenAPI description."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import status

from chat.exceptions import ModelNotFound
from protocols.base import field_errors


def openai_error(code: str, message: str, details: Any, status_code: int) -> dict[str, Any]:
    """The one error path's answer in OpenAI's shape: ``{"error": {"message", "type",
    "param", "code"}}``. An invalid field names itself in ``param``."""
    param = None
    if code == "validation_error" and details:
        param, message, code = first_invalid(details)
    elif isinstance(details, dict):
        param = details.get("param")
    if status_code == status.HTTP_401_UNAUTHORIZED:
        code = "invalid_api_key"
    elif status_code == status.HTTP_429_TOO_MANY_REQUESTS:
        code = "rate_limit_exceeded"
    kind = "server_error" if status_code >= 500 else "requests" if status_code == 429 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def model_not_found(model: str) -> ModelNotFound:
    """404 ``model_not_found``, as OpenAI words it."""
    return ModelNotFound(
        f"The model `{model}` does not exist or you do not have access to it.", details={"param": "model"}
    )


def openai_param(path: tuple[str | int, ...]) -> str:
    """A field's path in OpenAI's notation: ``messages[1].content`` (a serializer's
    ``non_field_errors`` name no field)."""
    param = ""
    for name in path:
        if isinstance(name, int) or name.isdigit():
            param += f"[{name}]"
        elif name != "non_field_errors":
            param += f".{name}" if param else name
    return param


def first_invalid(details: Any) -> tuple[str | None, str, str]:
    """The first error of a DRF validation error as ``(param, message, code)``."""
    errors = field_errors(details)
    if not errors:
        return None, "The request is invalid.", "invalid_value"
    first = errors[0]
    param = openai_param(first.path)
    code = first.code or "invalid_value"
    if code == "unknown_field":
        return param, f"Unrecognized request argument supplied: {param}", "unknown_parameter"
    return param or None, f"{param}: {first.message}" if param else first.message, code


OPENAI_ERROR = {
    "type": "object",
    "description": "OpenAI's error shape.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "example": "invalid_request_error"},
                "param": {"type": "string", "nullable": True},
                "code": {"type": "string", "nullable": True},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
    "required": ["error"],
}


def openai_error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(OPENAI_ERROR, description=description)


COMMON_OPENAI_ERRORS = {
    401: openai_error_response("`invalid_api_key`: no key, or an invalid, revoked or expired one."),
    403: openai_error_response(
        "A credential that may not do this (`publishable_key_forbidden`, `origin_not_allowed`)."
    ),
    429: openai_error_response("`rate_limit_exceeded`: too many requests or open streams; see Retry-After."),
}
