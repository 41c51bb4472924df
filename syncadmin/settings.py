"""The only settings module. Every value comes from the environment, with defaults that let a fresh clone run.

Variables (see README "Configuration" and .env.example): DATABASE_URL, SANDBOX_DATABASE_URL, REDIS_URL,
SECRET_KEY(_FILE), SYNCADMIN_ENCRYPTION_KEY(_FILE), DEBUG, ALLOWED_HOSTS, SYNCADMIN_DATA_DIR, PORT,
SANDBOX_ENABLED, SYNC_JOB_RETENTION_DAYS, SYNC_SKIP_REPEATED_FAILURES, SYNC_LOCK_TIMEOUT_SECONDS,
SYNC_WORKER_LOST_AFTER_SECONDS, SYNC_SHARED_FULL_SYNC_HELPERS, SYNC_BC_DELETION_CHECK_MINUTES, SESSION_COOKIE_SECURE,
SYNC_RECONCILE_EVERY_HOURS, SYNC_RETRY_BACKOFF_MINUTES, SYNC_RETRY_BACKOFF_MAX_MINUTES, SECURE_SSL_REDIRECT,
SECURE_HSTS_SECONDS, SECURE_HSTS_INCLUDE_SUBDOMAINS,
SECURE_HSTS_PRELOAD, BEHIND_HTTPS_PROXY, EMAIL_HOST, EMAIL_PORT,
EMAIL_HOST_USER, EMAIL_HOST_PASSWORD(_FILE), EMAIL_USE_TLS, EMAIL_USE_SSL, DEFAULT_FROM_EMAIL, METRICS_TOKEN(_FILE),
SYNC_BC_API_ROUTES, LOG_FORMAT.

A bad value stops the process at start with one line naming the variable and the expected form.
"""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

from syncadmin import env

BASE_DIR = Path(__file__).resolve().parent.parent

# pytest-django imports these settings (pyproject.toml). A test run gets a throwaway data folder, so tests never
# touch data/ nor a production folder; exporting it lets processes the tests start share its keys and Redis socket.
TESTING = "pytest" in sys.modules
if TESTING:
    os.environ["SYNCADMIN_DATA_DIR"] = tempfile.mkdtemp(prefix="syncadmin-test-")
    atexit.register(shutil.rmtree, os.environ["SYNCADMIN_DATA_DIR"], ignore_errors=True)

try:
    DATA_DIR = env.data_dir("SYNCADMIN_DATA_DIR", default=BASE_DIR / "data")

    DEBUG = env.env_bool("DEBUG", default=True)

    SECRET_KEY = env.env_secret_key("SECRET_KEY")
    if not SECRET_KEY:
        if not DEBUG:
            raise env.SettingError("SECRET_KEY is required when DEBUG is off: set SECRET_KEY or SECRET_KEY_FILE.")
        SECRET_KEY = env.local_secret_key(DATA_DIR)

    # Key that encrypts connection secrets at rest (a Fernet key: 32 url-safe base64-encoded bytes).
    ENCRYPTION_KEY = env.env_secret("SYNCADMIN_ENCRYPTION_KEY")
    if not ENCRYPTION_KEY:
        if not DEBUG:
            raise env.SettingError(
                "SYNCADMIN_ENCRYPTION_KEY is required when DEBUG is off: set it (or SYNCADMIN_ENCRYPTION_KEY_FILE) "
                "to a Fernet key, made with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'."
            )
        ENCRYPTION_KEY = env.local_fernet_key(DATA_DIR)
    env.check_fernet_key("SYNCADMIN_ENCRYPTION_KEY", ENCRYPTION_KEY)

    ALLOWED_HOSTS = env.env_list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

    DATABASES = {
        "default": env.env_database("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'syncadmin.sqlite3'}"),
        # The sandbox keeps its emulated Business Central and Dataverse data apart from ours.
        "sandbox": env.env_database("SANDBOX_DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'sandbox.sqlite3'}"),
    }

    # Default: the embedded Redis that `make run` and the test suite start on a socket in the data folder.
    EMBEDDED_REDIS_SOCKET = DATA_DIR / "redis.sock"
    REDIS_URL = env.env_redis_url("REDIS_URL", default=f"unix://{EMBEDDED_REDIS_SOCKET}")

    # Port of the web process started by `manage.py serve`; the demo connections point at its /sandbox/.
    PORT = env.env_int("PORT", default=8000, minimum=1, maximum=65535)

    SANDBOX_ENABLED = env.env_bool("SANDBOX_ENABLED", default=True)
    SYNC_JOB_RETENTION_DAYS = env.env_int("SYNC_JOB_RETENTION_DAYS", default=30, minimum=1)
    # Mark a record skipped when it fails twice in a row with the same (non-transient) error, as BC does.
    SYNC_SKIP_REPEATED_FAILURES = env.env_bool("SYNC_SKIP_REPEATED_FAILURES", default=True)
    # One run per mapping at a time: the lock expires this long after its worker died (a live run renews it).
    SYNC_LOCK_TIMEOUT_SECONDS = env.env_int("SYNC_LOCK_TIMEOUT_SECONDS", default=300, minimum=2)
    # A running run's worker renews a heartbeat a few times within this; once it is this old, the worker is taken as
    # stopped: the scheduler tick (every 30 s) fails the run, frees its lock and resumes it (within a minute in all).
    SYNC_WORKER_LOST_AFTER_SECONDS = env.env_int("SYNC_WORKER_LOST_AFTER_SECONDS", default=30, minimum=3)
    # Extra RQ jobs that help a full synchronization (each takes pages while the first one reads).
    # Custom API pages of Business Central extensions to offer as tables (`publisher/group/version`, comma-separated):
    # Business Central has no call that lists the routes extensions publish, so they are named here.
    SYNC_BC_API_ROUTES = env.env_list("SYNC_BC_API_ROUTES", default=[])
    SYNC_SHARED_FULL_SYNC_HELPERS = env.env_int("SYNC_SHARED_FULL_SYNC_HELPERS", default=3, minimum=0)
    # Business Central has no change tracking of deletions: a run checks that its coupled ids still exist (pages of
    # ids) at most this often, sooner when a "deleted" change notification came.
    SYNC_BC_DELETION_CHECK_MINUTES = env.env_int("SYNC_BC_DELETION_CHECK_MINUTES", default=60, minimum=1)
    # A record failing transiently (throttled, 5xx, timeout, outcome unknown) is never skipped; runs retry it after
    # 1, 2, 4 ... of these minutes, at most the maximum (jobs/engine/backoff.py), the wait starting again on success.
    SYNC_RETRY_BACKOFF_MINUTES = env.env_int("SYNC_RETRY_BACKOFF_MINUTES", default=1, minimum=0)
    SYNC_RETRY_BACKOFF_MAX_MINUTES = env.env_int("SYNC_RETRY_BACKOFF_MAX_MINUTES", default=60, minimum=0)
    # Each mapping with an enabled schedule is reconciled this long after its last reconciliation (daily by default).
    SYNC_RECONCILE_EVERY_HOURS = env.env_int("SYNC_RECONCILE_EVERY_HOURS", default=24, minimum=1)
    SESSION_COOKIE_SECURE = env.env_bool("SESSION_COOKIE_SECURE", default=not DEBUG)

    # HTTPS, when DEBUG is off: syncadmin runs behind an HTTPS proxy (README, Production).
    SECURE_SSL_REDIRECT = env.env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
    SECURE_HSTS_SECONDS = env.env_int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
    SECURE_HSTS_PRELOAD = env.env_bool("SECURE_HSTS_PRELOAD", default=False)
    if env.env_bool("BEHIND_HTTPS_PROXY", default=False):
        # Only behind a proxy that sets this header itself: a client could otherwise claim HTTPS.
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    # Mail, for alerts. Without EMAIL_HOST, mails are written to the worker's output instead of being sent.
    EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
    EMAIL_BACKEND = (
        "django.core.mail.backends.smtp.EmailBackend"
        if EMAIL_HOST
        else "django.core.mail.backends.console.EmailBackend"
    )
    EMAIL_PORT = env.env_int("EMAIL_PORT", default=587, minimum=1, maximum=65535)
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env.env_secret("EMAIL_HOST_PASSWORD") or ""
    EMAIL_USE_TLS = env.env_bool("EMAIL_USE_TLS", default=True)
    EMAIL_USE_SSL = env.env_bool("EMAIL_USE_SSL", default=False)
    if EMAIL_USE_TLS and EMAIL_USE_SSL:
        raise env.SettingError("EMAIL_USE_TLS and EMAIL_USE_SSL are both on: turn one of them off.")
    EMAIL_TIMEOUT = 30
    DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL") or "syncadmin@localhost"
    SERVER_EMAIL = DEFAULT_FROM_EMAIL

    # The bearer token Prometheus sends to /metrics; without one, /metrics does not exist (404).
    METRICS_TOKEN = env.env_secret("METRICS_TOKEN")
    if METRICS_TOKEN is not None and len(METRICS_TOKEN) < 16:
        raise env.SettingError(
            f"METRICS_TOKEN is too short ({len(METRICS_TOKEN)} characters): use at least 16 random characters, made "
            "with: python -c 'import secrets; print(secrets.token_urlsafe(32))'."
        )

    # "json": one JSON object per line, for log collectors; "plain": for people.
    LOG_FORMAT = env.env_choice("LOG_FORMAT", default="plain", choices=("plain", "json"))
except env.SettingError as exc:
    # One readable line instead of a traceback: every process (web, worker, scheduler, manage.py) stops here.
    raise SystemExit(f"Configuration error: {exc}") from None

CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "django_filters",
    "adminkit",
    "connectors",
    "mappings",
    "coupling",
    "jobs",
    "operations",
    "sandbox",
    "syncadmin",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files with DEBUG off (gunicorn serves no files itself); right after SecurityMiddleware, as documented.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "syncadmin.urls"
WSGI_APPLICATION = "syncadmin.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],  # each app holds its own templates (403.html is syncadmin's)
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

DATABASE_ROUTERS = ["sandbox.routers.SandboxRouter"]

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
# Every date and time with its zone, in one format on every page (syncadmin/formats/en/formats.py).
FORMAT_MODULE_PATH = ["syncadmin.formats"]

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"  # `manage.py collectstatic` fills it; `serve --production` runs that first
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies next to each file; no manifest, so pages render even before a collectstatic.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# With DEBUG on, WhiteNoise serves straight from the apps' static folders and notices new files.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
# A load balancer and Prometheus may ask over plain HTTP inside the network; the sandbox's emulated services are
# reached by our own connectors on loopback (the demo, `runsandbox`, the bench), which follow no redirect.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$", r"^sandbox/"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "admin:login"

if TESTING:
    # Hashing with a deliberately slow algorithm only slows the suite down.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# django-rq: three named queues on one Redis; jobs are enqueued only after the database commit.
RQ_QUEUES = {name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600} for name in ("high", "default", "low")}
RQ = {"COMMIT_MODE": "on_db_commit"}
# Not django-rq's own admin entry, whose pages let in any staff user: the dashboard is mounted once, at /admin/rq/,
# behind its permission (syncadmin/urls.py), and the admin index links to it for those who have it.
RQ_SHOW_ADMIN_LINK = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "syncadmin.log_format.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
