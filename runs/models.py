"""Agent runs (one turn each) and their durable event log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import models
from django.utils import timezone


class RunQuerySet(models.QuerySet["Run"]):
    def active(self) -> RunQuerySet:
        return self.filter(status__in=Run.ACTIVE_STATUSES)

    def lease_expired(self, now: datetime) -> RunQuerySet:
        """Running runs whose worker stopped renewing its lease (presumed dead)."""
        return self.filter(status=Run.Status.RUNNING, lease_expires_at__lt=now)

    def action_expired(self, now: datetime) -> RunQuerySet:
        """Paused runs whose question went unanswered for GENIE_ACTION_TTL."""
        return self.filter(status=Run.Status.REQUIRES_ACTION, action_expires_at__lt=now)

    def ready_to_continue(self) -> RunQuerySet:
        """Paused runs whose every pending tool call has its answer."""
        return self.filter(status=Run.Status.REQUIRES_ACTION).exclude(tool_calls__status__in=ToolCall.OPEN_STATUSES)


class Run(models.Model):
    """One agent turn: answers ``user_message`` by filling ``agent_message``.

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

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING, Status.REQUIRES_ACTION)
    FINAL_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.STOPPED)

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    session = models.ForeignKey("chat.Session", on_delete=models.CASCADE, related_name="runs")
    user_message = models.ForeignKey("chat.Message", on_delete=models.CASCADE, related_name="+")
    agent_message = models.OneToOneField("chat.Message", on_delete=models.CASCADE, related_name="run")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    state = models.JSONField(default=dict, blank=True)
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
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def text_part_id(self) -> str:
        """The id of the reply's text part in the stream (AI SDK ``text-start`` … ``text-end``)."""
        return f"pending-message-{self.agent_message.uuid}"

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

    def mark_requeued(self) -> None:
        """running (its worker died before any text) → queued, for another worker."""
        self.status = self.Status.QUEUED
        self.lease_owner, self.lease_expires_at = "", None
        self.save(update_fields=["status", "lease_owner", "lease_expires_at", "updated_at"])

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
        return type_ == "text-delta" and self.type == "text-delta" and self.data.get("id") == fields.get("id")

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


class ToolCallQuerySet(models.QuerySet["ToolCall"]):
    def open(self) -> ToolCallQuerySet:
        """Calls waiting on someone: a decision, a client's result, a connection."""
        return self.filter(status__in=ToolCall.OPEN_STATUSES)


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
    reason = models.TextField(blank=True)
    executed_at = models.DateTimeField(null=True, blank=True, help_text="When the server started executing it.")
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

    def mark_approved(self, *, decided_by: str, reason: str = "") -> None:
        """pending_approval → running (the continuation executes it)."""
        self.status, self.decided_by, self.reason = self.Status.RUNNING, decided_by, reason
        self.save(update_fields=["status", "decided_by", "reason"])

    def mark_denied(self, *, decided_by: str, reason: str = "") -> None:
        self._finish(self.Status.DENIED, decided_by=decided_by, reason=reason)

    def claim_execution(self) -> bool:
        """Take the one execution of this call: True once, ever, whoever asks (a
        redelivered task finds it taken and never runs the tool a second time)."""
        now = timezone.now()
        taken = ToolCall.objects.filter(pk=self.pk, executed_at__isnull=True).update(executed_at=now)
        self.executed_at = self.executed_at or now
        return bool(taken)

    def mark_succeeded(self, output: Any) -> None:
        self._finish(self.Status.SUCCEEDED, output=output)

    def mark_failed(self, error: str) -> None:
        self._finish(self.Status.FAILED, error=error)

    def mark_expired(self) -> None:
        self._finish(self.Status.EXPIRED)
