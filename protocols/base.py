"""What every protocol shares: its voice for every error (404 and 401 included), the agent
a request names (by handle or uuid), the session a path names (through the one access
rule), and ids parsed without a 500.

A protocol is a package (``serializers.py``, ``views.py``, ``urls.py``) whose views mix in
``ProtocolView`` with their ``error_voice`` and call the services of ``chat`` and ``runs``
(a turn: ``chat.services.start_turn`` answered by ``runs.handoff.answer_turn``), never
another protocol's or the canonical views."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.db.models import QuerySet
from rest_framework.request import Request

from chat.models import Agent, Session
from genie.auth import Caller
from genie.exceptions import ErrorVoice


class ProtocolView:
    """Mixed into a protocol's DRF views (before the DRF base): every error the one error
    path answers (a 401, a 404, a 400 naming its fields) is in ``error_voice``; with
    ``json_always``, errors are JSON whatever the Accept header asks (a client that
    accepts only SSE still reads them) and a stream is the relay's."""

    error_voice: ClassVar[ErrorVoice]
    json_always: ClassVar[bool] = False

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:  # noqa: FBT001, FBT002
        return super().perform_content_negotiation(request, force=force or self.json_always)  # type: ignore[misc]


def parse_uuid(value: Any) -> uuid.UUID | None:
    """``value`` as a uuid, or None: a path or body that names no uuid is the protocol's
    404 or 400, never a 500."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def pick_agent(caller: Caller, name: str | None, *, missing: Exception, default: bool = True) -> Agent:
    """The agent ``caller`` may start a session with, named by handle or uuid (with
    ``default``, the team's default agent when none is named); else ``missing``, in the
    protocol's words."""
    agents = Agent.objects.startable_by(caller)
    agent = agents.pick(name) if default else agents.by_handle_or_uuid(name or "").first()
    if agent is None:
        raise missing
    return agent


def find_session(
    caller: Caller, value: Any, *, missing: Exception, sessions: QuerySet[Session] | None = None
) -> Session:
    """The session ``value`` names among those ``caller`` reaches (the one access rule,
    narrowed by ``sessions`` when given), with its agent; else ``missing`` (another
    caller's session is as unknown as a made-up id)."""
    reachable = Session.objects.reachable_by(caller) if sessions is None else sessions
    found = reachable.select_related("agent").named(value).first()
    if found is None:
        raise missing
    return found
