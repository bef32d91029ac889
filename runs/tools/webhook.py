"""Webhook tools: Genie POSTs the call as JSON to the tool's ``url``, signed with the
agent's ``webhook_secret``, through the egress guard; a 2xx JSON body is the output.

Signature header: ``Genie-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``.
A receiver recomputes the HMAC over the raw body it received and rejects old timestamps.
``Idempotency-Key: <call_id>`` (the body's ``call_id``) names the call: a call sent again
(an ``idempotent`` tool's, after its worker died) carries the same key, so a receiver can
de-duplicate on it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx
from rest_framework import serializers

from genie.egress import EgressRefused, guarded_client, validate_public_url
from runs.tools import CallContext, OfferedTool, ToolError, ToolSpec, offer_itself

MAX_RESPONSE_BYTES = 1_000_000


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookTool:
    kind = "webhook"
    runs_on_server = True
    required_fields = ("url",)

    def spec_fields(self) -> dict[str, serializers.Field]:
        return {
            "url": serializers.URLField(required=False, allow_blank=True, default="", validators=[validate_public_url]),
        }

    def offers(self, spec: ToolSpec) -> list[OfferedTool]:
        return offer_itself(spec)

    def call(self, offered: OfferedTool, arguments: dict[str, Any], context: CallContext) -> Any:
        body = json.dumps(
            {
                "call_id": context.call_id,
                "tool": offered.name,
                "input": arguments,
                "session_uuid": context.session_uuid,
                "run_uuid": context.run_uuid,
                "user_id": context.user_id,
            },
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Genie-Webhook/1",
            "Genie-Signature": signature(context.webhook_secret, int(time.time()), body),
            "Idempotency-Key": context.call_id,
        }
        if context.access_token:
            headers["Authorization"] = f"Bearer {context.access_token}"
        try:
            deadline = time.monotonic() + offered.spec.timeout
            with (
                guarded_client(timeout=offered.spec.timeout) as client,
                client.stream("POST", offered.spec.url, content=body, headers=headers) as response,
            ):
                content = read_bounded(response, deadline=deadline, timeout=offered.spec.timeout)
        except EgressRefused as exc:
            raise ToolError(exc.message) from exc
        except httpx.TimeoutException as exc:
            raise ToolError(f"The tool did not answer within {offered.spec.timeout:g} s.") from exc
        except httpx.HTTPError as exc:
            raise ToolError("The tool could not be reached.") from exc
        if not 200 <= response.status_code < 300:
            raise ToolError(f"The tool answered HTTP {response.status_code}.")
        try:
            return json.loads(content)
        except ValueError as exc:
            raise ToolError("The tool's answer is not JSON.") from exc


def read_bounded(response: httpx.Response, *, deadline: float, timeout: float) -> bytes:
    """The body, at most MAX_RESPONSE_BYTES and by the call's deadline: httpx's timeout
    bounds each read, not the whole answer (a byte every few seconds would go on)."""
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise ToolError(f"The tool's answer is larger than {MAX_RESPONSE_BYTES} bytes.")
        if time.monotonic() > deadline:
            raise ToolError(f"The tool did not answer within {timeout:g} s.")
        chunks.append(chunk)
    return b"".join(chunks)
