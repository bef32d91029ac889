"""What every protocol shares: its voice for every error (404 and 401 included), the agent
a request names (by handle or uuid), the session a path names (through the one access
rule) and the run a protocol's id names, ids parsed without a 500, and a validation error's details as a flat list of the
fields it refuses (``field_errors``: each protocol's voice writes them its own way).

A protocol is a package (``serializers.py``, ``views.py``, ``urls.py``) whose views mix in
``ProtocolView`` with their ``error_voice`` and call the services of ``chat`` and ``runs``
(a turn: ``chat.services.start_turn`` answered by ``runs.handoff.answer_turn``), never
another protocol's or the canonical views."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from django.db.models import QuerySet
from rest_framework.request import Request

from chat.models import Agent, Session
from genie.auth import Caller
from genie.exceptions import ErrorVoice
from runs.models import Run


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


def find_run(caller: Caller, value: Any, *, missing: Exception) -> Run:
    """The run ``value`` names (a uuid, or its hex; None names none) in a session
    ``caller`` reaches (the one access rule), with its session, agent and messages; else
    ``missing`` (another caller's run is as unknown as a made-up id; a compaction run is
    no reply a protocol names)."""
    run_uuid = parse_uuid(value) if value is not None else None
    found = None
    if run_uuid is not None:
        runs = Run.objects.turns().filter(session__in=Session.objects.reachable_by(caller))
        found = runs.select_related("session__agent", "user_message", "agent_message").filter(uuid=run_uuid).first()
    if found is None:
        raise missing
    return found


@dataclass(frozen=True)
class FieldError:
    """One error of a validation error: where it is (``path``: a field's name, or a
    position in a dict DRF keys by index, as a string; a position in a list of nested
    objects as an int), its message and DRF's code for it (None when it has none)."""

    path: tuple[str | int, ...]
    message: str
    code: str | None


def field_errors(details: Any) -> list[FieldError]:
    """Every error of a DRF ``ValidationError.detail`` (the dict the one error path gives a
    voice; anything else names no field: none), in order, nested fields and list positions
    in ``path``. Each protocol writes them its own way: seed 001 every one as ``{field,
    message}`` with a dotted field, OpenAI the first as ``param`` in its notation
    (``messages[1].content``)."""
    return _flatten(details, ()) if isinstance(details, dict) else []


def _flatten(details: Any, path: tuple[str | int, ...]) -> list[FieldError]:
    if isinstance(details, dict):
        return [error for name, value in details.items() for error in _flatten(value, (*path, str(name)))]
    if isinstance(details, list):
        errors: list[FieldError] = []
        for index, item in enumerate(details):
            if isinstance(item, dict | list):
                errors += _flatten(item, (*path, index))  # a nested object's (or list's) own errors
            else:
                errors.append(FieldError(path, str(item), getattr(item, "code", None)))
        return errors
    return [FieldError(path, str(details), getattr(details, "code", None))]
