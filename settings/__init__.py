"""Settings, all from the environment (django-environ), with defaults that point at the local stack.

Every variable is documented in `.env.example`. `DEBUG` is off unless `DEBUG=1`. The test suite uses
`settings.test`, which only shortens timeouts and backoffs.
"""
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")  # optional; real environment variables win

DEBUG = env.bool("DEBUG", default=False)
# Secrets have a default only with DEBUG on (a developer's laptop). With DEBUG off, every process refuses to start
# while one is unset, a placeholder or a local default (enrollment.checks.require_secrets); the local commands give
# each checkout random ones (settings/local_secrets.py).
LOCAL_DEFAULTS = {
    "SECRET_KEY": "insecure-local-only-secret-key-change-me-in-any-deployment",
    "ALLOCATION_API_TOKEN": "local-allocation-token",
    "PAYMENT_WEBHOOK_SECRET": "local-webhook-secret",
    "REDIS_PASSWORD": "",  # with DEBUG on, a Redis without a password is allowed
    "KAFKA_PASSWORD": "",  # the process's own Kafka principal's (KAFKA_USERNAME)
}


def secret(name: str) -> str:
    return env(name, default=LOCAL_DEFAULTS[name] if DEBUG else "")


SECRET_KEY = secret("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "enrollment",
    "purchases",
    "allocations",
    "sessions_sched",
    "workers",
]

MIDDLEWARE = [
    "enrollment.web_metrics.RequestMetricsMiddleware",  # first, so it times everything below it
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The payment provider's webhooks (URL names) are served with DIRECT_MIDDLEWARE around them instead of MIDDLEWARE:
# they need no session, user, CSRF token, messages or static files, and the rest costs every confirmation CPU
# (enrollment/handler.py). DIRECT_MIDDLEWARE keeps MIDDLEWARE's order (a system check holds it to that).
DIRECT_ROUTES = ["payment-confirmation", "payment-refund"]
DIRECT_MIDDLEWARE = [
    "enrollment.web_metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "settings.urls"
WSGI_APPLICATION = "settings.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {"default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:15432/enrollment")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Django's PostgreSQL backend with a health check that costs no round trip (workers/db/base.py).
DATABASES["default"]["ENGINE"] = "workers.db"
# psycopg prepares a statement it ran this many times on a connection (0: at once; None: never), so PostgreSQL
# parses and plans the hot paths' statements once per connection instead of on every request and batch. Only
# server-side bound statements (workers.sql) are prepared; Django's ORM binds client-side. "off": never.
_prepare = env("DB_PREPARE_THRESHOLD", default="2")
DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None if _prepare == "off" else int(_prepare)

REDIS_PASSWORD = secret("REDIS_PASSWORD")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": env("REDIS_URL", default="redis://127.0.0.1:16379/0"),
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": env.float("REDIS_CONNECT_TIMEOUT", default=1.0),
            "SOCKET_TIMEOUT": env.float("REDIS_TIMEOUT", default=1.0),
            # Redis requires a password (AUTH), and values are JSON: whoever can reach Redis without the password
            # can write nothing, and a planted value is data, never code (pickle would run it).
            "PASSWORD": REDIS_PASSWORD or None,
            "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
        },
        "TIMEOUT": env.int("STUDENT_PAGE_CACHE_SECONDS", default=300),
        # Empty in production, so the student pages live under `student:home:{id}`; test runs set one so
        # concurrent runs sharing a Redis never see each other's pages.
        "KEY_PREFIX": env("CACHE_KEY_PREFIX", default=""),
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(BASE_DIR / "var" / "static")))  # collectstatic target

# --- Kafka -------------------------------------------------------------------------------------
KAFKA_BROKERS = env("KAFKA_BROKERS", default="127.0.0.1:19092")
# Prefix for every topic name; lets several pipelines (or test runs) share one broker.
# Authentication (docs/operations.md, "Kafka authentication"): SASL/SCRAM, one principal per process kind, each
# allowed only its own topics and group by ACLs (workers/kafka_acls.py). SASL_SSL in production, with the CA of
# the brokers' certificates in KAFKA_SSL_CA_LOCATION; the local stack's broker speaks SASL_PLAINTEXT on loopback.
KAFKA_SECURITY_PROTOCOL = env("KAFKA_SECURITY_PROTOCOL", default="SASL_PLAINTEXT")
KAFKA_SASL_MECHANISM = env("KAFKA_SASL_MECHANISM", default="SCRAM-SHA-256")
KAFKA_SSL_CA_LOCATION = env("KAFKA_SSL_CA_LOCATION", default="")
KAFKA_USERNAME = env("KAFKA_USERNAME", default="")
KAFKA_PASSWORD = secret("KAFKA_PASSWORD")
# Which principal writes which event topics (base names; "*": every one). Each stage's principal also reads its
# own topics and group and writes the dead-letter topic, which only dead_letters reads (workers/kafka_acls.py).
KAFKA_WRITES = {
    # The webhooks and the API write purchase-confirmed, purchase-cancelled and allocation-released; the admin's
    # dead-letter replay republishes to any event topic, so the web principal writes them all.
    "web": "*",
    "relay": "*",  # publishes what any process left in the outbox
    "purchases": ["purchase-created"],
    "allocations": ["trainer-allocated"],
    "sessions": ["sessions-scheduled"],  # and topup_sessions, which runs as sessions
}
KAFKA_TOPIC_PREFIX = env("KAFKA_TOPIC_PREFIX", default="")
KAFKA_TOPIC_PARTITIONS = env.int("KAFKA_TOPIC_PARTITIONS", default=6)
# Replicas per partition of the topics create_topics makes, and how many must have an event before the broker
# acknowledges it (producers send acks=all). Production: 3 and 2 (`check --deploy` warns below); the local stack
# has one broker unless STACK_KAFKA_BROKERS=3 (then the Makefile sets 3 and 2).
KAFKA_TOPIC_REPLICATION = env.int("KAFKA_TOPIC_REPLICATION", default=1)
KAFKA_TOPIC_MIN_INSYNC_REPLICAS = env.int("KAFKA_TOPIC_MIN_INSYNC_REPLICAS",
                                          default=2 if KAFKA_TOPIC_REPLICATION >= 3 else 1)
# How long a web worker's producer gathers events before it sends them (librdkafka's linger.ms). A webhook
# publishes one event per request, after its commit and off the request's path, so the answer never waits for it;
# at 200 requests a second, 5 ms (the consumers' value: they publish a whole batch at once) sent nearly every event
# in a produce request of its own. Interleaved runs, broker CPU per webhook request: 0.48-0.51 ms at 5 against
# 0.33-0.40 at 50 (200 req/s), 0.29-0.34 against 0.15-0.25 (400 req/s); bench/analysis.md. The cost: an event
# reaches its topic up to this much later. 0 to 1000.
WEB_KAFKA_LINGER_MS = env.int("WEB_KAFKA_LINGER_MS", default=50)
KAFKA_MAX_MESSAGE_BYTES = env.int("KAFKA_MAX_MESSAGE_BYTES", default=256 * 1024)  # largest event value accepted
# A consumed message with more headers than this, or more header bytes, is invalid (dead-lettered without them).
KAFKA_MAX_HEADERS = env.int("KAFKA_MAX_HEADERS", default=32)
KAFKA_MAX_HEADER_BYTES = env.int("KAFKA_MAX_HEADER_BYTES", default=16 * 1024)
# A dead-letter copy over this size is cut to fit (workers.oversize); keep it under the broker's and the topic's
# message.max.bytes (1 MiB by default) and the producer's (workers.kafka).
DEAD_LETTER_MAX_BYTES = env.int("DEAD_LETTER_MAX_BYTES", default=900_000)

# --- The allocation API and the payment webhook ------------------------------------------------
ADMIN_SERVICE_URL = env("ADMIN_SERVICE_URL", default="http://127.0.0.1:8000")
ALLOCATION_API_TOKEN = secret("ALLOCATION_API_TOKEN")
ALLOCATION_API_TIMEOUT_SECONDS = env.float("ALLOCATION_API_TIMEOUT_SECONDS", default=30.0)
PAYMENT_WEBHOOK_SECRET = secret("PAYMENT_WEBHOOK_SECRET")
# During a rotation, the secrets the provider may still sign with (comma-separated); empty once it switched over.
PAYMENT_WEBHOOK_PREVIOUS_SECRETS = env.list("PAYMENT_WEBHOOK_PREVIOUS_SECRETS", default=[])
# Reading a webhook body: cut off a client that sends it slower than this (under gunicorn).
WEBHOOK_BODY_TIMEOUT_SECONDS = env.float("WEBHOOK_BODY_TIMEOUT_SECONDS", default=5.0)
# The largest request body Django reads at all: the API's largest is an allocation batch of 500 (about 60 KB).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=256 * 1024)
PAYMENT_WEBHOOK_TOLERANCE_SECONDS = env.int("PAYMENT_WEBHOOK_TOLERANCE_SECONDS", default=300)

# --- The pipeline: its stages and its event contract ---------------------------------------------
# The stages in flow order, each the dotted path of a workers.stage.Stage. The framework (workers.registry)
# loads them once; consumer commands, worker_health, create_topics, the trace page, the demo, the bench and
# the e2e harness all read this list. Adding a stage: docs/adding-a-stage.md.
PIPELINE_STAGES = [
    "purchases.stage.STAGE",
    "allocations.stage.STAGE",
    "sessions_sched.stage.STAGE",
    "enrollment.cache_invalidation.STAGE",
]
# Per stage name, an ordering policy other than the stage's own (workers.stage.Ordering: key, key-retries-only,
# none), e.g. STAGE_ORDERING=allocations=key-retries-only during an incident (docs/operations.md, "Key order").
STAGE_ORDERING = env.dict("STAGE_ORDERING", default={})
# Event types, payload schemas, the topic of each type and the partition key field (a workers.contract.Contract).
PIPELINE_CONTRACT = "enrollment.events.CONTRACT"
# The sections of the student pages (enrollment.pages), in the order they fill them.
STUDENT_PAGE_SECTIONS = [
    "purchases.pages.SECTION",
    "allocations.pages.SECTION",
    "sessions_sched.pages.SECTION",
]

# --- Workers -----------------------------------------------------------------------------------
WORKER_BATCH_SIZE = env.int("WORKER_BATCH_SIZE", default=500)
WORKER_BATCH_WAIT_SECONDS = env.float("WORKER_BATCH_WAIT_SECONDS", default=0.2)
# Transactions a consumer runs side by side on one polled batch, each on a share of its keys (workers.lanes): 2
# uses the second core for PostgreSQL while Python works on the other lane. 1: one at a time.
WORKER_LANES = env.int("WORKER_LANES", default=2)
# ...but only while the rest of the machine leaves a core to spare (workers.headroom): a consumer stops splitting
# its batches once the machine's CPUs, less its own process, were this busy over a quarter second, and splits again
# when they fall under the second figure. Lanes beside a busy pipeline only add statements and commits (measured:
# 13-15% of the end-to-end throughput). 1 turns the check off: always split.
WORKER_LANES_BUSY_LIMIT = env.float("WORKER_LANES_BUSY_LIMIT", default=0.7)
WORKER_LANES_RESUME_BELOW = env.float("WORKER_LANES_RESUME_BELOW", default=0.6)
# ...and only a batch that gives each lane this many events: a moderate load's small batches are quick anyway, and
# each lane pays its own transaction and commit.
WORKER_LANE_MIN_EVENTS = env.int("WORKER_LANE_MIN_EVENTS", default=100)
# Longest a consumer spends on one batch falling back one event at a time, or on one run of due retries, before it
# polls again; well under max.poll.interval.ms (workers.kafka), or a slow dependency gets the consumer evicted.
WORKER_TIME_BUDGET_SECONDS = env.float("WORKER_TIME_BUDGET_SECONDS", default=30.0)
# Stop the line (workers.line): a stage pauses itself when it gives up on more than STOP_THE_LINE_SHARE of its
# last STOP_THE_LINE_WINDOW events, or on STOP_THE_LINE_IN_A_ROW events in a row. A stage may set its own.
STOP_THE_LINE_SHARE = env.float("STOP_THE_LINE_SHARE", default=0.5)
STOP_THE_LINE_WINDOW = env.int("STOP_THE_LINE_WINDOW", default=200)
STOP_THE_LINE_IN_A_ROW = env.int("STOP_THE_LINE_IN_A_ROW", default=100)
RETRY_BASE_SECONDS = env.float("RETRY_BASE_SECONDS", default=1.0)
RETRY_MAX_SECONDS = env.float("RETRY_MAX_SECONDS", default=300.0)
OUTBOX_RETENTION_DAYS = env.int("OUTBOX_RETENTION_DAYS", default=7)
# The dedup window: how long a group remembers the events it processed. Topics keep events no longer than that
# (KAFKA_TOPIC_RETENTION_DAYS, set by create_topics; a system check refuses more), or a group reset to offset 0
# would re-read events whose claims are gone and do their work twice.
PROCESSED_EVENT_RETENTION_DAYS = env.int("PROCESSED_EVENT_RETENTION_DAYS", default=30)
KAFKA_TOPIC_RETENTION_DAYS = env.int("KAFKA_TOPIC_RETENTION_DAYS", default=7)
METRICS_PORT = env.int("METRICS_PORT", default=0)  # 0: workers serve no metrics endpoint
METRICS_ADDR = env("METRICS_ADDR", default="127.0.0.1")  # 0.0.0.0 in containers, so Prometheus can scrape

LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Production: security, static files, operations endpoints -----------------------------------
# Every switch defaults to what works on local plain http; production turns them on from the environment
# (docs/operations.md lists the values). `manage.py check --deploy --fail-level WARNING` passes with them.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Never redirected: probes and the Prometheus scraper, and the allocation API that the allocation consumer calls
# inside the network (ADMIN_SERVICE_URL); a redirect would not protect its token, which is sent before it.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$", r"^api/allocations"]
# Behind a TLS-terminating proxy: trust its X-Forwarded-Proto (only if the proxy always sets or strips it).
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("SECURE_PROXY_SSL_HEADER", default=False) else None
)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS = [
    # security.W021 (HSTS preload off): joining the browsers' preload list is a decision about the whole domain,
    # hard to undo for months, taken by the domain's owner and not by this app; SECURE_HSTS_PRELOAD=1 once taken.
    "security.W021",
]

# Hashed, compressed static files (whitenoise serves them under gunicorn) once `collectstatic` ran; the
# container image sets STATIC_MANIFEST=1. Off by default: with it, rendering a page whose static file was not
# collected fails, and the test suite does not run collectstatic.
STATIC_MANIFEST = env.bool("STATIC_MANIFEST", default=False)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# GET /metrics answers loopback callers, or any caller with `Authorization: Bearer <METRICS_TOKEN>` (if set).
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# Timeout of the Kafka check of /readyz (PostgreSQL and Redis use their connection timeouts).
HEALTH_CHECK_TIMEOUT_SECONDS = env.float("HEALTH_CHECK_TIMEOUT_SECONDS", default=2.0)
# How long a student-pages token (enrollment.access.issue_token) stays valid.
STUDENT_TOKEN_MAX_AGE_SECONDS = env.int("STUDENT_TOKEN_MAX_AGE_SECONDS", default=3600)
READYZ_KAFKA_CACHE_SECONDS = env.float("READYZ_KAFKA_CACHE_SECONDS", default=1.0)  # /readyz reuses its Kafka check
