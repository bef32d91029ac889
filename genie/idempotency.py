"""``Idempotency-Key`` on POSTs: the same key and body within GENIE_IDEMPOTENCY_TTL replays
the first request's answer and creates nothing; the same key with another body is 422.

A key is scoped to its credential and, for a publishable key (one key serves every visitor
of a site), to the visitor's session secret: one visitor's key never replays another's
request. What a write keeps is what it created (a turn keeps its session and run, see
``chat.services.start_turn``), re-read through the access rule on replay, never a
rendered answer: a new session's client secret is shown once and kept nowhere.
``run_idempotently`` keeps a rendered answer, for the writes whose answer holds no secret
(an upload, a rating). Keys older than the TTL are purged hourly (``purge_expired_keys``,
the ``genie.purge_idempotency_keys`` task)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from genie.auth import Caller
from genie.exceptions import GenieError
from genie.models import IdempotencyKey, Team

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
    """Whose keys these are: a user, a key, or one visitor of a publishable key (its key
    and a digest of the session secret it shows; a visitor with none yet is the key's)."""
    if caller.token is None:
        return f"user:{caller.user.pk}"
    identity = f"token:{caller.token.uuid}"
    if caller.is_publishable and caller.session_secret:
        identity += ":" + hashlib.sha256(caller.session_secret.encode()).hexdigest()[:32]
    return identity


@dataclass
class IdempotentRequest:
    """A POST's ``Idempotency-Key``, scoped to its caller, with the request's fingerprint.

    ``claim`` and ``record`` run in the transaction of the writes the key guards, so an
    error rolls the key back with them and a retry runs again."""

    team: Team
    caller: str
    key: str
    fingerprint: str
    _row: IdempotencyKey | None = field(default=None, repr=False)

    @classmethod
    def of(cls, request: Request) -> IdempotentRequest | None:
        """The request's key (None without one); ``IdempotencyKeyInvalid`` (400) for a bad one."""
        key = request.META.get(HEADER)
        if key is None:
            return None
        if not 0 < len(key) <= 255:
            raise IdempotencyKeyInvalid()
        caller: Caller = request.auth
        return cls(team=caller.team, caller=caller_identity(caller), key=key, fingerprint=request_fingerprint(request))

    def claim(self) -> IdempotencyKey | None:
        """Hold the key for this request (None: go on, then ``record``), or the first
        request's record (it committed: a concurrent retry waits for it on the unique
        index). ``IdempotencyKeyReused`` (422) when that request had another body."""
        scope = {"team": self.team, "caller": self.caller, "key": self.key}
        IdempotencyKey.objects.filter(**scope, created_at__lt=timezone.now() - settings.GENIE_IDEMPOTENCY_TTL).delete()
        try:
            with transaction.atomic():
                self._row = IdempotencyKey.objects.create(**scope, request_hash=self.fingerprint)
        except IntegrityError:
            existing = IdempotencyKey.objects.get(**scope)
            if existing.request_hash != self.fingerprint:
                raise IdempotencyKeyReused() from None
            return existing
        return None

    def record(self, body: dict[str, Any], status_code: int | None = None) -> None:
        """What the request did, for its replays (no secret: the table keeps it in clear)."""
        if self._row is None:
            raise RuntimeError("record() before claim()")
        self._row.response_status, self._row.response_body = status_code, body
        self._row.save(update_fields=["response_status", "response_body"])


def run_idempotently(request: Request, handler: Callable[[], Response]) -> Response:
    """Run ``handler`` once per key and replay its answer (for answers that hold no
    secret: a new session's writes go through ``IdempotentRequest`` and keep their ids)."""
    idempotency = IdempotentRequest.of(request)
    if idempotency is None:
        return handler()
    with transaction.atomic():
        first = idempotency.claim()
        if first is not None:
            replay = Response(first.response_body, status=first.response_status)
            replay["Idempotent-Replayed"] = "true"
            return replay
        response = handler()
        idempotency.record(response.data, response.status_code)
    return response


def purge_expired_keys() -> int:
    """Delete the keys older than GENIE_IDEMPOTENCY_TTL (a reused expired key is also
    dropped when it comes back, in ``run_idempotently``); returns how many."""
    return IdempotencyKey.objects.filter(created_at__lt=timezone.now() - settings.GENIE_IDEMPOTENCY_TTL).delete()[0]
