"""The OpenAPI description of Genie (drf-spectacular): the auth schemes, the one error
body, and the error responses every operation can give.

Views declare their success responses and their own domain errors (``error_response``);
the ``add_error_responses`` hook adds the errors that follow from an operation's shape
(a body or a page to validate, credentials, ids in the path), so no operation forgets them.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

ERROR_REF = {"$ref": "#/components/schemas/Error"}

# genie.exceptions.error_body: every 4xx and 5xx of the API and of the stream relay.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error: a stable code for programs, a message for people, and details or null.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "Stable, snake_case.", "example": "validation_error"},
                "message": {"type": "string"},
                "details": {
                    "description": "Null, or what the code needs: for validation_error the fields and their "
                    "errors; for run_active the run and its stream URL."
                },
            },
            "required": ["code", "message", "details"],
        }
    },
    "required": ["error"],
}

# Both credentials, for views that authenticate outside DRF (the stream relay).
SECURITY = [{"bearerAuth": []}, {"cookieAuth": []}]

COMMON_ERRORS = {
    "400": "Invalid input: `validation_error` (details name the fields), `malformed_request`.",
    "401": "No credentials, or invalid, revoked or expired ones (`not_authenticated`, `invalid_token`).",
    "403": "Credentials that may not do this: `secret_key_required`, `publishable_key_forbidden`, "
    "`origin_not_allowed`, `csrf_failed`, `no_team`.",
    "404": "No such object, or not the caller's (`not_found`): another team's or user's objects are 404, not 403.",
    "413": "The body is larger than allowed (`request_too_large`).",
    "415": "The body is not JSON (`unsupported_media_type`).",
    "429": "Too many requests or open streams for this credential (`rate_limited`); see Retry-After.",
}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}}

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255},
    location=OpenApiParameter.HEADER,
    description="1 to 255 characters. The same key and body within 24 h returns the first response "
    "and creates nothing; the same key with another body is 422.",
)
IDEMPOTENT_REPLAYED = OpenApiParameter(
    "Idempotent-Replayed",
    location=OpenApiParameter.HEADER,
    response=[200, 201],
    description="`true` when this is the stored response of an earlier request with the same Idempotency-Key.",
)


# Adapters that serve another document's API answer errors in its voice (a view's
# ``error_voice``, genie.exceptions): each registers the voice's body under its schema tag,
# and the operations under that tag document their errors with it.
ERROR_VOICES: dict[str, tuple[str, dict[str, Any]]] = {}


def register_error_voice(*, tag: str, component: str, schema: dict[str, Any]) -> None:
    """Document the errors of the operations tagged ``tag`` with ``schema`` (as ``component``)."""
    ERROR_VOICES[tag] = (component, schema)


def error_ref_of(operation: dict[str, Any]) -> dict[str, str]:
    """The error body an operation answers: its tag's voice, else Genie's ``Error``."""
    for tag in operation.get("tags", []):
        if tag in ERROR_VOICES:
            return {"$ref": f"#/components/schemas/{ERROR_VOICES[tag][0]}"}
    return ERROR_REF


def error_response(description: str) -> OpenApiResponse:
    """One documented error status of an operation: the error body, and which codes it carries."""
    return OpenApiResponse(response=ERROR_REF, description=description)


IDEMPOTENCY_ERRORS = {422: error_response("`idempotency_key_reused`: the Idempotency-Key came with another body.")}


def common_errors(path: str, operation: dict[str, Any]) -> list[str]:
    """The error statuses an operation can answer whatever it does."""
    has_body = "requestBody" in operation
    paginated = any(parameter["name"] == "page" for parameter in operation.get("parameters", []))
    secured = bool(operation.get("security"))
    statuses = []
    if has_body or paginated:  # other query parameters are lenient, or their views declare the 400
        statuses.append("400")
    if secured:
        statuses += ["401", "403", "429"]
    if "{" in path:
        statuses.append("404")
    if has_body:
        statuses += ["413", "415"]
    return statuses


def add_error_responses(*, result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook: the Error component, and the common error responses of every
    operation (a view's own description of a status wins)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for component, schema in ERROR_VOICES.values():
        schemas[component] = schema
    for path, item in result["paths"].items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            error_ref = error_ref_of(operation)
            for status, response in responses.items():  # a view's own errors (error_response), in its voice
                body = response.get("content", {}).get("application/json", {})
                if status[0] in "45" and body.get("schema") == ERROR_REF:
                    body["schema"] = error_ref
            for status in common_errors(path, operation):
                response = {
                    "description": COMMON_ERRORS[status],
                    "content": {"application/json": {"schema": error_ref}},
                }
                responses.setdefault(status, response)
            if "429" in responses:
                responses["429"].setdefault("headers", RETRY_AFTER)
            operation["responses"] = dict(sorted(responses.items()))
    return result


class StrictSerializerScheme(OpenApiSerializerExtension):
    """A ``StrictSerializer`` refuses fields it does not declare (400): no additional properties."""

    target_class = "genie.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {**auto_schema._map_basic_serializer(self.target, direction), "additionalProperties": False}


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "genie.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "Personal token, sk_live_ or pk_live_ key."}


class SessionCookieScheme(OpenApiAuthenticationExtension):
    target_class = "genie.auth.CsrfSessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}


class MetricsTokenScheme(OpenApiAuthenticationExtension):
    target_class = "genie.metrics.MetricsTokenAuthentication"
    name = "metricsToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "GENIE_METRICS_TOKEN, when it is set."}
