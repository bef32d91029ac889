"""Genie settings: one module, driven by environment variables with embedded defaults.

Every knob is read here through the small typed helpers below; nothing else reads
``os.environ``. Cross-setting rules live in ``genie.checks`` as system checks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
NumberT = TypeVar("NumberT", int, float)


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def env_bool(name: str, default: bool) -> bool:  # noqa: FBT001
    """A strict boolean: a value that is neither true nor false is a configuration error
    (``DEBUG=ture`` must not quietly mean off)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use one of 1/0, true/false, yes/no, on/off).")


def env_number(name: str, default: NumberT, kind: type[NumberT]) -> NumberT:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}.") from exc


def env_int(name: str, default: int) -> int:
    return env_number(name, default, int)


def env_float(name: str, default: float) -> float:
    return env_number(name, default, float)


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


# Off unless asked for: `make run` turns it on for itself.
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "genie-insecure-development-key-change-me")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
CSRF_FAILURE_VIEW = "genie.exceptions.csrf_failure"  # the JSON error format, not Django's HTML page

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Redoc's assets, bundled: the API docs work offline
    "corsheaders",
    "genie",
    "chat",
    "feedback",
    "runs",
    "protocols",  # the top floor: nothing below imports it
]

MIDDLEWARE = [
    "genie.cors.CorsMiddleware",  # first, as django-cors-headers asks: it answers preflights
    "django.middleware.security.SecurityMiddleware",
    # Static files from the app itself (the admin's CSS under Daphne, in make run and in
    # production), before anything that would touch a session.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "genie.nul.RefuseNulMiddleware",  # NUL in a path, query or header: 400 before any view
]

ROOT_URLCONF = "genie.urls"
# The web chat page signs users in with Django's own views (templates/registration/).
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat-page"
LOGOUT_REDIRECT_URL = "login"
WSGI_APPLICATION = "genie.wsgi.application"
ASGI_APPLICATION = "genie.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite is the embedded default; PostgreSQL whenever DATABASE_URL points at it.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'genie.sqlite3'}"),
        conn_max_age=0,  # ASGI: connections are per request; psycopg's pool reuses them.
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("GENIE_DB_POOL", True):
    # Connections are checked when taken from the pool (one round trip), so the dead ones a
    # PostgreSQL restart leaves in it are replaced, not handed to a request (genie.postgresql).
    DATABASES["default"]["ENGINE"] = "genie.postgresql"
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 0,
        "max_size": env_int("GENIE_DB_POOL_SIZE", 20),
        "timeout": 10,
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASES["default"]["NAME"] != ":memory:":  # var/ is not in a fresh clone
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL + a busy timeout let the worker and the server share the embedded file.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_ROOT = Path(env_str("GENIE_MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
# Uploaded files: Django's default storage, the local folder MEDIA_ROOT unless another
# backend is named (S3 through django-storages: GENIE_STORAGE_BACKEND=storages.backends.s3.S3Storage
# and GENIE_STORAGE_OPTIONS='{"bucket_name": "genie-files"}'; see docs/api/files-and-context.md).
STORAGES = {
    "default": {
        "BACKEND": env_str("GENIE_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
        "OPTIONS": json.loads(env_str("GENIE_STORAGE_OPTIONS", "{}")),
    },
    # Compressed copies made by collectstatic; no manifest, so a checkout that never ran
    # collectstatic (the tests, a first make run) still renders its pages.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve from the apps' static folders too when collectstatic has not run (make run does
# run it; a production image runs it at build time).
WHITENOISE_USE_FINDERS = env_bool("GENIE_STATIC_FROM_APPS", True)

# The address clients reach this server at; absolute URLs built outside a request start
# with it. Served over https, the transport security settings default to strict
# (manage.py check --deploy passes with a real SECRET_KEY); over http (the embedded
# default, a loopback address) they cannot be, or nothing would load.
GENIE_PUBLIC_URL = env_str("GENIE_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
SERVED_OVER_HTTPS = GENIE_PUBLIC_URL.startswith("https://")
GENIE_BEHIND_PROXY = env_bool("GENIE_BEHIND_PROXY", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", SERVED_OVER_HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", SERVED_OVER_HTTPS)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", SERVED_OVER_HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if SERVED_OVER_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SERVED_OVER_HTTPS
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", SERVED_OVER_HTTPS)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if GENIE_BEHIND_PROXY else None
# Probes and scrapers call each process directly over http, behind the TLS proxy.
SECURE_REDIRECT_EXEMPT = [r"^(healthz|livez|readyz|metrics)$"]

# Secrets at rest (the OAuth tokens of connections, providers' client secrets): one or
# more comma-separated Fernet keys; the first encrypts, all decrypt (rotate by prepending
# a new key). Production (served over https) must set it. In development only, a key is
# derived from SECRET_KEY so that stored connections survive a restart; changing
# SECRET_KEY then makes them unreadable (users connect again).
GENIE_ENCRYPTION_KEY = env_list("GENIE_ENCRYPTION_KEY", [])
if not GENIE_ENCRYPTION_KEY:
    if SERVED_OVER_HTTPS:
        raise ImproperlyConfigured(
            "GENIE_ENCRYPTION_KEY is not set: production (GENIE_PUBLIC_URL is https) needs a Fernet key to store "
            'OAuth tokens. Make one with: python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"'
        )
    GENIE_ENCRYPTION_KEY = [
        base64.urlsafe_b64encode(hashlib.sha256(f"genie-encryption:{SECRET_KEY}".encode()).digest()).decode()
    ]

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "genie.connections.RedisCache",  # one connection pool per process
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "genie-cache",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "genie.auth.BearerTokenAuthentication",
        "genie.auth.CsrfSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["genie.auth.IsTeamCaller"],
    "DEFAULT_PARSER_CLASSES": [
        "genie.parsers.GenieJSONParser",
        "genie.parsers.GenieMultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "genie.pagination.GeniePagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "genie.exceptions.genie_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "PAGE_SIZE": 20,
    "DEFAULT_THROTTLE_CLASSES": [
        "genie.throttles.CredentialRateThrottle",
        "genie.throttles.PublishableRateThrottle",  # each visitor (IP), then the key's ceiling
    ],
    # Client IPs come from X-Forwarded-For only through this many trusted proxies (0: the
    # socket's address; the header is ignored, so a client cannot rotate it).
    "NUM_PROXIES": env_int("GENIE_NUM_PROXIES", 0),
    "UNAUTHENTICATED_USER": None,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

# CORS (django-cors-headers): only under /api/ (and seed 002's /chat), and only for the origins
# a publishable key lists; genie.cors decides each request (no origin is allowed here),
# credentials never cross.
CORS_URLS_REGEX = r"^/(api/|chat(/|$))"
CORS_ALLOWED_ORIGINS: list[str] = []
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_HEADERS = ["accept", "authorization", "content-type", "idempotency-key", "last-event-id", "x-session-secret"]
CORS_EXPOSE_HEADERS = [
    "genie-client-secret",  # a publishable key's new session, on a streaming POST
    "genie-ignored-parameters",  # /v1: the parameters a request sent that were not applied
    "genie-run-id",  # seed 001's streamed send
    "genie-message-uuid",
    "genie-run-uuid",
    "genie-session-uuid",
    "idempotent-replayed",
    "location",
    "retry-after",
]
GENIE_CORS_CACHE_SECONDS = env_int("GENIE_CORS_CACHE_SECONDS", 30)  # a preflight origin's answer

SPECTACULAR_SETTINGS = {
    "TITLE": "Genie API",
    "DESCRIPTION": "LLM agents behind a durable, streaming chat API.",
    "VERSION": "1.0.0",
    "ENABLE_DJANGO_DEPLOY_CHECK": False,
    "SERVE_INCLUDE_SCHEMA": False,  # the document does not describe its own endpoint
    "REDOC_DIST": "SIDECAR",  # bundled assets: no CDN
    "SWAGGER_UI_DIST": "SIDECAR",
    # Request and response shapes apart: read-only fields are not inputs, and required
    # strings that may not be blank say so (minLength 1).
    "COMPONENT_SPLIT_REQUEST": True,
    # Request bodies are JSON (multipart is for uploads, whose views declare it themselves).
    "PARSER_WHITELIST": ["rest_framework.parsers.JSONParser"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "genie.schema.add_error_responses"],
    "ENUM_NAME_OVERRIDES": {
        "AccessTokenKindEnum": "genie.models.AccessToken.Kind",
        # The probes' answers (genie.views).
        "LivenessStatusEnum": ["ok"],
        "AvailabilityEnum": ["ok", "unavailable"],
        "MigrationsCheckEnum": ["ok", "pending", "unavailable"],
    },
}

# Celery: long, I/O-bound streaming turns on the threads pool.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT = "genie.broker:RedisTransport"  # survives a Redis restart
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# How many tasks a worker process reserves from the broker: this times its --concurrency.
# 1 by default: with late acks a worker's threads start what it reserved as they free, so a
# larger multiplier lets one worker hold turns that another worker's idle threads could start.
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("GENIE_WORKER_PREFETCH", 1)
CELERY_TASK_ALWAYS_EAGER = env_bool("GENIE_TASKS_EAGER", False)
GENIE_RUN_TIMEOUT = env_int("GENIE_RUN_TIMEOUT", 600)  # a turn's hard limit (its running time)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Longer than the longest turn, so a healthy run is never redelivered mid-turn.
    "visibility_timeout": GENIE_RUN_TIMEOUT * 2,
    # A worker reads its queues in the order CELERY_TASK_QUEUES names them, every time
    # (kombu's default takes them in turn): a waiting turn is always taken before a title.
    "queue_order_strategy": "priority",
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
# The queue Genie's tasks go to and its workers read: Genies that share one Redis each name
# their own (default "celery", Celery's).
CELERY_TASK_DEFAULT_QUEUE = env_str("GENIE_TASK_QUEUE", "celery")
# Session titles (a second model call per new session, after its first reply) have their own
# queue, read after the turns' one: in a burst of new chats they never go before a turn
# waiting for its first token. A worker started without -Q reads both.
GENIE_TITLES_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}.titles"
CELERY_TASK_QUEUES = [Queue(CELERY_TASK_DEFAULT_QUEUE), Queue(GENIE_TITLES_QUEUE)]
CELERY_TASK_ROUTES = {"runs.generate_title": {"queue": GENIE_TITLES_QUEUE}}

# Logs on stderr, as lines of text or (GENIE_LOG_FORMAT=json) one JSON object per line
# for a log collector: {"time", "level", "logger", "message", ...}, with an exception's
# traceback in "exc_info" and a call's ``extra`` fields as keys of their own.
GENIE_LOG_FORMAT = env_str("GENIE_LOG_FORMAT", "plain")
if GENIE_LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"GENIE_LOG_FORMAT={GENIE_LOG_FORMAT!r} is not a log format (use plain or json).")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": GENIE_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("GENIE_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # At INFO they log each outbound request's whole URL: a webhook's or MCP server's
        # URL may hold its secret, an OAuth callback its code.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
# A Celery worker replaces the root logger's handlers with its own text format unless told
# not to: in JSON, it keeps these.
CELERY_WORKER_HIJACK_ROOT_LOGGER = GENIE_LOG_FORMAT != "json"

# Genie's own knobs.
GENIE_MAX_MESSAGE_CHARS = env_int("GENIE_MAX_MESSAGE_CHARS", 32_000)
GENIE_MAX_METADATA_BYTES = env_int("GENIE_MAX_METADATA_BYTES", 16 * 1024)  # serialized JSON
# Files (chat.files): an upload's limit (413 beyond), and how much of a text, JSON or PDF
# file the model reads (tokens, estimated at 4 characters each; a note says where it was cut).
GENIE_MAX_UPLOAD_BYTES = env_int("GENIE_MAX_UPLOAD_BYTES", 10 * 1024 * 1024)
GENIE_ATTACHMENT_TOKENS = env_int("GENIE_ATTACHMENT_TOKENS", 8_000)
# A PDF's text is extracted off the request thread, in a child process with these bounds
# (chat.pdftext): the first pages only, a time limit (the pages read by then are kept), a
# memory limit (bytes of address space).
GENIE_PDF_MAX_PAGES = env_int("GENIE_PDF_MAX_PAGES", 50)
GENIE_PDF_TIMEOUT = env_int("GENIE_PDF_TIMEOUT", 10)
GENIE_PDF_MAX_MEMORY = env_int("GENIE_PDF_MAX_MEMORY", 1024 * 1024 * 1024)
GENIE_MAX_ATTACHMENTS = 10  # file_ids per message (the contract's bound)
GENIE_MAX_JSON_DEPTH = env_int("GENIE_MAX_JSON_DEPTH", 32)
GENIE_MAX_PAGE_SIZE = env_int("GENIE_MAX_PAGE_SIZE", 100)
GENIE_DEFAULT_PROVIDER = env_str("GENIE_DEFAULT_PROVIDER", "local")
GENIE_DEFAULT_MODEL = env_str("GENIE_DEFAULT_MODEL", "SmolLM2-135M-Instruct")
GENIE_OPENAI_BASE_URL = env_str("GENIE_OPENAI_BASE_URL", "https://api.openai.com/v1")
GENIE_OPENAI_API_KEY = env_str("GENIE_OPENAI_API_KEY", "")  # sent only to GENIE_OPENAI_BASE_URL
# Hosts or CIDRs the egress guard lets a team's URLs reach although they are not public
# (an internal vLLM, say): "vllm.internal,10.0.0.0/8".
GENIE_EGRESS_ALLOW = env_str("GENIE_EGRESS_ALLOW", "")
GENIE_PROVIDER_TIMEOUT = env_float("GENIE_PROVIDER_TIMEOUT", 60.0)
GENIE_PROVIDER_RETRIES = env_int("GENIE_PROVIDER_RETRIES", 2)
GENIE_PROVIDER_RETRY_BACKOFF = env_float("GENIE_PROVIDER_RETRY_BACKOFF", 0.5)
GENIE_LOCAL_MODEL_PATH = env_str("GENIE_LOCAL_MODEL_PATH", "")
GENIE_LOCAL_CONTEXT = env_int("GENIE_LOCAL_CONTEXT", 2048)
GENIE_DEFAULT_CONTEXT_WINDOW = env_int("GENIE_DEFAULT_CONTEXT_WINDOW", 8_192)  # a model Genie knows no window for
GENIE_AUTO_COMPACT_AT = env_float("GENIE_AUTO_COMPACT_AT", 0.9)  # of the window: a longer prompt compacts first
GENIE_MAX_TOKENS = env_int("GENIE_MAX_TOKENS", 512)
GENIE_HISTORY_MESSAGES = env_int("GENIE_HISTORY_MESSAGES", 50)
GENIE_EVENT_RETENTION = timedelta(seconds=env_int("GENIE_EVENT_RETENTION", 24 * 3600))
GENIE_STREAM_MAXLEN = env_int("GENIE_STREAM_MAXLEN", 10_000)
GENIE_STREAM_TTL = env_int("GENIE_STREAM_TTL", 3600)
# Events reach PostgreSQL in batches (deltas merged): a turn writes one batch per interval,
# however many tokens it has; Redis carries the live tail in between.
GENIE_EVENT_FLUSH_INTERVAL = env_float("GENIE_EVENT_FLUSH_INTERVAL", 1.0)
GENIE_EVENT_FLUSH_SIZE = env_int("GENIE_EVENT_FLUSH_SIZE", 500)
GENIE_STOP_POLL_INTERVAL = env_float("GENIE_STOP_POLL_INTERVAL", 0.1)
GENIE_SSE_HEARTBEAT = env_float("GENIE_SSE_HEARTBEAT", 15.0)
GENIE_SSE_BUFFER_EVENTS = env_int("GENIE_SSE_BUFFER_EVENTS", 2_000)
GENIE_SSE_MAX_BACKLOG_BYTES = env_int("GENIE_SSE_MAX_BACKLOG_BYTES", 1_000_000)
GENIE_SSE_STALL_TIMEOUT = env_float("GENIE_SSE_STALL_TIMEOUT", 30.0)
GENIE_SSE_MAX_DURATION = env_float("GENIE_SSE_MAX_DURATION", 3600.0)
# The SSE ``retry:`` a browser's EventSource waits before reconnecting (0 made a tab
# reconnect in a tight loop).
GENIE_SSE_RETRY_MS = env_int("GENIE_SSE_RETRY_MS", 1000)
# Open streams per credential (per key and client IP for a publishable key, which every
# visitor of a site shares); 0: no cap.
GENIE_MAX_STREAMS_PER_KEY = env_int("GENIE_MAX_STREAMS_PER_KEY", 100)
GENIE_GENERATE_TITLES = env_bool("GENIE_GENERATE_TITLES", True)
GENIE_RATE_PER_KEY = env_str("GENIE_RATE_PER_KEY", "1200/min")
GENIE_RATE_PUBLISHABLE_IP = env_str("GENIE_RATE_PUBLISHABLE_IP", "120/min")  # one visitor of a publishable key
GENIE_RATE_PUBLISHABLE_KEY = env_str("GENIE_RATE_PUBLISHABLE_KEY", "12000/min")  # all its visitors together
GENIE_RATE_AUTH_FAILURES = env_str("GENIE_RATE_AUTH_FAILURES", "30/min")  # failed sign-ins and bad keys, per IP
GENIE_SYNC_TIMEOUT = env_float("GENIE_SYNC_TIMEOUT", 60.0)
# How long a stop request waits for the run's worker to honour it before answering (the
# answer then says the stop is pending: ``runs.waiting.stop_and_wait``).
GENIE_STOP_WAIT = env_float("GENIE_STOP_WAIT", 5.0)
# Requests in Django at once per ASGI process (genie.handlers.Admission): the rest wait in
# arrival order; one still running after the window stops counting. 0: no limit.
GENIE_REQUEST_CONCURRENCY = env_int("GENIE_REQUEST_CONCURRENCY", 4)
GENIE_REQUEST_ADMISSION_WINDOW = env_float("GENIE_REQUEST_ADMISSION_WINDOW", 0.25)
GENIE_IDEMPOTENCY_TTL = timedelta(seconds=env_int("GENIE_IDEMPOTENCY_TTL", 24 * 3600))
GENIE_RUN_LEASE = env_float("GENIE_RUN_LEASE", 30.0)  # a worker renews its run's lease every third of this
# How long a worker's write waits for the database to come back (a restart) before the turn
# gives up (genie.connections.retry_when_disconnected); below the lease, so a worker that
# gives up is taken over by the sweeper.
GENIE_DB_RECONNECT_WAIT = env_float("GENIE_DB_RECONNECT_WAIT", 20.0)
GENIE_SWEEP_INTERVAL = env_float("GENIE_SWEEP_INTERVAL", 10.0)
GENIE_QUEUED_RUN_GRACE = env_float("GENIE_QUEUED_RUN_GRACE", 30.0)  # re-enqueue a run queued this long
GENIE_MAX_STEPS = env_int("GENIE_MAX_STEPS", 8)  # model calls per turn
GENIE_ACTION_TTL = env_float("GENIE_ACTION_TTL", 24 * 3600.0)  # how long a paused run waits for an answer
GENIE_OAUTH_TIMEOUT = env_float("GENIE_OAUTH_TIMEOUT", 15.0)  # a request to a provider's token endpoint
# The bearer token a Prometheus scrape of /metrics sends; empty: loopback only (genie.metrics).
GENIE_METRICS_TOKEN = env_str("GENIE_METRICS_TOKEN", "")

CELERY_BEAT_SCHEDULE = {
    "sweep-runs": {"task": "runs.sweep_runs", "schedule": GENIE_SWEEP_INTERVAL},
    "purge-events": {"task": "runs.purge_events", "schedule": 3600.0},
    "purge-idempotency-keys": {"task": "genie.purge_idempotency_keys", "schedule": 3600.0},
}
