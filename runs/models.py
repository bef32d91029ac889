"""Agent runs (one turn each) and their durable event log."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from django.db import connections, models
from django.utils import timezone
from django.utils.functional import cached_property

from genie.encryption import EncryptedTextField, decrypt, encrypt
from runs.vocabulary import TEXT_DELTA

if TYPE_CHECKING:
    from genie.auth import Caller


@dataclass(frozen=True)
class SessionLock:
    """What a run's claim reads while it holds its session's row lock."""

    earlier_active: bool  # a run created before this one is still active
    stored_seq: int  # the session's last event id in PostgreSQL (0: none)


class OrderedJSONField(models.TextField):
    """JSON kept as its text: the keys keep the client's order (PostgreSQL's ``jsonb``
    sorts them, and the order of a schema's properties is the order a model writes
    them in)."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        return None if value is None else json.loads(value)

    def to_python(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    def get_prep_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value)

    def value_to_string(self, obj: models.Model) -> str:
        return json.dumps(self.value_from_object(obj))


class RunQuerySet(models.QuerySet["Run"]):
    def active(self) -> RunQuerySet:
        return self.filter(status__in=Run.ACTIVE_STATUSES)

    def turns(self) -> RunQuerySet:
        """The runs that answer a user message (no compaction): what a client reads as a
        session's runs, replies, titles and turn figures."""
        return self.filter(kind=Run.Kind.TURN)

    def stream_target(self, *, session_id: int, run_uuid: str) -> Run | None:
        """The run ``run_uuid`` of session ``session_id`` with the fields a stream's plan
        reads (``runs.sse.plan_backlog``), or None. Written as SQL: opening a stream is
        hot, and this queryset cost three times the query itself to compile."""
        sql = (
            f"SELECT id, uuid, status, created_at, session_id FROM {self.model._meta.db_table}"  # noqa: S608 (the table's name)
            " WHERE session_id = %s AND uuid = %s"
        )
        value = self.model._meta.get_field("uuid").get_db_prep_value(run_uuid, connections[self.db])
        return next(iter(self.raw(sql, [session_id, value])), None)

    def stream_span(self, *, session_id: int) -> tuple[Run, Run] | None:
        """What a session's stream covers when the client names no event: its first
        active turn, annotated with ``seq_before`` (the session's last event id of the runs
        created before it, or None), and its latest turn (whose finish ends the stream:
        queued turns behind the active one follow on); None when no turn is active. A
        compaction is no reply to resume: the stream of a session that only compacts is
        empty (204). One query, written as SQL for the same reason as ``stream_target``."""
        runs, events = self.model._meta.db_table, RunEvent._meta.db_table
        active = ", ".join(["%s"] * len(Run.ACTIVE_STATUSES))
        sql = (
            "SELECT r.id, r.uuid, r.status, r.created_at, r.session_id,"  # noqa: S608 (table names only)
            f" (SELECT MAX(e.seq) FROM {events} e JOIN {runs} p ON p.id = e.run_id"
            " WHERE e.session_id = r.session_id AND p.created_at < r.created_at) AS seq_before"
            f" FROM {runs} r WHERE r.session_id = %s AND ("
            f" r.id = (SELECT id FROM {runs} WHERE session_id = %s AND kind = %s AND status IN ({active})"
            " ORDER BY created_at, id LIMIT 1)"
            f" OR r.id = (SELECT id FROM {runs} WHERE session_id = %s AND kind = %s"
            " ORDER BY created_at DESC, id DESC LIMIT 1))"
        )
        turn = Run.Kind.TURN.value
        rows = list(self.raw(sql, [session_id, session_id, turn, *Run.ACTIVE_STATUSES, session_id, turn]))
        ordered = sorted(rows, key=lambda run: (run.created_at, run.pk))
        first_active = next((run for run in ordered if run.is_active), None)
        return None if first_active is None else (first_active, ordered[-1])

    def locked(self, pk: int) -> Run | None:
        """Run ``pk`` locked for the transaction (``FOR UPDATE OF`` its own row), or None.
        Not ``first()``: one primary key needs no ORDER BY, whose compiling cost more
        than the query on a turn's way to its first token."""
        return next(iter(self.select_for_update(of=("self",)).filter(pk=pk)), None)

    def locked_for_claim(self, pk: int) -> Run | None:
        """Run ``pk`` locked for the transaction (``FOR UPDATE OF`` its own row) with its
        session, the session's agent and the turn's two messages (None for a compaction) loaded, as
        ``select_related("session__agent", "agent_message", "user_message").locked(pk)``
        would, or None. One statement, built once per process: the worker's claim runs it
        before every turn's first token, and compiling that queryset cost 2 to 3 ms of CPU,
        several times the query."""
        connection = connections[self.db]
        sql, parts = _claim_statement(connection.alias)
        with connection.cursor() as cursor:
            cursor.execute(sql, [pk])
            row = cursor.fetchone()
        if row is None:
            return None
        built, start = [], 0
        for model, fields in parts:
            values = list(row[start : start + len(fields)])
            start += len(fields)
            if values[0] is None:  # no row joined (its primary key is first): a compaction's messages
                built.append(None)
                continue
            for i, (field, converters) in enumerate(fields):
                for convert in converters:  # as the ORM's compiler applies them (JSON, encrypted fields)
                    values[i] = convert(values[i], field.cached_col, connection)
            built.append(model.from_db(self.db, [field.attname for field, _ in fields], values))
        run, session, agent, agent_message, user_message = built
        session_field = Run._meta.get_field("session")
        session_field.set_cached_value(run, session)
        session_field.related_model._meta.get_field("agent").set_cached_value(session, agent)
        Run._meta.get_field("agent_message").set_cached_value(run, agent_message)
        Run._meta.get_field("user_message").set_cached_value(run, user_message)
        return run

    def lock_session_of(self, run: Run) -> SessionLock | None:
        """Lock ``run``'s session row (it serialises the session's event ids) and read
        whether a run created before ``run`` is still active and the session's last stored
        event id; None when the session is gone. The worker's claim runs this before every
        turn's first token: as SQL it costs a third of the annotated queryset."""
        connection = connections[self.db]
        runs, events = self.model._meta.db_table, RunEvent._meta.db_table
        sessions = self.model._meta.get_field("session").related_model._meta.db_table
        active = ", ".join(["%s"] * len(Run.ACTIVE_STATUSES))
        sql = (
            f"SELECT EXISTS(SELECT 1 FROM {runs} r WHERE r.session_id = s.id"  # noqa: S608 (table names only)
            f" AND r.status IN ({active}) AND r.created_at < %s),"
            f" (SELECT MAX(e.seq) FROM {events} e WHERE e.session_id = s.id)"
            f" FROM {sessions} s WHERE s.id = %s"
        )
        if connection.features.has_select_for_update:
            sql += " FOR UPDATE"
        created_at = self.model._meta.get_field("created_at").get_db_prep_value(run.created_at, connection)
        with connection.cursor() as cursor:
            cursor.execute(sql, [*Run.ACTIVE_STATUSES, created_at, run.session_id])
            row = cursor.fetchone()
        return None if row is None else SessionLock(earlier_active=bool(row[0]), stored_seq=row[1] or 0)

    def lease_expired(self, now: datetime) -> RunQuerySet:
        """Running runs whose worker stopped renewing its lease (presumed dead)."""
        return self.filter(status=Run.Status.RUNNING, lease_expires_at__lt=now)

    def action_expired(self, now: datetime) -> RunQuerySet:
        """Paused runs whose question went unanswered for GENIE_ACTION_TTL."""
        return self.filter(status=Run.Status.REQUIRES_ACTION, action_expires_at__lt=now)

    def ready_to_continue(self) -> RunQuerySet:
        """Paused runs whose every pending tool call has its answer."""
        return self.filter(status=Run.Status.REQUIRES_ACTION).exclude(tool_calls__status__in=ToolCall.OPEN_STATUSES)


@cache
def _claim_statement(alias: str) -> tuple[str, list[tuple[type[models.Model], list[tuple[models.Field, list]]]]]:
    """``Run.objects.locked_for_claim``'s SQL and, in its column order, each model's fields
    with their converters from database values."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    session_model = Run._meta.get_field("session").related_model
    agent_model = session_model._meta.get_field("agent").related_model
    message_model = Run._meta.get_field("agent_message").related_model
    parts = [
        (Run, "r"),
        (session_model, "s"),
        (agent_model, "a"),
        (message_model, "am"),
        (message_model, "um"),
    ]
    columns = ", ".join(
        f"{alias_}.{quote(field.column)}" for model, alias_ in parts for field in model._meta.concrete_fields
    )
    table = lambda model: quote(model._meta.db_table)  # noqa: E731
    sql = (
        f"SELECT {columns} FROM {table(Run)} r"  # noqa: S608 (table and column names only)
        f" JOIN {table(session_model)} s ON s.id = r.session_id"
        f" JOIN {table(agent_model)} a ON a.id = s.agent_id"
        # Outer joins: a compaction run has no messages.
        f" LEFT JOIN {table(message_model)} am ON am.id = r.agent_message_id"
        f" LEFT JOIN {table(message_model)} um ON um.id = r.user_message_id"
        " WHERE r.id = %s"
    )
    if connection.features.has_select_for_update_of:
        sql += " FOR UPDATE OF r"
    elif connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    return sql, [
        (
            model,
            [
                (field, connection.ops.get_db_converters(field.cached_col) + field.get_db_converters(connection))
                for field in model._meta.concrete_fields
            ],
        )
        for model, _ in parts
    ]


class Run(models.Model):
    """One agent turn: answers ``user_message`` by filling ``agent_message``; or (``kind``
    compaction) a session's summary written by its model (``POST sessions/{s}/compact``,
    ``runs.loop.execute_compaction``), which has no message of its own and keeps
    ``keep_last`` in ``state``. Both kinds share one lifecycle, event log and relay.

    The turn loop is a resumable state machine: ``state`` holds what it needs to
    continue in a new task (a pause for an approval or a client tool's result never
    blocks a worker). Every status change goes through the ``mark_*`` methods below (one
    row each); the end of a run, which touches its message and event log too, is
    ``runs.services.end_run``.

    ``state`` keys: ``steps`` (model calls made), ``text`` (the reply so far),
    ``messages`` (this turn's assistant and tool messages after the prompt), ``calls``
    (the call ids of the last step's tool calls, whose ``ToolCall`` rows hold their
    status and outcome), ``reported`` (call ids whose outcome is in the stream), ``usage``.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        REQUIRES_ACTION = "requires_action", "Requires action"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        STOPPED = "stopped", "Stopped"

    class Kind(models.TextChoices):
        TURN = "turn", "Turn"
        COMPACTION = "compaction", "Compaction"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING, Status.REQUIRES_ACTION)
    FINAL_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.STOPPED)

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    session = models.ForeignKey("chat.Session", on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.TURN)
    # Null for a compaction only: a turn always has both.
    user_message = models.ForeignKey("chat.Message", on_delete=models.CASCADE, related_name="+", null=True, blank=True)
    agent_message = models.OneToOneField(
        "chat.Message", on_delete=models.CASCADE, related_name="run", null=True, blank=True
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    state = models.JSONField(default=dict, blank=True)
    client_settings = OrderedJSONField(
        default=dict,
        blank=True,
        help_text="What the client asked of this turn's model calls (see runs.options.ClientSettings).",
    )
    client_tools = OrderedJSONField(
        default=list,
        blank=True,
        help_text="Tools the client offered for this turn ({name, description, input_schema}); it runs them.",
    )
    attempts = models.PositiveIntegerField(default=0)
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    action_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="A paused run fails (action_expired) when unanswered by then."
    )
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["session", "created_at"]),
            models.Index(fields=["status", "lease_expires_at"]),
        ]

    def __str__(self) -> str:
        return f"Run {self.uuid} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def is_finished(self) -> bool:
        return not self.is_active

    @property
    def is_compaction(self) -> bool:
        return self.kind == self.Kind.COMPACTION

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def timeline(self) -> list[tuple[str, datetime | None, float | None]]:
        """queued → started → first token → finished: each moment (None when it has not
        happened) and its seconds after the run was queued."""
        moments = [
            ("queued", self.created_at),
            ("started", self.started_at),
            ("first token", self.first_token_at),
            ("finished", self.finished_at),
        ]
        return [(label, at, (at - self.created_at).total_seconds() if at else None) for label, at in moments]

    @cached_property
    def text_part_id(self) -> str:
        """The id of the reply's text part in the stream (AI SDK ``text-start`` … ``text-end``),
        a compaction's summary's for a compaction; cached: every streamed token names it."""
        if self.is_compaction:
            return f"compaction-{self.session.uuid}"
        return f"pending-message-{self.agent_message.uuid}"

    @property
    def start_fields(self) -> dict[str, str]:
        """The ``start`` chunk's fields: the reply's message id (a compaction has none)."""
        return {} if self.agent_message_id is None else {"messageId": str(self.agent_message.uuid)}

    def mark_started(self, *, lease_owner: str, lease_until: datetime) -> None:
        """queued (or an answered pause, or a dead worker's lease) → running, leased."""
        self.status = self.Status.RUNNING
        self.started_at = self.started_at or timezone.now()
        self.lease_owner = lease_owner
        self.lease_expires_at = lease_until
        self.action_expires_at = None
        self.attempts += 1
        self.save(
            update_fields=[
                "status",
                "started_at",
                "lease_owner",
                "lease_expires_at",
                "action_expires_at",
                "attempts",
                "updated_at",
            ]
        )

    def renew_lease(self, *, worker_id: str, seconds: float) -> bool:
        """Extend the lease ``seconds`` from now, while ``worker_id`` still holds it (a run
        taken from its worker stays taken); returns whether it did. One UPDATE."""
        until = timezone.now() + timedelta(seconds=seconds)
        renewed = Run.objects.filter(pk=self.pk, lease_owner=worker_id).update(lease_expires_at=until)
        if renewed:
            self.lease_expires_at = until
        return bool(renewed)

    def store_first_token_at(self) -> None:
        """Store ``first_token_at`` (set when the first token went out). One UPDATE of that
        field alone: the row's other fields may have changed meanwhile (a stop request)."""
        Run.objects.filter(pk=self.pk).update(first_token_at=self.first_token_at)

    def mark_requeued(self) -> None:
        """running (its worker died before any text) → queued, for another worker."""
        self.status = self.Status.QUEUED
        self.lease_owner, self.lease_expires_at = "", None
        self.save(update_fields=["status", "lease_owner", "lease_expires_at", "updated_at"])

    def store_state(self, state: dict[str, Any]) -> None:
        """Store ``state`` while the run goes on (its worker's checkpoint: a step's tool
        calls are recorded before any executes, so a run re-queued after its worker died
        resumes them instead of asking the model again). One UPDATE of that field alone."""
        self.state = state
        Run.objects.filter(pk=self.pk).update(state=state)

    def mark_waiting(self, *, state: dict[str, Any], expires_at: datetime) -> None:
        """running → requires_action: the lease is given up (no worker holds a paused run)
        and ``state`` keeps what the continuation needs."""
        self.status = self.Status.REQUIRES_ACTION
        self.state = state
        self.lease_owner, self.lease_expires_at = "", None
        self.action_expires_at = expires_at
        self.save(
            update_fields=["status", "state", "lease_owner", "lease_expires_at", "action_expires_at", "updated_at"]
        )

    def mark_stop_requested(self) -> bool:
        """Note a stop request; returns False when one was already noted."""
        if self.stop_requested_at is not None:
            return False
        self.stop_requested_at = timezone.now()
        self.save(update_fields=["stop_requested_at", "updated_at"])
        return True

    def mark_finished(
        self,
        *,
        status: str,
        error_code: str = "",
        error_message: str = "",
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        """→ succeeded | failed | stopped. Named fields only: a stop request may have been
        stored meanwhile."""
        if status not in self.FINAL_STATUSES:
            raise ValueError(f"{status!r} is not a final status")
        self.status = status
        self.error_code = error_code
        self.error_message = error_message
        if prompt_tokens is not None:
            self.prompt_tokens = prompt_tokens
        if completion_tokens is not None:
            self.completion_tokens = completion_tokens
        self.finished_at = timezone.now()
        self.lease_owner, self.lease_expires_at = "", None
        self.action_expires_at = None
        self.save(
            update_fields=[
                "status",
                "error_code",
                "error_message",
                "prompt_tokens",
                "completion_tokens",
                "finished_at",
                "lease_owner",
                "lease_expires_at",
                "action_expires_at",
                "updated_at",
            ]
        )


class RunEventQuerySet(models.QuerySet["RunEvent"]):
    def after(self, seq: int) -> RunEventQuerySet:
        return self.filter(seq__gt=seq).order_by("seq")

    def of_turns(self) -> RunEventQuerySet:
        """The events of turns (no compaction's): what a protocol that shows each event as
        part of a reply lists."""
        return self.filter(run__kind=Run.Kind.TURN)

    def since(self, query: dict[str, Any]) -> RunEventQuerySet:
        """The events an events query asks for (``since_id``, ``since_created_at``:
        ``runs.serializers.EventQuerySerializer``), oldest first."""
        events = self.order_by("seq")
        if "since_id" in query:
            events = events.filter(seq__gt=query["since_id"])
        if "since_created_at" in query:
            events = events.filter(created_at__gt=query["since_created_at"])
        return events

    def stream_backlog(self, *, session_id: int, after: int = 0, run_id: int | None = None) -> list[RunEvent]:
        """A stream's stored backlog in order, each row with its run's uuid (``run_uuid``):
        the session's events after ``after``; or (``run_id``) from run ``run_id``'s first
        stored event on, and when it has none, the session's last event alone (its id is
        where a reader of the run starts: ``runs.sse.events_before``).

        One query, written as SQL: opening a stream is hot, and compiling it as a queryset
        (with the run's first event as a subquery) cost ten times the query itself.
        """
        events, runs = self.model._meta.db_table, Run._meta.db_table
        if run_id is None:
            start, params = "e.seq > %s", [session_id, after]
        else:
            start = (
                f"e.seq >= COALESCE((SELECT MIN(seq) FROM {events} WHERE run_id = %s),"  # noqa: S608
                f" (SELECT MAX(seq) FROM {events} WHERE session_id = %s), 0)"
            )
            params = [session_id, run_id, session_id]
        sql = (
            "SELECT e.id, e.run_id, e.first_seq, e.seq, e.type, e.data, e.delta_lengths, r.uuid AS run_uuid"  # noqa: S608 (table names only)
            f" FROM {events} e JOIN {runs} r ON r.id = e.run_id WHERE e.session_id = %s AND {start} ORDER BY e.seq"
        )
        rows = list(self.raw(sql, params))
        for row in rows:  # a joined column is not converted: SQLite gives the uuid's hex
            if not isinstance(row.run_uuid, uuid.UUID):
                row.run_uuid = uuid.UUID(row.run_uuid)
        return rows


class RunEvent(models.Model):
    """Stored stream events. ``seq`` is the SSE id: per session, strictly increasing across
    its runs. The worker writes them in batches (never a query per token), and within a
    batch it merges consecutive ``text-delta`` events of one text part into one row that
    covers ids ``first_seq``..``seq``: a turn's rows do not grow with its token count.
    ``delta_lengths`` keeps the length of each merged delta, so a reader that already has
    some of those ids gets exactly the rest."""

    session = models.ForeignKey("chat.Session", on_delete=models.CASCADE, related_name="events")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    first_seq = models.PositiveBigIntegerField()
    seq = models.PositiveBigIntegerField()
    type = models.CharField(max_length=50)
    data = models.JSONField(default=dict)
    delta_lengths = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = RunEventQuerySet.as_manager()

    class Meta:
        ordering = ["session", "seq"]
        constraints = [models.UniqueConstraint(fields=["session", "seq"], name="run_event_seq_unique_per_session")]
        indexes = [
            models.Index(fields=["session", "created_at"]),
            models.Index(fields=["run", "seq"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.seq} {self.type}" if self.first_seq == self.seq else f"{self.first_seq}-{self.seq} {self.type}"

    def can_merge(self, type_: str, fields: dict[str, Any]) -> bool:
        return type_ == TEXT_DELTA and self.type == TEXT_DELTA and self.data.get("id") == fields.get("id")

    def merge_delta(self, seq: int, delta: str) -> None:
        """Take the next id's delta into this row (its ids must follow on)."""
        if not self.delta_lengths:
            self.delta_lengths = [len(self.data["delta"])]
        self.data["delta"] += delta
        self.delta_lengths.append(len(delta))
        self.seq = seq

    def data_after(self, seq: int) -> dict[str, Any]:
        """The event's data for a reader that already has every id up to ``seq``: a merged
        delta loses the pieces that reader has seen."""
        if seq < self.first_seq or not self.delta_lengths:
            return self.data
        seen = sum(self.delta_lengths[: seq - self.first_seq + 1])
        return {**self.data, "delta": self.data["delta"][seen:]}

    def data_through(self, seq: int) -> dict[str, Any]:
        """The complement of ``data_after``: what a reader that has every id up to ``seq``
        saw of this event (a merged delta's pieces up to ``seq``)."""
        if seq >= self.seq or not self.delta_lengths:
            return self.data
        seen = sum(self.delta_lengths[: seq - self.first_seq + 1])
        return {**self.data, "delta": self.data["delta"][:seen]}


# What the model and the client (``tool-output-error``) are told of a call whose worker died
# during its execution: it may or may not have taken effect, and it was not run again (only
# a tool declared ``idempotent`` is). The code leads, for programs that read it.
OUTCOME_UNKNOWN = (
    "outcome_unknown: the worker executing this call stopped before its outcome was known; "
    "the call may or may not have taken effect, and it was not run again."
)
NEVER_RAN = "The run ended before this call ran."


class ToolCallQuerySet(models.QuerySet["ToolCall"]):
    def open(self) -> ToolCallQuerySet:
        """Calls waiting on someone: a decision, a client's result, a connection."""
        return self.filter(status__in=ToolCall.OPEN_STATUSES)


# What the model is told of a UI command (a client tool with wait_for_result false).
UI_COMMAND_SENT = {"sent": True}


class ToolCall(models.Model):
    """One tool call the model made in a run, with its own transitions. ``call_id`` is
    Genie's id for it (the stream's ``toolCallId``, the URL's ``{call_id}``)."""

    class Status(models.TextChoices):
        PENDING_APPROVAL = "pending_approval", "Pending approval"
        AWAITING_RESULT = "awaiting_result", "Awaiting the client's result"
        AWAITING_CONNECTION = "awaiting_connection", "Awaiting a connection"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        DENIED = "denied", "Denied"
        EXPIRED = "expired", "Expired"

    OPEN_STATUSES = (Status.PENDING_APPROVAL, Status.AWAITING_RESULT, Status.AWAITING_CONNECTION)
    # What answering a UI command's result says (its call stays succeeded; not a status).
    RECORDED = "recorded"
    SETTLED_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.DENIED, Status.EXPIRED)

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tool_calls")
    call_id = models.CharField(max_length=64, unique=True)
    provider_call_id = models.CharField(max_length=200, blank=True)
    step = models.PositiveSmallIntegerField(default=1)
    position = models.PositiveSmallIntegerField(default=0)
    tool_name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, blank=True)
    arguments = models.TextField(blank=True, help_text="The arguments as the model streamed them.")
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    decided_by = models.CharField(max_length=200, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True, help_text="When it was approved or denied.")
    reason = models.TextField(blank=True)
    executed_at = models.DateTimeField(null=True, blank=True, help_text="When the server started executing it.")
    waits_for_result = models.BooleanField(
        default=True,
        help_text="False: a client tool's UI command (wait_for_result false): sent, and the turn went on.",
    )
    connection_attempt = models.ForeignKey(
        "runs.ConnectionAttempt",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="tool_calls",
        help_text="The authorization this call waits for (or waited for).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ToolCallQuerySet.as_manager()

    class Meta:
        ordering = ["run", "step", "position"]
        indexes = [models.Index(fields=["run", "status"])]

    def __str__(self) -> str:
        return f"{self.tool_name} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES

    @property
    def is_ui_command(self) -> bool:
        """A client tool's call that waits for no result (the model was told it was sent):
        a result posted later is only recorded."""
        return not self.waits_for_result

    def record_result(self, *, output: Any = None, error: str | None = None) -> None:
        """What the client reports of a UI command it ran; the call stays ``succeeded`` (it
        was sent) and the model's turn is not touched."""
        if error is not None:
            self.error = error
        else:
            self.output = output
        self.save(update_fields=["output", "error"])

    @property
    def is_settled(self) -> bool:
        return self.status in self.SETTLED_STATUSES

    def _finish(self, status: str, **fields: Any) -> None:
        self.status = status
        self.finished_at = timezone.now()
        for name, value in fields.items():
            setattr(self, name, value)
        self.save(update_fields=["status", "finished_at", *fields])

    def mark_waiting(self, status: str) -> None:
        """→ pending_approval or awaiting_result (or awaiting_connection)."""
        self.status = status
        self.save(update_fields=["status"])

    def mark_awaiting_connection(self, attempt: ConnectionAttempt) -> None:
        """running → awaiting_connection: the end user must authorize ``attempt`` first."""
        self.status, self.connection_attempt = self.Status.AWAITING_CONNECTION, attempt
        self.save(update_fields=["status", "connection_attempt"])

    def mark_connected(self) -> None:
        """awaiting_connection → running (the continuation executes it with the token)."""
        self.status = self.Status.RUNNING
        self.save(update_fields=["status"])

    def mark_approved(self, *, decided_by: str, reason: str = "") -> None:
        """pending_approval → running (the continuation executes it)."""
        self.status, self.decided_by, self.reason = self.Status.RUNNING, decided_by, reason
        self.decided_at = timezone.now()
        self.save(update_fields=["status", "decided_by", "decided_at", "reason"])

    def mark_denied(self, *, decided_by: str, reason: str = "") -> None:
        self._finish(self.Status.DENIED, decided_by=decided_by, decided_at=timezone.now(), reason=reason)

    @property
    def decision(self) -> str:
        """``approved`` or ``denied`` once a person (or a key) decided; blank otherwise. The
        status says what happened next (an approved call then succeeds or fails)."""
        if not self.decided_by:
            return ""
        return "denied" if self.status == self.Status.DENIED else "approved"

    def describe_decision(self, decider: str) -> str:
        """The decision in words for a reviewer: "Approved by demo at 2026-12-07 14:02:11:
        reason". ``decider`` is who ``decided_by`` names, in words (``genie.auth.actor_names``)."""
        if not self.decision:
            return ""
        words = f"{self.decision.capitalize()} by {decider or self.decided_by}"
        at = self.decided_at or (self.finished_at if self.decision == "denied" else None)
        if at is not None:
            words += f" at {timezone.localtime(at):%Y-%m-%d %H:%M:%S}"
        return f"{words}: {self.reason}" if self.reason else words

    def claim_execution(self) -> bool:
        """Take the one execution of this call: True once, ever, whoever asks (a
        redelivered task finds it taken and never runs the tool a second time)."""
        now = timezone.now()
        taken = ToolCall.objects.filter(pk=self.pk, executed_at__isnull=True).update(executed_at=now)
        self.executed_at = self.executed_at or now
        return bool(taken)

    def mark_succeeded(self, output: Any) -> None:
        self._finish(self.Status.SUCCEEDED, output=output)

    def mark_outcome_unknown(self) -> None:
        """running → failed: its execution started and its worker died before the outcome
        was stored; it is not run again (see ``OUTCOME_UNKNOWN``)."""
        self.mark_failed(OUTCOME_UNKNOWN if self.executed_at else NEVER_RAN)

    def mark_sent(self) -> None:
        """running → succeeded for a UI command (a client tool that waits for no result):
        sent to the client, which the model is told."""
        self._finish(self.Status.SUCCEEDED, output=UI_COMMAND_SENT, waits_for_result=False)

    def mark_failed(self, error: str) -> None:
        self._finish(self.Status.FAILED, error=error)

    def mark_expired(self) -> None:
        self._finish(self.Status.EXPIRED)


# --- connections: an end user's OAuth account for a tool ------------------------------


class ConnectionProviderQuerySet(models.QuerySet["ConnectionProvider"]):
    def of_team(self, team: Any) -> ConnectionProviderQuerySet:
        return self.filter(team=team)


class ConnectionProvider(models.Model):
    """An OAuth 2.0 authorization server a team's tools may act through (``ToolSpec.connection``
    names it by ``slug``). ``client_secret`` is stored encrypted and never shown."""

    team = models.ForeignKey("genie.Team", on_delete=models.CASCADE, related_name="connection_providers")
    slug = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    authorize_url = models.URLField(max_length=2000)
    token_url = models.URLField(max_length=2000)
    client_id = models.CharField(max_length=500)
    client_secret = EncryptedTextField(blank=True)
    scopes = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConnectionProviderQuerySet.as_manager()

    class Meta:
        ordering = ["team", "slug"]
        constraints = [models.UniqueConstraint(fields=["team", "slug"], name="connection_provider_slug_per_team")]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class ConnectionQuerySet(models.QuerySet["Connection"]):
    def live(self) -> ConnectionQuerySet:
        return self.filter(revoked_at__isnull=True)

    def visible_to(self, caller: Caller) -> ConnectionQuerySet:
        """A secret key sees its team's connections; a user its own (its member uuid is
        its end-user id); a publishable key none."""
        qs = self.filter(team=caller.team).live()
        if caller.is_secret:
            return qs
        member = getattr(caller.user, "member", None) if caller.is_user else None
        if member is None:
            return qs.none()
        return qs.filter(user_id=str(member.uuid))


class Connection(models.Model):
    """An end user's authorization at a provider: their tokens, encrypted at rest.
    ``user_id`` is the end user (the session's ``user_id``, or its owner's member uuid).
    At most one live (unrevoked) connection per provider and end user."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey("genie.Team", on_delete=models.CASCADE, related_name="connections")
    provider = models.ForeignKey(ConnectionProvider, on_delete=models.CASCADE, related_name="connections")
    user_id = models.CharField(max_length=200)
    access_token = EncryptedTextField(blank=True)
    refresh_token = EncryptedTextField(blank=True)
    token_type = models.CharField(max_length=40, default="Bearer")
    scope = models.TextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConnectionQuerySet.as_manager()

    # A token this close to its expiry is refreshed before a call (the call must not fail midway).
    EXPIRY_MARGIN = timedelta(seconds=30)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "user_id"],
                condition=models.Q(revoked_at__isnull=True),
                name="one_live_connection_per_user",
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider.slug} for {self.user_id}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now() + self.EXPIRY_MARGIN

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and bool(self.access_token) and not self.is_expired

    def store_tokens(self, token: dict[str, Any]) -> None:
        """Keep a token endpoint's answer (a refresh may omit the refresh token: keep ours)."""
        self.access_token = token["access_token"]
        self.refresh_token = token.get("refresh_token") or self.refresh_token
        self.token_type = token.get("token_type") or "Bearer"
        self.scope = token.get("scope") or self.scope
        expires_in = token.get("expires_in")
        self.expires_at = timezone.now() + timedelta(seconds=int(expires_in)) if expires_in else None
        self.save()

    def mark_unusable(self) -> None:
        """The provider refused the refresh: the tokens are dropped (the user connects again)."""
        self.access_token, self.refresh_token = "", ""
        self.save(update_fields=["access_token", "refresh_token", "updated_at"])

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.access_token, self.refresh_token = "", ""
        self.save(update_fields=["revoked_at", "access_token", "refresh_token", "updated_at"])


class ConnectionAttemptQuerySet(models.QuerySet["ConnectionAttempt"]):
    def reachable_by(self, caller: Caller) -> ConnectionAttemptQuerySet:
        """The attempts a caller may link or reject: those whose tool call is in a session
        the caller reaches (the one access rule)."""
        from chat.models import Session

        sessions = Session.objects.reachable_by(caller)
        return self.filter(provider__team=caller.team, tool_calls__run__session__in=sessions).distinct()

    def unwaited_after(self, run: Run) -> ConnectionAttemptQuerySet:
        """Pending attempts ``run``'s calls waited on and no other call waits on any more."""
        return self.filter(status=ConnectionAttempt.Status.AUTH_REQUIRED, tool_calls__run=run).exclude(
            tool_calls__status=ToolCall.Status.AWAITING_CONNECTION
        )

    def expire(self) -> int:
        return self.update(status=ConnectionAttempt.Status.EXPIRED, links=[], updated_at=timezone.now())

    def pending_for(self, *, provider: ConnectionProvider, user_id: str) -> ConnectionAttemptQuerySet:
        return self.filter(
            provider=provider,
            user_id=user_id,
            status=ConnectionAttempt.Status.AUTH_REQUIRED,
            expires_at__gt=timezone.now(),
        )


class ConnectionAttempt(models.Model):
    """One request that an end user authorize a provider, made when a tool call needs a
    connection. The ``state`` of each authorization link is single-use and bound to the
    attempt (``<attempt_id hex>.<random>``); only its SHA-256 is stored, beside the link's
    PKCE code verifier, encrypted, and, once a browser opened the link through Genie, the
    SHA-256 of that browser's binding (its cookie; ``browser_hash``). An attempt expires
    with its run's pending action."""

    class Status(models.TextChoices):
        AUTH_REQUIRED = "auth_required", "Authorization required"
        AUTHORIZED = "authorized", "Authorized"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"

    MAX_LINKS = 10  # authorization links outstanding at once (each ``link`` makes one)

    attempt_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    provider = models.ForeignKey(ConnectionProvider, on_delete=models.CASCADE, related_name="attempts")
    user_id = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.AUTH_REQUIRED)
    links = models.JSONField(
        default=list, blank=True, editable=False, help_text="[{state_hash, code_verifier (encrypted)}]"
    )
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConnectionAttemptQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["provider", "user_id", "status"])]

    def __str__(self) -> str:
        return f"{self.provider.slug} for {self.user_id} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == self.Status.AUTH_REQUIRED and self.expires_at > timezone.now()

    @staticmethod
    def hash_state(state: str) -> str:
        return hashlib.sha256(state.encode()).hexdigest()

    def new_link(self, code_verifier: str) -> str:
        """A new single-use state for an authorization link with ``code_verifier``; the
        oldest links stop working beyond MAX_LINKS."""
        state = f"{self.attempt_id.hex}.{secrets.token_urlsafe(32)}"
        entry = {"state_hash": self.hash_state(state), "code_verifier": encrypt(code_verifier)}
        self.links = [*self.links, entry][-self.MAX_LINKS :]
        self.save(update_fields=["links", "updated_at"])
        return state

    def _link_of(self, state: str) -> dict[str, Any] | None:
        wanted = self.hash_state(state)
        return next((entry for entry in self.links if secrets.compare_digest(entry["state_hash"], wanted)), None)

    def open_link(self, state: str) -> tuple[str, str] | None:
        """The browser opening the link of ``state`` through Genie: binds the link to it
        (a new random ``binding`` for its cookie; only the hash is stored) and returns
        (binding, code verifier); None for a state this attempt never issued, already
        took, or whose link a browser opened already (one browser per link)."""
        entry = self._link_of(state)
        if entry is None or entry.get("browser_hash"):
            return None
        binding = secrets.token_urlsafe(32)
        entry["browser_hash"] = self.hash_state(binding)
        self.save(update_fields=["links", "updated_at"])
        return binding, decrypt(entry["code_verifier"])

    def has_link(self, state: str) -> bool:
        return self._link_of(state) is not None

    def is_bound_to(self, state: str, binding: str) -> bool:
        """Whether the link of ``state`` was opened by the browser holding ``binding``."""
        entry = self._link_of(state)
        bound = entry.get("browser_hash", "") if entry is not None else ""
        return bool(bound and binding) and secrets.compare_digest(bound, self.hash_state(binding))

    def take_link(self, state: str) -> str | None:
        """Use up the link of ``state``: its code verifier, or None for a state this
        attempt never issued or already took."""
        entry = self._link_of(state)
        if entry is None:
            return None
        self.links = [other for other in self.links if other is not entry]
        self.save(update_fields=["links", "updated_at"])
        return decrypt(entry["code_verifier"])

    def extend_until(self, expires_at: datetime) -> None:
        """A later run waits on this attempt too: it lives as long as that run's action."""
        if expires_at > self.expires_at:
            self.expires_at = expires_at
            self.save(update_fields=["expires_at", "updated_at"])

    def _settle(self, status: str) -> None:
        self.status, self.links = status, []
        self.save(update_fields=["status", "links", "updated_at"])

    def mark_authorized(self) -> None:
        self._settle(self.Status.AUTHORIZED)

    def mark_rejected(self) -> None:
        self._settle(self.Status.REJECTED)

    def mark_expired(self) -> None:
        self._settle(self.Status.EXPIRED)
