"""Agents, chat sessions and their messages."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import connections, models, transaction
from django.db.models.functions import Now, Substr
from django.db.models.signals import post_delete
from django.dispatch import receiver

from genie.egress import validate_public_url
from genie.encryption import EncryptedTextField
from genie.models import Team
from runs.providers import provider_choices

if TYPE_CHECKING:
    from genie.auth import Caller


MAX_GREETING_CHARS = 2000
MAX_SUGGESTED_PROMPTS = 6
MAX_PROMPT_CHARS = 200


def validate_suggested_prompts(value: Any) -> None:
    """A list of at most six non-blank strings of at most 200 characters (the admin's rule;
    the API's serializer says the same field by field)."""
    if not isinstance(value, list) or len(value) > MAX_SUGGESTED_PROMPTS:
        raise ValidationError(f"A list of at most {MAX_SUGGESTED_PROMPTS} prompts.", code="invalid")
    for prompt in value:
        if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
            raise ValidationError(
                f"Each prompt is a non-blank string of at most {MAX_PROMPT_CHARS} characters.", code="invalid"
            )


class AgentQuerySet(models.QuerySet["Agent"]):
    def for_team(self, team: Team) -> AgentQuerySet:
        return self.filter(team=team)

    def live(self) -> AgentQuerySet:
        return self.filter(archived_at__isnull=True)

    def startable_by(self, caller: Caller) -> AgentQuerySet:
        """The agents ``caller`` may open a session with: the team's live agents; for a
        publishable key (a browser), only the public ones."""
        agents = self.for_team(caller.team).live()
        return agents.filter(is_public=True) if caller.is_publishable else agents

    def by_handle_or_uuid(self, value: str) -> AgentQuerySet:
        try:
            return self.filter(uuid=uuid.UUID(str(value)))
        except ValueError:
            return self.filter(handle=value)

    def pick(self, value: str | None) -> Agent | None:
        """The agent named by handle or uuid; the team's default when none is named."""
        return self.filter(is_default=True).first() if not value else self.by_handle_or_uuid(value).first()


class Agent(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="agents")
    handle = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    type = models.CharField(
        max_length=50,
        blank=True,
        default="",
        help_text="A free label grouping agents (support, sales…); seed 002 lists chats by it (?agentType=).",
    )
    description = models.CharField(
        max_length=500, blank=True, default="", help_text="One or two lines under the agent's name on an empty chat."
    )
    instructions = models.TextField(blank=True)
    greeting = models.TextField(
        blank=True,
        default="",
        validators=[MaxLengthValidator(MAX_GREETING_CHARS)],
        help_text="Shown on an empty chat (the page and the widget) before the first message; not sent to the model.",
    )
    suggested_prompts = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_suggested_prompts],
        help_text=f"Up to {MAX_SUGGESTED_PROMPTS} prompts offered as buttons on an empty chat (a JSON list of strings).",
    )
    provider = models.CharField(max_length=20, choices=provider_choices, default="local")
    model = models.CharField(max_length=200, help_text="Model id sent to the provider.")
    base_url = models.URLField(
        blank=True,
        validators=[validate_public_url],
        help_text="OpenAI-compatible base URL; blank: GENIE_OPENAI_BASE_URL. A public address (see GENIE_EGRESS_ALLOW).",
    )
    # Secrets at rest: Fernet-encrypted with GENIE_ENCRYPTION_KEY (genie.encryption).
    api_key = EncryptedTextField(
        blank=True,
        help_text="Provider key, stored encrypted. Blank: GENIE_OPENAI_API_KEY, but only with the server's base URL. "
        "Cleared when the base URL changes.",
    )
    temperature = models.FloatField(default=0.7)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    tools = models.JSONField(
        default=list, blank=True, help_text="Tool definitions (see the README's Tools section); at most 32."
    )
    max_steps = models.PositiveSmallIntegerField(default=8, help_text="Model calls per turn, at most.")
    vision = models.BooleanField(
        default=False, help_text="The model reads images: attached images are sent as image parts."
    )
    context_window = models.PositiveIntegerField(
        null=True, blank=True, help_text="The model's context, in tokens; blank: a default for the model."
    )
    webhook_secret = EncryptedTextField(
        blank=True, editable=False, help_text="Signs webhook tool calls; shown once; stored encrypted."
    )
    allow_client_settings = models.BooleanField(
        default=True,
        help_text="OpenAI clients may add instructions and set temperature, top_p, penalties, seed, stop and "
        "max tokens (capped at this agent's own limit); off: such a request is refused.",
    )
    generate_titles = models.BooleanField(
        default=True,
        help_text="A new session's blank title is written by the model after its first reply (a second, "
        "short model call, on the workers' titles queue); off: sessions stay untitled until renamed.",
    )
    is_public = models.BooleanField(default=False, help_text="Publishable keys may start sessions with it.")
    is_default = models.BooleanField(default=False)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AgentQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "handle"], name="agent_handle_unique_per_team"),
            models.UniqueConstraint(
                fields=["team"], condition=models.Q(is_default=True), name="one_default_agent_per_team"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.handle})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A stored key was meant for the stored address: when the base URL changes and no
        # new key comes with it, the old key is cleared rather than sent to the new address.
        # Here, not in a view, so the API, the admin and the shell all keep the rule.
        if not self.webhook_secret:
            self.rotate_webhook_secret(save=False)
        stored_url, stored_key = getattr(self, "_stored_endpoint", (None, None))
        if stored_url is not None and self.base_url != stored_url and self.api_key == stored_key:
            self.api_key = ""
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "api_key"}
        super().save(*args, **kwargs)
        self._stored_endpoint = (self.base_url, self.api_key)

    def rotate_webhook_secret(self, *, save: bool = True) -> str:
        """A new secret for signing webhook tool calls; returns it (shown once)."""
        self.webhook_secret = "whsec_" + secrets.token_urlsafe(32)
        if save:
            self.save(update_fields=["webhook_secret", "updated_at"])
        return self.webhook_secret

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> Agent:
        agent = super().from_db(db, field_names, values)
        agent._stored_endpoint = (agent.__dict__.get("base_url"), agent.__dict__.get("api_key"))
        return agent


PREVIEW_CHARS = 100


def hash_client_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class PromptStart:
    """Where a session's next prompt starts (``Session.objects.prompt_start``): its latest
    summary, if any, with the message it runs up to, and whether the session has files."""

    summary: str = ""
    compacted_at: datetime | None = None
    upto_created_at: datetime | None = None
    upto_id: int | None = None
    has_uploads: bool = False


class SessionQuerySet(models.QuerySet["Session"]):
    def prompt_start(self, session_id: int, *, before: datetime | None = None) -> PromptStart:
        """The session's latest compaction (of messages created before ``before``, when
        given) and whether any file was uploaded to it (else no message has attachments to
        read). One statement, written as SQL: every turn reads it before its first token,
        and the ORM's compaction query alone cost three times as much CPU."""
        compactions, messages = Compaction._meta.db_table, Message._meta.db_table
        uploads = Upload._meta.db_table
        bound = " AND m.created_at < %s" if before is not None else ""
        sql = (
            f"SELECT EXISTS(SELECT 1 FROM {uploads} u WHERE u.session_id = %s),"  # noqa: S608 (table names only)
            " c.summary, c.created_at, m.created_at, m.id"
            f" FROM (SELECT 1) one LEFT JOIN ({compactions} c JOIN {messages} m ON m.id = c.upto_message_id)"
            f" ON c.session_id = %s{bound}"
            " ORDER BY c.created_at DESC, c.id DESC LIMIT 1"
        )
        params: list[Any] = [session_id, session_id] + ([before] if before is not None else [])
        with connections[self.db].cursor() as cursor:
            cursor.execute(sql, params)
            has_uploads, summary, compacted_at, upto_created_at, upto_id = cursor.fetchone()
        return PromptStart(summary or "", compacted_at, upto_created_at, upto_id, bool(has_uploads))

    def reachable_by(self, caller: Caller) -> SessionQuerySet:
        """The one access rule: the sessions a caller may see and act on. Every DRF view
        and the SSE relay scope through it.

        Always within the caller's team; a user (personal token or cookie) reaches only
        its own sessions; a publishable key only the sessions it created, and only with
        the session's client secret (``X-Session-Secret``): without it, or with another
        session's, none. A secret key reaches the whole team.
        """
        qs = self.filter(team=caller.team)
        if caller.is_user:
            return qs.filter(owner=caller.user)
        if caller.is_publishable:
            if not caller.session_secret:
                return qs.none()
            # The secret is 192 random bits: comparing its hash in the query leaks nothing useful.
            return qs.filter(
                created_by_token=caller.token, client_secret_hash=hash_client_secret(caller.session_secret)
            )
        if caller.is_secret:
            return qs
        return qs.none()

    def with_preview(self) -> SessionQuerySet:
        """Annotate ``preview``: the start of the first user message as the chat stands (an
        edited one's new text; what a list shows for a chat without a title). One correlated subquery per row, on the messages' index."""
        first = (
            Message.objects.filter(
                session=models.OuterRef("pk"), sender_role=Message.SenderRole.USER, replaced_by__isnull=True
            )
            .order_by("created_at", "id")
            .values("text")[:1]
        )
        return self.annotate(preview=Substr(models.Subquery(first), 1, PREVIEW_CHARS))

    def with_chat_id(self, caller: Caller, chat_id: str) -> SessionQuerySet:
        """The session an AI SDK client names by its chat id: within what ``caller``
        reaches, the one the caller itself created under that id (a secret key reaches
        the team's sessions, but its chat ids are its own)."""
        qs = self.reachable_by(caller).filter(chat_id=chat_id)
        return qs if caller.is_user else qs.filter(owner__isnull=True, created_by_token=caller.token)

    def named(self, value: str) -> SessionQuerySet:
        """The session whose uuid ``value`` spells; none when it spells no uuid (an adapter's
        path takes the document's string id, and an unknown one is a 404 like any other)."""
        try:
            return self.filter(uuid=uuid.UUID(str(value)))
        except ValueError:
            return self.none()


class Session(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="sessions")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="sessions")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="chat_sessions"
    )
    user_id = models.CharField(max_length=200, blank=True, help_text="The caller's own id for its end user.")
    created_by_token = models.ForeignKey(
        "genie.AccessToken", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    client_secret_hash = models.CharField(max_length=64, blank=True, editable=False)
    title = models.CharField(max_length=200, blank=True)
    title_generated = models.BooleanField(default=False, help_text="Set when the model wrote the title.")
    metadata = models.JSONField(default=dict, blank=True)
    chat_id = models.CharField(
        max_length=200, blank=True, help_text="An AI SDK client's own id for this chat (/api/chat), unique per caller."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SessionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["team", "owner", "-created_at"]),
            models.Index(fields=["team", "agent", "-created_at"]),
            models.Index(fields=["team", "user_id", "-created_at"]),
            models.Index(fields=["team", "created_by_token", "-created_at"]),
        ]
        # A chat id names one session per caller: a user's own, or a key's.
        constraints = [
            models.UniqueConstraint(
                fields=["team", "owner", "chat_id"],
                condition=models.Q(owner__isnull=False) & ~models.Q(chat_id=""),
                name="session_chat_id_unique_per_user",
            ),
            models.UniqueConstraint(
                fields=["team", "created_by_token", "chat_id"],
                condition=models.Q(owner__isnull=True) & ~models.Q(chat_id=""),
                name="session_chat_id_unique_per_key",
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"Session {self.uuid}"

    def has_client_secret(self, secret: str) -> bool:
        """Whether ``secret`` is this session's client secret (a publishable key's visitor)."""
        return bool(secret and self.client_secret_hash) and secrets.compare_digest(
            hash_client_secret(secret), self.client_secret_hash
        )

    def issue_client_secret(self) -> str:
        """Set a new client secret and return it; only its hash is kept."""
        secret = "cs_" + secrets.token_urlsafe(24)
        self.client_secret_hash = hash_client_secret(secret)
        return secret

    def touch(self) -> None:
        Session.objects.filter(pk=self.pk).update(updated_at=Now())


class MessageQuerySet(models.QuerySet["Message"]):
    def transcript(self) -> MessageQuerySet:
        return (
            self.select_related("session", "feedback", "run", "replaced_by")
            .prefetch_related("run__tool_calls", "attachments")
            .order_by("created_at", "id")
        )

    def current(self) -> MessageQuerySet:
        """The conversation as it stands, oldest first: without the messages an edit or a
        regeneration replaced (they stay in the transcript, marked ``replaced_by``)."""
        return self.filter(replaced_by__isnull=True).order_by("created_at", "id")


class Message(models.Model):
    class SenderRole(models.TextChoices):
        USER = "user", "User"
        AGENT = "agent", "Agent"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        STREAMING = "streaming", "Streaming"
        COMPLETE = "complete", "Complete"
        # The model stopped at the token cap (max_tokens; finish_reason "length"): the text is cut.
        INCOMPLETE = "incomplete", "Incomplete (token cap)"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="messages")
    sender_role = models.CharField(max_length=10, choices=SenderRole.choices)
    text = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETE)
    error = models.JSONField(
        null=True, blank=True, help_text='Why a failed or stopped reply ended: {"code", "message"}; null otherwise.'
    )
    provider = models.CharField(max_length=50, blank=True)
    model_id = models.CharField(max_length=200, blank=True)
    temperature = models.FloatField(default=0.0)
    metadata = models.JSONField(default=dict, blank=True)
    ui_context = models.JSONField(null=True, blank=True)
    scan_context = models.JSONField(null=True, blank=True, help_text="How the visitor arrived (tabTitle, pageUrl…).")
    attachments = models.ManyToManyField("Upload", blank=True, related_name="messages")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    replaced_by = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The message that replaces this one: a regenerated reply's new reply, or the edited user message "
        "that replaced this message and every one after it. Replaced messages stay in the transcript; prompts leave "
        "them out.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["session", "created_at", "id"])]

    def __str__(self) -> str:
        return f"{self.sender_role}: {self.text[:60]}"

    @property
    def is_agent(self) -> bool:
        return self.sender_role == self.SenderRole.AGENT

    def mark_streaming(self) -> None:
        """pending → streaming: its run's worker started (the end of the run sets the rest)."""
        self.status = self.Status.STREAMING
        self.save(update_fields=["status", "updated_at"])

    def keep_text(self, text: str) -> None:
        """The reply so far, kept while its run waits (a pause): the status stays."""
        self.text = text
        self.save(update_fields=["text", "updated_at"])


def upload_path(upload: Upload, filename: str) -> str:
    # Not the client's name: a random one under the session, so names never clash or traverse.
    return f"uploads/{upload.session.uuid}/{upload.file_id}"


class Upload(models.Model):
    """A file uploaded to a session, to attach to its messages. The bytes live in Django's
    default storage; ``text`` is what the model reads of a text, JSON or PDF file,
    extracted once (at most GENIE_ATTACHMENT_TOKENS' worth; ``text_cut`` says there was
    more): a text or JSON file's at upload, a PDF's later, off the request thread
    (``text_ready`` is False until then; see ``chat.files``)."""

    file_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="uploads")
    file = models.FileField(upload_to=upload_path, max_length=300)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    text = models.TextField(blank=True, editable=False)
    text_cut = models.BooleanField(default=False, editable=False)
    text_ready = models.BooleanField(default=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.filename} ({self.content_type}, {self.size} bytes)"

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


@receiver(post_delete, sender=Upload)
def delete_stored_file(sender: type[Upload], instance: Upload, **kwargs: Any) -> None:
    """The bytes go with their row, however it is deleted (a session's cascade, a team's,
    the admin): storage cleanup, not domain logic, so a receiver and not a service. After
    commit, so a rolled-back delete keeps its file."""
    name, storage = instance.file.name, instance.file.storage
    if name:
        transaction.on_commit(lambda: storage.delete(name))


class Compaction(models.Model):
    """A summary of a session's earlier turns: later prompts use the agent's instructions,
    the latest summary and the messages after ``upto_message``. The transcript keeps
    every message; a summary is not one of them."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="compactions")
    upto_message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    summary = models.TextField()
    messages_compacted = models.PositiveIntegerField()
    before_tokens = models.PositiveIntegerField()
    after_tokens = models.PositiveIntegerField()
    automatic = models.BooleanField(default=False, help_text="Made before a turn whose prompt was too long.")
    run = models.OneToOneField(
        "runs.Run",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="compaction",
        help_text="The compaction run that wrote it (POST sessions/{s}/compact); none for an automatic one.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Summary of {self.messages_compacted} messages ({self.created_at:%Y-%m-%d %H:%M})"
