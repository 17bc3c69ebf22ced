"""Django settings for the webcare desk.

Every deployment-specific value comes from the environment (12-factor), read with
django-environ. The defaults give the embedded single-machine setup: SQLite under
``var/`` and a local Redis on a private port, both started by ``make run``.
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# The embedded default is a developer machine; production must set SECRET_KEY.
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG and env.bool("WEBCARE_REQUIRE_SECRET_KEY", default=False):
        raise environ.ImproperlyConfigured("SECRET_KEY must be set in production")
    _key_file = VAR_DIR / "secret_key"
    if _key_file.exists():
        SECRET_KEY = _key_file.read_text().strip()
    else:
        from django.core.management.utils import get_random_secret_key

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        SECRET_KEY = get_random_secret_key()
        _key_file.write_text(SECRET_KEY)
        _key_file.chmod(0o600)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "channels",
    "inbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication: the signed-in agent's interface language wins.
    "webcare.middleware.AgentLanguageMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "webcare.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "webcare.asgi.application"

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
                "django.template.context_processors.i18n",
                "inbox.views.common.desk_context",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'webcare.sqlite3'}"),
}
_db = DATABASES["default"]
_TEST_RUN_ID = env.str("WEBCARE_TEST_RUN_ID", default="")
# The test suite points its Celery worker subprocess at the test database.
if env.str("WEBCARE_DATABASE_NAME", default=""):
    _db["NAME"] = env.str("WEBCARE_DATABASE_NAME")
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the single writer; IMMEDIATE transactions take the
    # write lock up front so concurrent writers queue on busy_timeout instead of
    # failing with "database is locked" when a read transaction upgrades.
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
            ),
        }
    )
    # Tests need a file database so a real Celery worker process can see it; the
    # run id keeps parallel test runs on one machine apart.
    _db["TEST"] = {"NAME": str(VAR_DIR / f"test-webcare{_TEST_RUN_ID}.sqlite3")}
else:
    _db["TEST"] = {"NAME": f"test_webcare{_TEST_RUN_ID}"}
    _db.setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    _db["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "inbox:inbox"
LOGOUT_REDIRECT_URL = "login"

# --- Internationalisation -----------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("nl", _("Dutch"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Europe/Amsterdam")
USE_I18N = True
USE_TZ = True

# --- Static files -------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=str(VAR_DIR / "staticfiles"))
# Serve straight from the app's static folders too, so the embedded setup works
# before (or without) collectstatic.
WHITENOISE_USE_FINDERS = True
Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Redis, Channels, Celery --------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6390/0")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": env.str("CHANNELS_PREFIX", default="webcare")},
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "webcare",
    }
}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "inbox.tasks.ingest.*": {"queue": "ingest"},
    "inbox.tasks.polling.*": {"queue": "ingest"},
    "inbox.tasks.outbound.*": {"queue": "outbound"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE = {
    "poll-due-sources": {
        "task": "inbox.tasks.polling.poll_due_sources",
        "schedule": timedelta(seconds=env.float("POLL_TICK_SECONDS", default=2.0)),
        "options": {"queue": "ingest", "expires": 10},
    },
    "evaluate-sla": {
        "task": "inbox.tasks.sla.evaluate_sla",
        "schedule": timedelta(seconds=30),
        "options": {"queue": "default", "expires": 25},
    },
    # Safety net: the sweep also runs whenever capacity frees up or an agent comes online.
    "sweep-all-queues": {
        "task": "inbox.tasks.assignment.sweep_all_queues",
        "schedule": timedelta(seconds=30),
        "options": {"queue": "default", "expires": 25},
    },
    "expire-presence": {
        "task": "inbox.tasks.assignment.expire_presence",
        "schedule": timedelta(seconds=15),
        "options": {"queue": "default", "expires": 12},
    },
    # Webhook deliveries stored while the broker was away are processed late, never lost.
    "process-unprocessed-webhooks": {
        "task": "inbox.tasks.webhooks.process_unprocessed_webhooks",
        "schedule": timedelta(seconds=60),
        "options": {"queue": "ingest", "expires": 50},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- E-mail (escalations to back-office teams) ----------------------------------
# EMAIL_URL like smtp://user:pass@host:587/?tls=True; the default prints mail to the log.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="webcare-desk@localhost")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
# Answers from e-mail teams come back to this address; {token} identifies the escalation.
ESCALATION_REPLY_ADDRESS = env.str("ESCALATION_REPLY_ADDRESS", default="escalations+{token}@localhost")
# Shared secret for mail gateways posting answers to /api/v1/escalations/inbound-email/;
# empty switches that endpoint off.
ESCALATION_INBOUND_SECRET = env.str("ESCALATION_INBOUND_SECRET", default="")
ESCALATION_EMAIL_MAX_RETRIES = env.int("ESCALATION_EMAIL_MAX_RETRIES", default=6)
ESCALATION_EMAIL_RETRY_SECONDS = env.int("ESCALATION_EMAIL_RETRY_SECONDS", default=60)

# --- Desk behaviour -----------------------------------------------------------
WEBCARE = {
    # Languages the team answers in (ISO 639-1); language detection picks among these.
    "LANGUAGES": env.list("DESK_LANGUAGES", default=["nl", "en", "fr", "de", "es", "it", "pt", "ja", "zh", "ko"]),
    # A customer writing on a solved ticket within this window reopens it; later
    # messages start a new ticket linked to the old one.
    "REOPEN_WINDOW": timedelta(days=env.int("REOPEN_WINDOW_DAYS", default=7)),
    # Longest message text accepted; longer items are dead-lettered, not truncated.
    "MAX_TEXT_LENGTH": env.int("MAX_TEXT_LENGTH", default=100_000),
    # A webhook body larger than this is refused with 413.
    "WEBHOOK_MAX_BYTES": env.int("WEBHOOK_MAX_BYTES", default=1_048_576),
    # Meta (Facebook Pages, Messenger, Instagram): one app per desk. The app secret signs
    # every webhook (X-Hub-Signature-256) and Graph API calls (appsecret_proof); the verify
    # token answers the subscription handshake. Both empty: /webhooks/meta/ is switched off.
    "META_APP_SECRET": env.str("META_APP_SECRET", default=""),
    "META_VERIFY_TOKEN": env.str("META_VERIFY_TOKEN", default=""),
    "META_GRAPH_URL": env.str("META_GRAPH_URL", default="https://graph.facebook.com"),
    "META_GRAPH_VERSION": env.str("META_GRAPH_VERSION", default="v23.0"),
    # Polling back-off after retryable errors.
    "POLL_BACKOFF_BASE_SECONDS": env.float("POLL_BACKOFF_BASE_SECONDS", default=5.0),
    "POLL_BACKOFF_MAX_SECONDS": env.float("POLL_BACKOFF_MAX_SECONDS", default=900.0),
    # Outbound delivery retries before a retryable failure is stored as failed.
    "DELIVERY_MAX_RETRIES": env.int("DELIVERY_MAX_RETRIES", default=8),
    "DELIVERY_BACKOFF_MAX_SECONDS": env.int("DELIVERY_BACKOFF_MAX_SECONDS", default=600),
    "HTTP_TIMEOUT_SECONDS": env.float("HTTP_TIMEOUT_SECONDS", default=10.0),
    # An agent whose desk sent no heartbeat for this long is offline.
    "PRESENCE_TTL_SECONDS": env.int("PRESENCE_TTL_SECONDS", default=60),
    # A customer's follow-up goes back to the agent of their tickets from this many days.
    "STICKY_FOLLOW_UP_DAYS": env.int("STICKY_FOLLOW_UP_DAYS", default=30),
    # How often each process checks whether routing rules changed.
    "ROUTING_RULES_CHECK_SECONDS": env.float("ROUTING_RULES_CHECK_SECONDS", default=1.0),
}

# --- REST framework -----------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Webcare desk API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # One name for the platform choices wherever they appear (sources, routing rules).
    "ENUM_NAME_OVERRIDES": {"Platform": "inbox.models.sources.Platform"},
}

# --- Security headers ---------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): scripts only from our own static files, so a
# social text that slipped past escaping still could not run. Inline style attributes
# stay allowed (the admin uses them); the desk's own pages use none.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "https:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
SESSION_COOKIE_HTTPONLY = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)

# --- Logging ------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
