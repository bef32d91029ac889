"""Writes for sessions and messages. Each one is a single transaction; the run's task
is enqueued only after commit (see ``runs.services.queue_run``)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from chat.exceptions import AgentInUse
from chat.models import Agent, Message, Session
from genie.auth import Caller
from genie.models import Team
from runs import services as run_services
from runs.models import Run


@transaction.atomic
def start_session(
    *,
    caller: Caller,
    agent: Agent,
    text: str,
    title: str = "",
    metadata: dict[str, Any] | None = None,
    user_id: str = "",
    ui_context: dict[str, Any] | None = None,
) -> tuple[Session, Run, str | None]:
    """Create a session with its first user message and a queued run.

    Returns the session, the run and, for a publishable key, the session's client
    secret (shown once).
    """
    session = Session(
        team=caller.team,
        agent=agent,
        owner=caller.user if caller.is_user else None,
        user_id=user_id,
        created_by_token=caller.token,
        title=title.strip(),
        metadata=metadata or {},
    )
    client_secret = session.issue_client_secret() if caller.is_publishable else None
    session.save()
    run = _add_turn(session=session, text=text, metadata=metadata or {}, ui_context=ui_context)
    return session, run, client_secret


@transaction.atomic
def post_message(
    *,
    session: Session,
    text: str,
    metadata: dict[str, Any] | None = None,
    ui_context: dict[str, Any] | None = None,
    on_active_run: str = "reject",
) -> Run:
    """Add the next user turn. A session runs one turn at a time: with a run still
    active the default is to refuse (``RunActive``); see ``make_way_for_turn``."""
    session = Session.objects.select_for_update().select_related("agent").get(pk=session.pk)
    run_services.make_way_for_turn(session=session, on_active_run=on_active_run)
    run = _add_turn(session=session, text=text, metadata=metadata or {}, ui_context=ui_context)
    session.touch()
    return run


def _add_turn(*, session: Session, text: str, metadata: dict[str, Any], ui_context: dict[str, Any] | None) -> Run:
    agent = session.agent
    user_message = Message.objects.create(
        session=session,
        sender_role=Message.SenderRole.USER,
        text=text,
        status=Message.Status.COMPLETE,
        provider=agent.provider,
        model_id=agent.model,
        temperature=agent.temperature,
        metadata=metadata,
        ui_context=ui_context,
    )
    return run_services.queue_run(session=session, user_message=user_message)


@transaction.atomic
def update_session(*, session: Session, **changes: Any) -> Session:
    fields = ["updated_at"]
    if "title" in changes:
        session.title = changes["title"].strip()
        session.title_generated = False
        fields += ["title", "title_generated"]
    if "metadata" in changes:
        session.metadata = changes["metadata"]
        fields.append("metadata")
    session.save(update_fields=fields)
    return session


def delete_session(*, session: Session) -> None:
    """Stop what runs, then delete the session with its messages, feedback and events."""
    run_services.stop_session(session=session)
    with transaction.atomic():
        session.delete()


@transaction.atomic
def save_agent(*, team: Team, agent: Agent | None = None, **fields: Any) -> Agent:
    agent = agent or Agent(team=team)
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.save()
    return agent


@transaction.atomic
def remove_agent(*, agent: Agent, force: bool = False) -> str:
    """Delete an agent without sessions; with sessions, archive it when ``force``
    (its transcripts stay), else raise ``AgentInUse``. Returns what was done."""
    if not agent.sessions.exists():
        agent.delete()
        return "deleted"
    if not force:
        raise AgentInUse(details={"sessions": agent.sessions.count()})
    agent.archived_at = timezone.now()
    agent.is_default = False
    agent.save(update_fields=["archived_at", "is_default", "updated_at"])
    return "archived"
