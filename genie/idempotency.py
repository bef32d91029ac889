"""``Idempotency-Key`` on POSTs: the same key and body within GENIE_IDEMPOTENCY_TTL replays
the first response and creates nothing; the same key with another body is 422."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from genie.auth import Caller
from genie.exceptions import GenieError
from genie.models import IdempotencyKey

HEADER = "HTTP_IDEMPOTENCY_KEY"


class IdempotencyKeyReused(GenieError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = "This Idempotency-Key was used with a different request."


class IdempotencyKeyInvalid(GenieError):
    default_code = "invalid_idempotency_key"
    default_detail = "Idempotency-Key must be 1 to 255 characters."


def request_fingerprint(request: Request) -> str:
    """The method, path and body; a multipart file counts by its name and its content (a
    SHA-256 of its bytes, read in chunks), so the same key with another file is 422."""
    fields = {key: request.data.getlist(key) for key in request.data} if hasattr(request.data, "getlist") else None
    body = (
        json.dumps(fields if fields is not None else request.data, sort_keys=True, default=str) if request.data else ""
    )
    digest = hashlib.sha256(f"{request.method} {request.path}\n{body}".encode())
    for name in sorted(request.FILES):
        for file in request.FILES.getlist(name):
            digest.update(f"\nfile {name} {file.name} {file.size}\n".encode())
            for chunk in file.chunks():
                digest.update(chunk)
            file.seek(0)
    return digest.hexdigest()


def caller_identity(caller: Caller) -> str:
    return f"token:{caller.token.uuid}" if caller.token is not None else f"user:{caller.user.pk}"


def run_idempotently(request: Request, handler: Callable[[], Response]) -> Response:
    """Run ``handler`` once per key. The key row is written in the same transaction as the
    handler's writes, so an error rolls both back and a retry runs again."""
    key = request.META.get(HEADER)
    if key is None:
        return handler()
    if not 0 < len(key) <= 255:
        raise IdempotencyKeyInvalid()
    caller: Caller = request.auth
    identity = caller_identity(caller)
    fingerprint = request_fingerprint(request)
    scope = {"team": caller.team, "caller": identity, "key": key}
    with transaction.atomic():
        IdempotencyKey.objects.filter(**scope, created_at__lt=timezone.now() - settings.GENIE_IDEMPOTENCY_TTL).delete()
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(**scope, request_hash=fingerprint)
        except IntegrityError:
            # A first request with this key committed (we waited for it on the index).
            existing = IdempotencyKey.objects.get(**scope)
            if existing.request_hash != fingerprint:
                raise IdempotencyKeyReused() from None
            replay = Response(existing.response_body, status=existing.response_status)
            replay["Idempotent-Replayed"] = "true"
            return replay
        response = handler()
        record.response_status = response.status_code
        record.response_body = response.data
        record.save(update_fields=["response_status", "response_body"])
    return response
