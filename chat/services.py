"""Writes for sessions and messages. Each one is a single transaction; the run's task
is enqueued only after commit (see ``runs.services.queue_run``)."""

from __future__ import annotations

import hashlib
import uuid
from functools import partial
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from chat import files, tasks
from chat.exceptions import (
    AgentInUse,
    ChatIdTaken,
    FileTooLarge,
    MessageCompacted,
    MessageReplaced,
    NotAReply,
    NotAUserMessage,
    NotTheLastReply,
    UnsupportedFileType,
)
from chat.models import Agent, Message, Session, Upload
from genie.auth import Caller
from genie.connections import require_redis
from genie.idempotency import IdempotencyKeyReused, IdempotentRequest
from genie.models import Team
from runs import services as run_services
from runs.models import Run, RunEvent
from runs.options import TurnOptions
from runs.services import ToolAnswer, Turn


def start_turn(
    *,
    caller: Caller,
    idempotency: IdempotentRequest | None = None,
    agent: Agent | None = None,
    session: Session | None = None,
    text: str = "",
    metadata: dict[str, Any] | None = None,
    ui_context: dict[str, Any] | None = None,
    scan_context: dict[str, Any] | None = None,
    file_ids: list[uuid.UUID] | None = None,
    on_active_run: str = "reject",
    title: str = "",
    user_id: str = "",
    chat_id: str = "",
    history: list[tuple[str, str]] | None = None,
    regenerate: Message | None = None,
    check_last: bool = False,
    edit: Message | None = None,
    run: Run | None = None,
    answers: list[ToolAnswer] | None = None,
    after_seq: int | None = None,
    options: TurnOptions | None = None,
    compact: int | None = None,
) -> Turn:
    """The one way a turn starts, whatever the protocol. One of:

    - ``agent``: a new session with it (``title``, ``user_id``, ``chat_id``, ``history``:
      see ``start_session``) and its first user message ``text``;
      ``options``: what the client asked of the turn (``runs.options``);
    - ``session``: its next user message ``text`` (``on_active_run``: the busy-session
      policy, ``make_way_for_turn``); with ``regenerate`` (a reply), that reply's user
      message answered again instead (``check_last``: only the chat's latest reply); with
      ``edit`` (a user message), ``text`` replacing it and what followed it; with ``answers`` to its paused ``run``, the answers
      applied (``apply_answers``; ``options``: the run's next model calls') and the run
      going on (its stream from ``after_seq``); with ``compact`` (how many messages stay
      verbatim), a compaction run instead of a user message (``compact_session``).

    Refuses up front when Redis is down (503, nothing written). With ``idempotency``, the
    first request with its key records the turn's session and run in the same
    transaction; a replay returns that turn (``replayed``), re-read through the access
    rule: a caller that cannot reach it (another visitor of a publishable key) is 422
    ``idempotency_key_reused`` and learns nothing of it."""
    with transaction.atomic():
        first = idempotency.claim() if idempotency is not None else None
        if first is not None:
            return replayed_turn(caller=caller, recorded=first.response_body, after_seq=after_seq)
        require_redis()
        client_secret = None
        if session is None:
            stored_before = 0
            try:
                # No savepoint: a taken chat id fails the whole request (ChatIdTaken), and a
                # savepoint and its release were two more round trips on every new chat's POST.
                with transaction.atomic(savepoint=False):
                    session, run, client_secret = start_session(
                        caller=caller,
                        agent=agent,
                        text=text,
                        title=title,
                        metadata=metadata,
                        user_id=user_id,
                        ui_context=ui_context,
                        scan_context=scan_context,
                        file_ids=file_ids,
                        chat_id=chat_id,
                        history=history,
                        options=options,
                    )
            except IntegrityError as exc:  # the chat id, just taken by a parallel request (or unreachable)
                if not chat_id:
                    raise
                raise ChatIdTaken() from exc
        elif run is not None:
            stored_before = None
            run_services.apply_answers(run=run, answers=answers or [], decided_by=caller.label, options=options)
        else:
            stored_before = RunEvent.objects.filter(session=session).aggregate(m=Max("seq"))["m"] or 0
            if compact is not None:
                run = compact_session(session=session, keep_last=compact)
            elif regenerate is not None:
                run = regenerate_reply(session=session, reply=regenerate, check_last=check_last)
            elif edit is not None:
                run = edit_message(session=session, message=edit, text=text)
            else:
                run = post_message(
                    session=session,
                    text=text,
                    metadata=metadata,
                    ui_context=ui_context,
                    scan_context=scan_context,
                    file_ids=file_ids,
                    on_active_run=on_active_run,
                    options=options,
                )
        if idempotency is not None:
            idempotency.record({"session": str(session.uuid), "run": str(run.uuid)})
    return Turn(session, run, client_secret, stored_before=stored_before, after_seq=after_seq)


def replayed_turn(*, caller: Caller, recorded: Any, after_seq: int | None = None) -> Turn:
    """The turn a first request recorded, if ``caller`` reaches its session."""
    session = None
    if isinstance(recorded, dict) and "run" in recorded:
        session = Session.objects.reachable_by(caller).select_related("agent").filter(uuid=recorded["session"]).first()
    if session is None:
        raise IdempotencyKeyReused("This Idempotency-Key was used for a session this request cannot reach.")
    run = session.runs.select_related("session__agent", "agent_message").get(uuid=recorded["run"])
    return Turn(session, run, replayed=True, after_seq=after_seq)


def open_session_once(
    *, caller: Caller, agent: Agent, idempotency: IdempotentRequest | None = None, **fields: Any
) -> tuple[Session, str | None, bool]:
    """``open_session`` once per ``Idempotency-Key``: the key records the session (never
    its secret); a replay returns it (with no secret) when ``caller`` reaches it, else is
    422 ``idempotency_key_reused``. Returns the session, its secret and whether it was
    replayed."""
    with transaction.atomic():
        first = idempotency.claim() if idempotency is not None else None
        if first is not None:
            recorded = first.response_body
            sessions = Session.objects.reachable_by(caller).select_related("agent", "team")
            found = sessions.filter(uuid=recorded["session"]).first() if isinstance(recorded, dict) else None
            if found is None:
                raise IdempotencyKeyReused("This Idempotency-Key was used for a session this request cannot reach.")
            return found, None, True
        session, client_secret = open_session(caller=caller, agent=agent, **fields)
        if idempotency is not None:
            idempotency.record({"session": str(session.uuid)})
    return session, client_secret, False


# No savepoint of its own inside a caller's transaction (start_turn's): two round trips
# on every new chat's POST; a failure here fails the caller's transaction anyway.
@transaction.atomic(savepoint=False)
def start_session(
    *,
    caller: Caller,
    agent: Agent,
    text: str,
    title: str = "",
    metadata: dict[str, Any] | None = None,
    user_id: str = "",
    ui_context: dict[str, Any] | None = None,
    scan_context: dict[str, Any] | None = None,
    file_ids: list[uuid.UUID] | None = None,
    chat_id: str = "",
    history: list[tuple[str, str]] | None = None,
    options: TurnOptions | None = None,
) -> tuple[Session, Run, str | None]:
    """Create a session with its first user message and a queued run (``chat_id``: an
    AI SDK client's own id for it; a taken one raises IntegrityError).

    ``history`` (``(sender_role, text)`` pairs, oldest first) is a conversation held
    elsewhere until now, as an OpenAI-compatible client resends it: stored as complete
    messages before the new turn, so the agent reads it as the session's earlier turns.
    ``options``: what the client asked of the turn (``runs.options``).

    A new session has no uploads of its own yet: ``file_ids`` name files of sessions the
    caller reaches, copied into the new one (files go with their session).
    Returns the session, the run and, for a publishable key, the session's client
    secret (shown once).
    """
    sources = _find_uploads(Upload.objects.filter(session__in=Session.objects.reachable_by(caller)), file_ids)
    session, client_secret = open_session(
        caller=caller, agent=agent, title=title, metadata=metadata, user_id=user_id, chat_id=chat_id
    )
    Message.objects.bulk_create(
        Message(session=session, sender_role=role, text=text, status=Message.Status.COMPLETE)
        for role, text in history or []
    )
    uploads = [_copy_upload(upload, session=session) for upload in sources]
    run = _add_turn(
        session=session,
        text=text,
        metadata=metadata or {},
        ui_context=ui_context,
        scan_context=scan_context,
        uploads=uploads,
        options=options,
    )
    return session, run, client_secret


# No savepoint of its own: inside start_session (every new session's POST) one cost two
# round trips, and a failure here fails the caller's transaction anyway.
@transaction.atomic(savepoint=False)
def open_session(
    *,
    caller: Caller,
    agent: Agent,
    title: str = "",
    metadata: dict[str, Any] | None = None,
    user_id: str = "",
    chat_id: str = "",
) -> tuple[Session, str | None]:
    """Create a session with no turn yet (seed 001 creates a conversation, then sends
    its first message; ``chat_id``: an AI SDK client's own id for it). Returns it and,
    for a publishable key, its client secret (shown once)."""
    session = Session(
        team=caller.team,
        agent=agent,
        owner=caller.user if caller.is_user else None,
        user_id=user_id,
        created_by_token=caller.token,
        title=title.strip(),
        metadata=metadata or {},
        chat_id=chat_id,
    )
    client_secret = session.issue_client_secret() if caller.is_publishable else None
    session.save()
    return session, client_secret


@transaction.atomic
def post_message(
    *,
    session: Session,
    text: str,
    metadata: dict[str, Any] | None = None,
    ui_context: dict[str, Any] | None = None,
    scan_context: dict[str, Any] | None = None,
    file_ids: list[uuid.UUID] | None = None,
    on_active_run: str = "reject",
    options: TurnOptions | None = None,
) -> Run:
    """Add the next user turn. A session runs one turn at a time: with a run still
    active the default is to refuse (``RunActive``); see ``make_way_for_turn``.
    ``file_ids`` name uploads of this session (any other is a 400, and nothing is created)."""
    session = Session.objects.select_for_update().select_related("agent").get(pk=session.pk)
    uploads = _find_uploads(session.uploads.all(), file_ids)
    run_services.make_way_for_turn(session=session, on_active_run=on_active_run)
    run = _add_turn(
        session=session,
        text=text,
        metadata=metadata or {},
        ui_context=ui_context,
        scan_context=scan_context,
        uploads=uploads,
        options=options,
    )
    session.touch()
    return run


@transaction.atomic
def compact_session(*, session: Session, keep_last: int) -> Run:
    """A queued compaction run: the worker summarises every message of the session's prompt
    but the last ``keep_last`` (``runs.loop.execute_compaction``). Refuses (``RunActive``)
    while a run is active; a turn posted while it runs meets the busy-session policy."""
    session = Session.objects.select_for_update().select_related("agent").get(pk=session.pk)
    run_services.make_way_for_turn(session=session)
    return run_services.queue_compaction(session=session, keep_last=keep_last)


@transaction.atomic
def regenerate_reply(*, session: Session, reply: Message, check_last: bool = False) -> Run:
    """Answer ``reply``'s user message again: a new run with a new agent message. The old
    reply stays in the transcript (with its rating) marked ``replaced_by`` the new one, so
    later prompts and the AI SDK history leave it out. Refuses (``RunActive``) while a run
    is active; with ``check_last``, refuses a reply that is not the chat's latest one
    (``NotTheLastReply``: what follows it would answer a reply that no longer stands)."""
    session = Session.objects.select_for_update().select_related("agent").get(pk=session.pk)
    if not reply.is_agent:
        raise NotAReply()
    if reply.replaced_by_id is not None:
        raise MessageReplaced(details={"replaced_by": str(reply.replaced_by.uuid)})
    if check_last and session.messages.current().filter(sender_role=Message.SenderRole.AGENT).last() != reply:
        raise NotTheLastReply()
    run_services.make_way_for_turn(session=session)
    user_message = Run.objects.select_related("user_message").get(agent_message=reply).user_message
    run = run_services.queue_run(session=session, user_message=user_message)
    Message.objects.filter(pk=reply.pk).update(replaced_by=run.agent_message, updated_at=timezone.now())
    session.touch()
    return run


@transaction.atomic
def edit_message(*, session: Session, message: Message, text: str) -> Run:
    """A new turn from an edited user message, as chat apps do: a new user message with
    ``text`` (and the same attachments, metadata and contexts) and a queued run. The edited
    message and every message after it stay in the transcript, marked ``replaced_by`` the
    new user message: later prompts leave them out, and the stored history says what was
    said and what replaced it. Refuses while a run is active (``RunActive``), and for a
    message a compaction summarised (``MessageCompacted``: the summary would still say it)."""
    session = Session.objects.select_for_update().select_related("agent").get(pk=session.pk)
    if message.sender_role != Message.SenderRole.USER:
        raise NotAUserMessage()
    if message.replaced_by_id is not None:
        raise MessageReplaced(details={"replaced_by": str(message.replaced_by.uuid)})
    if session.compactions.filter(upto_message__created_at__gte=message.created_at).exists():
        raise MessageCompacted()
    run_services.make_way_for_turn(session=session)
    later = session.messages.current().filter(
        Q(created_at__gt=message.created_at) | Q(created_at=message.created_at, id__gte=message.pk)
    )
    replaced = list(later.values_list("pk", flat=True))
    run = _add_turn(
        session=session,
        text=text,
        metadata=message.metadata,
        ui_context=message.ui_context,
        scan_context=message.scan_context,
        uploads=list(message.attachments.all()),
    )
    Message.objects.filter(pk__in=replaced).update(replaced_by=run.user_message, updated_at=timezone.now())
    session.touch()
    return run


def _find_uploads(candidates: Any, file_ids: list[uuid.UUID] | None) -> list[Upload]:
    """The uploads named, in the order named; a 400 naming the ids not among ``candidates``."""
    if not file_ids:
        return []
    found = {upload.file_id: upload for upload in candidates.filter(file_id__in=file_ids)}
    missing = [str(file_id) for file_id in file_ids if file_id not in found]
    if missing:
        raise ValidationError(
            {"file_ids": [f"No such file in this session: {', '.join(missing)}."]}, code="unknown_file"
        )
    return [found[file_id] for file_id in dict.fromkeys(file_ids)]


def _copy_upload(upload: Upload, *, session: Session) -> Upload:
    with upload.file.open("rb") as source:
        content = source.read()
    copy = Upload(
        session=session,
        filename=upload.filename,
        content_type=upload.content_type,
        size=upload.size,
        sha256=upload.sha256,
        text=upload.text,
        text_cut=upload.text_cut,
    )
    copy.file.save(upload.filename, ContentFile(content), save=False)
    copy.save()
    return copy


def _add_turn(
    *,
    session: Session,
    text: str,
    metadata: dict[str, Any],
    ui_context: dict[str, Any] | None,
    scan_context: dict[str, Any] | None = None,
    uploads: list[Upload] | None = None,
    options: TurnOptions | None = None,
) -> Run:
    agent = session.agent
    user_message = Message(
        session=session,
        sender_role=Message.SenderRole.USER,
        text=text,
        status=Message.Status.COMPLETE,
        provider=agent.provider,
        model_id=agent.model,
        temperature=agent.temperature,
        metadata=metadata,
        ui_context=ui_context,
        scan_context=scan_context,
    )
    # Stored by queue_run, with the reply's message in one INSERT; its attachments after.
    run = run_services.queue_run(session=session, user_message=user_message, options=options)
    if uploads:
        user_message.attachments.set(uploads)
    return run


def store_upload(*, session: Session, file: IO[bytes], filename: str) -> Upload:
    """Store an uploaded file in the session: its type judged from its bytes (415 outside
    the list), at most GENIE_MAX_UPLOAD_BYTES (413), its text extracted once for the
    model: a text or JSON file's here, a PDF's by the ``chat.extract_upload_text`` task
    (enqueued after commit; pypdf is slow on crafted files and this is a request thread).
    The bytes are written to storage before the row; a failed row leaves them orphaned
    rather than a row without bytes."""
    data = files.read_upload(file)
    if len(data) > settings.GENIE_MAX_UPLOAD_BYTES:
        raise FileTooLarge(details={"limit_bytes": settings.GENIE_MAX_UPLOAD_BYTES})
    content_type = files.sniff_content_type(data[:16], whole=data)
    if content_type is None:
        raise UnsupportedFileType()
    later = content_type == "application/pdf"
    text, cut = ("", False) if later else files.extract_text(data, content_type)
    upload = Upload(
        session=session,
        filename=(filename or "file")[-255:],
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        text=text,
        text_cut=cut,
        text_ready=not later,
    )
    upload.file.save(upload.filename, ContentFile(data), save=False)
    upload.save()
    if later:
        transaction.on_commit(partial(tasks.extract_upload_text.delay, upload.pk))
    return upload


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
