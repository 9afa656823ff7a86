"""Crowd Monitor settings.

Every setting comes from the environment (or a `.env` file beside manage.py, read by python-decouple);
`.env.example` lists them all. With no DATABASE_URL / REDIS_URL the project runs on SQLite and the
in-memory channel layer, so a fresh checkout needs nothing installed beyond requirements.txt.
"""

from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from decouple import Csv, config
from django.core.exceptions import ImproperlyConfigured
from redis.connection import parse_url as redis_parse_url
from redis.exceptions import ConnectionError as RedisConnectionError

BASE_DIR = Path(__file__).resolve().parent.parent


def _tile_origin(url: str) -> str:
    """The CSP source for a tile URL template: https://{s}.tile.example.org/{z}/... -> https://*.tile.example.org"""
    parts = urlsplit(url.replace("{s}", "*"))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


DEBUG = config("DEBUG", default=False, cast=bool)

# A development key is only acceptable while DEBUG is on; production must set its own.
_DEV_SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"
SECRET_KEY = config("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set. Set SECRET_KEY in the environment or in .env (or set DEBUG=True for local development)."
    )

ALLOWED_HOSTS = config("ALLOWED_HOSTS", default="localhost,127.0.0.1,[::1]", cast=Csv())
CSRF_TRUSTED_ORIGINS = config("CSRF_TRUSTED_ORIGINS", default="", cast=Csv())

INSTALLED_APPS = [
    "daphne",  # gives `runserver` WebSocket support
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "accounts",
    "locations",
    "alerts",
    "detection",
    "dashboard",
]

MIDDLEWARE = [
    "crowd_monitor.middleware.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "crowd_monitor.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.audit.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "crowd_monitor.urls"
ASGI_APPLICATION = "crowd_monitor.asgi.application"
WSGI_APPLICATION = "crowd_monitor.wsgi.application"

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

# --- Database -------------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        config("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=config("DB_CONN_MAX_AGE", default=60, cast=int),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Give up connecting after this many seconds: an unreachable database (a host gone from the network) must
    # fail fast, so the detection worker spools its readings instead of hanging for minutes in connect().
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = config(
        "DB_CONNECT_TIMEOUT", default=5, cast=int
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the detection worker and the alert worker write concurrently; wait for the
    # lock instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer and cache ----------------------------------------------------------------------
REDIS_URL = config("REDIS_URL", default="")
# Connection options of channels-redis (redis-py) besides the address:
# - No read timeout, as before redis-py 8 (django/channels_redis#422): consumers wait for messages with a 5 s
#   blocking BZPOPMIN, which redis-py 8's default 5 s socket timeout cut short, crashing every consumer idle for
#   5 s; any timeout also sends commands through asyncio.wait_for, which on Python 3.11 can swallow a
#   disconnecting consumer's cancellation.
# - A connect timeout is fine (and needed): with Redis down or unreachable, a publish gives up quickly instead of
#   hanging the worker or a request (see also PUBLISH_TIMEOUT).
# - One retry on a connection error: after Redis restarts, pooled connections are dead; without a retry the first
#   command on each (a WebSocket joining its group, the worker's next publish) fails instead of reconnecting.
# - redis-py's asyncio pool fails commands beyond 100 connections in use (MaxConnectionsError) instead of waiting:
#   a few hundred dashboards (re)connecting at once, after a deploy, would get errors. Redis accepts 10,000.
REDIS_HOST_OPTIONS = {
    "socket_timeout": None,
    "socket_connect_timeout": config("REDIS_CONNECT_TIMEOUT", default=2.0, cast=float),
    "retry_on_error": [RedisConnectionError],
    "max_connections": config("REDIS_MAX_CONNECTIONS", default=1000, cast=int),
}
# Which channels-redis layer carries live updates: "pubsub" (Redis Pub/Sub: one message per group per web
# process, fanned out in memory; at-most-once, like the live view it feeds) or "core" (Redis sorted sets: buffered
# up to CHANNEL_CAPACITY per process, but every consumer of a process takes turns at one blocking pop, so a large
# group is delivered in seconds, not milliseconds: docs/PERFORMANCE.md, bench/ws_fanout.py).
CHANNEL_LAYER_KIND = config("CHANNEL_LAYER_KIND", default="pubsub")
if CHANNEL_LAYER_KIND not in ("pubsub", "core"):
    raise ImproperlyConfigured("CHANNEL_LAYER_KIND must be pubsub or core.")


def _redis_db(url: str) -> int:
    """The database number redis-py connects to for a Redis URL (0 when not given), read as redis-py reads it:
    redis://host:6379/5 or redis://host:6379?db=5 (the query wins over the path), unix:///run/redis.sock?db=5 (a
    socket's path is no database number)."""
    try:
        return int(redis_parse_url(url).get("db") or 0) if url else 0
    except ValueError:  # not a Redis URL: connecting fails with redis-py's own message
        return 0


# Redis Pub/Sub channels belong to the whole Redis server, not to one of its numbered databases: two deployments
# sharing a server on different databases (staging and production, or two sites) each heard the other's live
# updates and alerts, and operators saw, counted and tried to handle alerts of places that are not theirs. The
# channel names' prefix therefore names the database (db 0 keeps channels-redis' own "asgi").
CHANNEL_LAYER_PREFIX = config(
    "CHANNEL_LAYER_PREFIX", default="asgi" if _redis_db(REDIS_URL) == 0 else f"asgi-db{_redis_db(REDIS_URL)}"
)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"
            if CHANNEL_LAYER_KIND == "pubsub"
            else "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, **REDIS_HOST_OPTIONS}],
                "prefix": CHANNEL_LAYER_PREFIX,
                # channels-redis silently drops messages for a channel over capacity; dashboards
                # that stall briefly must not lose crowd updates.
                "capacity": config("CHANNEL_CAPACITY", default=1000, cast=int),
                "expiry": 30,
            },
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Seconds a publish to live clients may take before it is given up (and logged); the reading is already stored.
PUBLISH_TIMEOUT = config("PUBLISH_TIMEOUT", default=2.0, cast=float)
# A live socket re-checks at least this often that its user may still watch (signed in, active, permitted), whether
# or not the client pings (dashboard/consumers.py).
WS_ACCESS_RECHECK_SECONDS = config("WS_ACCESS_RECHECK_SECONDS", default=20.0, cast=float)

# --- Auth -----------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Accounts with no role and no permission of their own are viewers (accounts/backends.py).
AUTHENTICATION_BACKENDS = ["accounts.backends.RoleBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "login"
# Roles are groups (accounts/roles.py); see docs/SECURITY.md.
# Sign-in lockout (login page, admin, token endpoint): after this many failures for one username from one address
# (or LOGIN_MAX_FAILURES_PER_IP from one address), refuse further attempts for LOGIN_LOCKOUT_SECONDS.
LOGIN_MAX_FAILURES = config("LOGIN_MAX_FAILURES", default=5, cast=int)
LOGIN_MAX_FAILURES_PER_IP = config("LOGIN_MAX_FAILURES_PER_IP", default=50, cast=int)
LOGIN_LOCKOUT_SECONDS = config("LOGIN_LOCKOUT_SECONDS", default=900, cast=int)
# Lifetime (seconds) of tokens from POST /api/auth/token/ that ask for none; 0: no expiry.
API_TOKEN_LIFETIME = config("API_TOKEN_LIFETIME", default=90 * 24 * 3600, cast=int)
# A signed-in browser session lasts one shift by default.
SESSION_COOKIE_AGE = config("SESSION_COOKIE_AGE", default=12 * 3600, cast=int)

# --- Internationalisation -------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = config("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Reading pushes are tiny; refuse oversized bodies before parsing them.
DATA_UPLOAD_MAX_MEMORY_SIZE = config("DATA_UPLOAD_MAX_MEMORY_SIZE", default=256 * 1024, cast=int)

# --- REST API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "accounts.authentication.DashboardSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Request rates ("N/s|min|hour|day"), counted in the default cache (Redis when REDIS_URL is set).
    "DEFAULT_THROTTLE_CLASSES": [
        "accounts.throttling.AnonymousRateThrottle",
        "accounts.throttling.TokenOrUserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": config("THROTTLE_ANON", default="120/min"),  # per client address, not signed in
        "user": config("THROTTLE_USER", default="3000/min"),  # per API token, or per user for browser sessions
        "readings": config("THROTTLE_READINGS", default="600/min"),  # readings pushed, per token
        "auth": config("THROTTLE_AUTH", default="30/min"),  # POST /api/auth/token/, per client address
    },
    # Reverse proxies in front of the app that append to X-Forwarded-For: 0 ignores the header (clients could
    # forge it); 1 behind one load balancer. Decides the address for throttles, lockouts and the audit log.
    "NUM_PROXIES": config("NUM_PROXIES", default=0, cast=int),
    "DEFAULT_PAGINATION_CLASS": "crowd_monitor.api.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "crowd_monitor.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Crowd Monitor API",
    "DESCRIPTION": "Live crowd counts, density levels and alerts per location.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Every operation's error responses (400/401/403/404/413/415/429), see accounts/schema.py.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "accounts.schema.add_error_responses"],
}

# --- Email and notifications ----------------------------------------------------------------------
EMAIL_BACKEND = config("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = config("EMAIL_HOST", default="localhost")
EMAIL_PORT = config("EMAIL_PORT", default=25, cast=int)
EMAIL_HOST_USER = config("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = config("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = config("EMAIL_USE_TLS", default=False, cast=bool)
EMAIL_TIMEOUT = config("EMAIL_TIMEOUT", default=10, cast=int)
DEFAULT_FROM_EMAIL = config("DEFAULT_FROM_EMAIL", default="crowd-monitor@localhost")
# Dotted path of the SMS backend (see alerts/sms.py); the default logs messages instead of sending.
SMS_BACKEND = config("SMS_BACKEND", default="alerts.sms.ConsoleSmsBackend")
# Seconds a webhook exchange may take in all (connecting, sending, the answer's status and headers).
WEBHOOK_TIMEOUT = config("WEBHOOK_TIMEOUT", default=5, cast=float)
# Deliver each new notification in a background thread right after commit; the `run_alerts`
# worker retries whatever failed. Tests turn this off to deliver inline.
NOTIFICATIONS_ASYNC = config("NOTIFICATIONS_ASYNC", default=True, cast=bool)
# Base URL used in notification texts to link back to the dashboard.
SITE_URL = config("SITE_URL", default="http://localhost:8000")

# --- Stored readings ------------------------------------------------------------------------------
# Days a raw reading (CrowdLog) is kept: the run_alerts worker deletes older ones every hour (manage.py prune_readings
# for a one-off). History charts read the per-minute snapshots, kept longer (below). 0: keep readings forever.
# Parsed here rather than with cast=int: "-5", "1.5" or "ninety" must stop the start with this message, never be
# taken as "keep forever" or "delete everything". At most 100 years, so that now - retention is a date.
MAX_RETENTION_DAYS = 36500
_retention_days = config("READING_RETENTION_DAYS", default="90").strip()
if not (_retention_days.isdecimal() and int(_retention_days) <= MAX_RETENTION_DAYS):
    raise ImproperlyConfigured(
        f"READING_RETENTION_DAYS must be a whole number of days from 0 to {MAX_RETENTION_DAYS} (0 keeps readings "
        f"forever), not {_retention_days!r}."
    )
READING_RETENTION_DAYS = int(_retention_days)
# Days the per-minute history (DensitySnapshot) is kept, deleted with old readings; 0: keep it forever. At least a
# week, the longest chart; the default keeps a year and a month, so last year's events stay in admin's history list.
MIN_HISTORY_RETENTION_DAYS = 7
_history_days = config("HISTORY_RETENTION_DAYS", default="400").strip()
if not (
    _history_days.isdecimal()
    and (int(_history_days) == 0 or MIN_HISTORY_RETENTION_DAYS <= int(_history_days) <= MAX_RETENTION_DAYS)
):
    raise ImproperlyConfigured(
        f"HISTORY_RETENTION_DAYS must be 0 (keep the history forever) or a whole number of days from "
        f"{MIN_HISTORY_RETENTION_DAYS} (the week chart) to {MAX_RETENTION_DAYS}, not {_history_days!r}."
    )
HISTORY_RETENTION_DAYS = int(_history_days)

# --- Detection ------------------------------------------------------------------------------------
# A model name ultralytics can download (online) or a local path: a .pt file or an exported
# *_openvino_model folder.
DETECTION_MODEL = config("DETECTION_MODEL", default="yolov8n.pt")
DETECTION_CONFIDENCE = config("DETECTION_CONFIDENCE", default=0.25, cast=float)
if not 0 < DETECTION_CONFIDENCE <= 1:
    raise ImproperlyConfigured(f"DETECTION_CONFIDENCE must be above 0 and at most 1, not {DETECTION_CONFIDENCE:g}.")
DETECTION_DEVICE = config("DETECTION_DEVICE", default="cpu")
DETECTION_INTERVAL = config("DETECTION_INTERVAL", default=5.0, cast=float)
# Counting mode when neither the camera nor --mode says: auto (detection or density from what the frame shows),
# detect (sliced YOLO), density (needs DENSITY_MODEL).
DETECTION_MODE = config("DETECTION_MODE", default="auto")
# Crowd-density model for dense scenes (auto / density modes): a weights file kept outside the repository, e.g.
# a SANet sanet_shb_keras_layout.npz or an MCNN mcnn_shtechB.npz; several, comma-separated, form an ensemble (the
# first always runs, the others only in very dense scenes; the largest count wins). Recommended:
# .../sanet_shb_keras_layout.npz,.../mcnn_shtechB.npz (docs/ACCURACY.md). Empty: auto counts with detection
# alone and flags crowds it cannot resolve as saturated; density mode refuses to start.
DENSITY_MODEL = config("DENSITY_MODEL", default="")
# sanet or mcnn (the first DENSITY_MODEL file); empty: inferred from the weights file.
DENSITY_MODEL_ARCH = config("DENSITY_MODEL_ARCH", default="")
# openvino (faster on CPU) or torch.
DENSITY_BACKEND = config("DENSITY_BACKEND", default="openvino")
# Frames longer than this (px) are scaled down before the density model (cost grows with pixels).
DENSITY_MAX_SIDE = config("DENSITY_MAX_SIDE", default=1024, cast=int)
# Median of this many consecutive readings per camera (1: off) for steadier counts.
DETECTION_SMOOTHING = config("DETECTION_SMOOTHING", default=1, cast=int)
# Frames counted for each reading of a live camera, DETECTION_FRAME_SPACING seconds apart; the reading keeps the
# median count, so one frame with people hidden behind others (or doubled) does not move it. Each frame is counted:
# a worker keeps this many times fewer cameras. 1: one frame per reading. Recordings and image sets give one frame.
DETECTION_FRAMES_PER_READING = config("DETECTION_FRAMES_PER_READING", default=1, cast=int)
DETECTION_FRAME_SPACING = config("DETECTION_FRAME_SPACING", default=0.5, cast=float)
if DETECTION_FRAMES_PER_READING < 1 or DETECTION_FRAME_SPACING < 0:
    raise ImproperlyConfigured("DETECTION_FRAMES_PER_READING must be 1 or more and DETECTION_FRAME_SPACING 0 or more.")

# Scaling and faults (docs/PERFORMANCE.md). Workers share the cameras through leases in the database: a worker
# renews its leases every lease/6 s; a worker that dies loses its cameras to the others within about one lease.
DETECTION_LEASE_SECONDS = config("DETECTION_LEASE_SECONDS", default=30.0, cast=float)
# Readings taken while the database is unreachable are kept here (an SQLite file per host) and written, in order
# and exactly once, when it is back. At most DETECTION_SPOOL_MAX readings are kept (then the oldest go).
DETECTION_SPOOL_DIR = config("DETECTION_SPOOL_DIR", default=str(BASE_DIR / "var" / "spool"))
DETECTION_SPOOL_MAX = config("DETECTION_SPOOL_MAX", default=100_000, cast=int)
# A live camera whose picture is identical this many samples in a row is frozen, and treated as offline (0: off).
DETECTION_FROZEN_SAMPLES = config("DETECTION_FROZEN_SAMPLES", default=12, cast=int)
# Prometheus endpoint of a detection worker (run_detection --metrics-port); 0: none.
DETECTION_METRICS_PORT = config("DETECTION_METRICS_PORT", default=0, cast=int)
# Bearer token required by the web process's /metrics; empty: /metrics is open (it shows ids and figures, no
# counts of people). Set it when the site is reachable from outside the monitoring network.
METRICS_TOKEN = config("METRICS_TOKEN", default="")

# --- Security (production values apply when DEBUG is off) -----------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = config("SECURE_SSL_REDIRECT", default=not DEBUG, cast=bool)
SECURE_REDIRECT_EXEMPT = [r"^readyz$"]
SESSION_COOKIE_SECURE = config("SESSION_COOKIE_SECURE", default=not DEBUG, cast=bool)
CSRF_COOKIE_SECURE = config("CSRF_COOKIE_SECURE", default=not DEBUG, cast=bool)
SECURE_HSTS_SECONDS = config("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000, cast=int)
SECURE_HSTS_INCLUDE_SUBDOMAINS = config("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG, cast=bool)
SECURE_HSTS_PRELOAD = config("SECURE_HSTS_PRELOAD", default=not DEBUG, cast=bool)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# The pages read the CSRF token from their forms, never from the cookie, so scripts need no access to it.
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# Content-Security-Policy (crowd_monitor.middleware.SecurityHeadersMiddleware): this site's own scripts, styles,
# images and WebSocket only. A map tile server (DASHBOARD_MAP_TILE_URL, e.g.
# https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png) is added to img-src; CSP_EXTRA_IMG_SRC adds more sources.
DASHBOARD_MAP_TILE_URL = config("DASHBOARD_MAP_TILE_URL", default="")
DASHBOARD_MAP_TILE_ATTRIBUTION = config("DASHBOARD_MAP_TILE_ATTRIBUTION", default="")
CSP_REPORT_ONLY = config("CSP_REPORT_ONLY", default=False, cast=bool)
CSP_IMG_SRC = [
    source
    for source in (_tile_origin(DASHBOARD_MAP_TILE_URL), *config("CSP_EXTRA_IMG_SRC", default="", cast=Csv()))
    if source
]
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"

# --- Logging --------------------------------------------------------------------------------------
LOG_LEVEL = config("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Credentials in URIs (camera sources) are masked in every line, tracebacks included.
    "filters": {"redact_secrets": {"()": "crowd_monitor.log_filters.RedactSecretsFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_secrets"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
