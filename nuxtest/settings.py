"""The one settings module: every value comes from the environment (see docs/architecture.md)."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from game.telemetry.logs import logging_config
from nuxtest.embedded import published_url
from nuxtest.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

# "development" (the default for `make run` / `make test`) or "production".
NUXTEST_ENV = env_str("NUXTEST_ENV", "development")
if NUXTEST_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"NUXTEST_ENV={NUXTEST_ENV!r}: use development or production")
PRODUCTION = NUXTEST_ENV == "production"

DEBUG = env_bool("DJANGO_DEBUG", False)


# Published here, so refused in production even when set by hand.
_DEV_KEY = "dev-insecure-nuxtest-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz"


def _secret_key() -> str:
    key_file = env_str("SECRET_KEY_FILE")
    key = Path(key_file).read_text().strip() if key_file else env_str("SECRET_KEY")
    if key:
        # It signs sessions and every JWT: a short one can be guessed offline from any token.
        # Django's own bar (check --deploy, security.W009), enforced rather than warned of.
        if PRODUCTION and (
            len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure-") or key == _DEV_KEY
        ):
            raise ImproperlyConfigured(
                "SECRET_KEY (or SECRET_KEY_FILE) is too weak for production: use at least 50 random"
                " characters, e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"
            )
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set in production")
    # A fixed key so that several local processes share sessions; never used in production.
    return _DEV_KEY


SECRET_KEY = _secret_key()

if PRODUCTION and not env_list("ALLOWED_HOSTS", []):
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set in production (comma-separated host names)")
# Flower shows every task with its arguments and the broker's address: in production it
# is not served without a log-in, whatever interface it listens on (the compose file's
# `:?` says the same; the Procfile ran it open on 127.0.0.1, to any local user or tunnel).
if PRODUCTION and env_str("NUXTEST_SERVICE") == "flower":
    _credentials = [pair.partition(":") for pair in env_str("FLOWER_BASIC_AUTH").split(",")]
    if not all(user and sep and password for user, sep, password in _credentials):
        raise ImproperlyConfigured(
            "FLOWER_BASIC_AUTH (user:password, neither empty) must be set to run Flower in production"
        )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "channels",
    "django_prometheus",
    "corsheaders",
    "csp",
    "axes",
    "game",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "game.telemetry.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so that a lockout flagged by the auth backend replaces the view's response.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "nuxtest.urls"
ASGI_APPLICATION = "nuxtest.asgi.application"
WSGI_APPLICATION = None

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

# --- Database -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")


def _database(url: str) -> dict[str, Any]:
    """One DATABASES entry from a URL."""
    db: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=env_int("DB_CONN_MAX_AGE", 0)))
    if db["ENGINE"] == "django.db.backends.sqlite3":
        # Several processes (web, worker) share the file: wait for locks instead of failing.
        db.setdefault("OPTIONS", {})["timeout"] = 20
        # A transaction takes the write lock when it begins: one that read first could not wait
        # for it when it then wrote ("database is locked" at once, whatever the timeout).
        db["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
        # A file, not memory, so that the end-to-end tests' processes see the test database.
        db["TEST"] = {"NAME": str(BASE_DIR / ".test-db.sqlite3")}
    elif db["ENGINE"] == "django.db.backends.postgresql":
        # Django's connection pool (psycopg_pool). Without it, every HTTP request that
        # Daphne runs in a thread of its own opens a connection of its own: a burst of
        # sign-ins went past PostgreSQL's max_connections and answered 500s
        # (docs/capacity.md). With it, a process holds at most DB_POOL_MAX_SIZE connections
        # and a request waits up to DB_POOL_TIMEOUT seconds for one. 0: no pool.
        pool_max = env_int("DB_POOL_MAX_SIZE", 20)
        if pool_max > 0:
            if db.get("CONN_MAX_AGE"):
                raise ImproperlyConfigured("DB_CONN_MAX_AGE needs DB_POOL_MAX_SIZE=0: a pool keeps its own")
            db.setdefault("OPTIONS", {})["pool"] = {
                "min_size": min(2, pool_max),
                "max_size": pool_max,
                "timeout": env_float("DB_POOL_TIMEOUT", 10.0),
            }
            # The pool checks a connection before handing it out (psycopg_pool's
            # check_connection: an empty query, one round trip). Without it, every pooled
            # connection that a PostgreSQL restart (or failover, or an idle-session kill)
            # had ended failed the next request that took it with a 500, one per pooled
            # connection and process, whenever that came: minutes after PostgreSQL was back.
            db["CONN_HEALTH_CHECKS"] = True
    elif db["ENGINE"] == "django.db.backends.mysql":
        db.setdefault("OPTIONS", {})["charset"] = "utf8mb4"
        db["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
    # django-prometheus's wrappers of the same backends count queries, errors and latency.
    db["ENGINE"] = db["ENGINE"].replace("django.db.backends.", "django_prometheus.db.backends.")
    return db


DATABASES = {"default": _database(DATABASE_URL)}
# A read replica of "default" for the leaderboard and history reads (game/db_router.py).
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL", "")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = {**_database(DATABASE_REPLICA_URL), "TEST": {"MIRROR": "default"}}
DATABASE_ROUTERS = ["game.db_router.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: game state, channel layer, cache, Celery broker ------------------------------
# Unset: the embedded Redis of a `make run` running from this checkout (so that
# `manage.py faults …` in another shell reaches the game), else the machine's.
REDIS_URL = env_str("REDIS_URL", "") or published_url() or "redis://127.0.0.1:6379/0"
# Every key the project writes starts with this prefix (tests use a random one each).
NUXTEST_REDIS_PREFIX = env_str("NUXTEST_REDIS_PREFIX", "nuxtest:")

# channels-redis's core layer in fewer round trips per message (game/channel_layer.py);
# channels_redis.core.RedisChannelLayer is the stock one, and the pub/sub layer works too.
CHANNEL_LAYER_BACKEND = env_str("CHANNEL_LAYER_BACKEND", "game.channel_layer.RedisChannelLayer")
_channel_layer_config: dict[str, Any] = {
    # channels-redis's default capacity (100 per process) silently drops group messages;
    # its default pool is unbounded (redis-py's): 1000 bounds one process's connections.
    "hosts": [
        {
            "address": REDIS_URL,
            "max_connections": env_int("CHANNEL_LAYER_MAX_CONNECTIONS", 1000),
        }
    ],
    "prefix": NUXTEST_REDIS_PREFIX + "asgi",
}
if not CHANNEL_LAYER_BACKEND.endswith("RedisPubSubChannelLayer"):
    # The pub/sub layer takes neither capacity nor expiry.
    _channel_layer_config["capacity"] = env_int("CHANNEL_LAYER_CAPACITY", 1000)
    _channel_layer_config["expiry"] = env_int("CHANNEL_LAYER_EXPIRY", 60)
CHANNEL_LAYERS = {"default": {"BACKEND": CHANNEL_LAYER_BACKEND, "CONFIG": _channel_layer_config}}

CACHES = {
    "default": {
        "BACKEND": "game.telemetry.cache.CountedRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": NUXTEST_REDIS_PREFIX + "cache",
    }
}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "nuxtest")
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": NUXTEST_REDIS_PREFIX + "celery:"}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# Celery keeps Django's LOGGING (JSON lines); Flower's task metrics need task events.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = env_bool("CELERY_WORKER_SEND_TASK_EVENTS", True)
# A "task-sent" event is one more Redis PUBLISH (and kombu's event machinery) in the web
# process for every timer it arms, about 40 % of arming a question's deadline
# (docs/performance.md); Flower shows tasks from the worker's own events without it.
CELERY_TASK_SEND_SENT_EVENT = env_bool("CELERY_TASK_SEND_SENT_EVENT", False)

# --- HTTPS, proxies, headers (docs/architecture.md, "Production") ------------------------
# How many reverse proxies (nginx) stand between clients and Daphne, each setting
# X-Forwarded-For / X-Forwarded-Proto. 0: none, so those headers are never believed.
NUXTEST_TRUSTED_PROXY_COUNT = env_int("NUXTEST_TRUSTED_PROXY_COUNT", 0)
if NUXTEST_TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("NUXTEST_TRUSTED_PROXY_COUNT must be 0 or more")
if NUXTEST_TRUSTED_PROXY_COUNT:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
# Probes and scrapers speak plain HTTP on the private network (paths without the leading /).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SESSION_COOKIE_HTTPONLY = True
# Pages read the CSRF token from their form's hidden input (game/static/game/api.js).
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"


def _websocket_sources(hosts: list[str]) -> list[str]:
    """CSP sources for the site's own WebSocket URLs: wss:// (and ws:// outside production)."""
    schemes = ["wss"] if PRODUCTION else ["ws", "wss"]
    sources: list[str] = []
    for host in hosts:
        if host == "*" or host.startswith("["):
            continue  # no CSP host-source for these; 'self' still covers the page's own host
        name = "*" + host if host.startswith(".") else host
        port = "" if PRODUCTION else ":*"
        sources += [f"{scheme}://{name}{port}" for scheme in schemes]
    return sources


# django-csp 4. No inline script or style anywhere: templates load static files only and
# pass data in data-* attributes and json_script (type application/json, never executed).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF, *_websocket_sources(ALLOWED_HOSTS)],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# django-cors-headers: only the JSON API, only for the listed origins (none by default).
CORS_ALLOWED_ORIGINS = env_list("NUXTEST_CORS_ALLOWED_ORIGINS", [])
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_CREDENTIALS = False

# --- Auth --------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out client before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

REST_FRAMEWORK = {
    # JWT first: an unauthenticated API call answers 401 with a Bearer challenge.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["game.api.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "game.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Anonymous throttles key on the client address (X-Forwarded-For only behind a trusted
    # proxy; 0, not None: DRF believes the header when this is None).
    "NUM_PROXIES": NUXTEST_TRUSTED_PROXY_COUNT,
}

# django-axes: lock a client address out of the log-in page and /api/auth/token/ after
# AXES_FAILURE_LIMIT failures, for the cool-off time; counted in the Redis cache, so
# every web instance sees the same counts.
AXES_ENABLED = env_bool("NUXTEST_LOGIN_LOCKOUT", True)
AXES_HANDLER = "game.lockout.AxesRedisCacheHandler"
AXES_FAILURE_LIMIT = env_int("NUXTEST_LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("NUXTEST_LOGIN_COOLOFF_SECONDS", 15 * 60))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
# A success takes only that account's own failures off the count (game/lockout.py), not the
# address's whole count, which an attacker's own log-in would otherwise clear.
AXES_RESET_ON_SUCCESS = False
AXES_CLIENT_IP_CALLABLE = "nuxtest.proxy.client_ip"
AXES_LOCKOUT_CALLABLE = "game.lockout.lockout_response"
AXES_VERBOSE = False

# DRF throttles (game/api/throttles.py), per user (per address when anonymous), counted in
# the Redis cache: "<count>/<second|minute|hour|day>". Generous outside production.
NUXTEST_THROTTLE_RATES = {
    "signup": env_str("NUXTEST_THROTTLE_SIGNUP", "20/hour" if PRODUCTION else "1000/minute"),
    "rooms": env_str("NUXTEST_THROTTLE_ROOMS", "30/minute" if PRODUCTION else "1000/minute"),
    "matchmaking": env_str("NUXTEST_THROTTLE_MATCHMAKING", "30/minute" if PRODUCTION else "1000/minute"),
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 30)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 1)),
    "UPDATE_LAST_LOGIN": False,
    # Tokens carry a digest of the account's password hash: a password changed (by an admin,
    # for a compromised account) refuses every token issued before, on the API, the
    # refresh and the WebSocket handshake alike.
    "CHECK_REVOKE_TOKEN": True,
}

# --- Game --------------------------------------------------------------------------------
NUXTEST_WS_MAX_MESSAGE_BYTES = env_int("NUXTEST_WS_MAX_MESSAGE_BYTES", 64 * 1024)
# Daphne's own cap (close 1009): far above the protocol's limit, which gets an error frame.
NUXTEST_WS_HARD_MAX_BYTES = env_int("NUXTEST_WS_HARD_MAX_BYTES", 1024 * 1024)
NUXTEST_WS_RATE_PER_SECOND = env_float("NUXTEST_WS_RATE_PER_SECOND", 10.0)
NUXTEST_WS_RATE_BURST = env_int("NUXTEST_WS_RATE_BURST", 20)
# Refused frames in a row (rate_limited) before the connection is closed with 4429.
NUXTEST_WS_FLOOD_CLOSE_AFTER = env_int("NUXTEST_WS_FLOOD_CLOSE_AFTER", 20)
NUXTEST_WS_MAX_CONNECTIONS_PER_USER = env_int("NUXTEST_WS_MAX_CONNECTIONS_PER_USER", 5)
# How long a connection holds a broadcast that arrived ahead of an earlier one (two
# processes published at once) before it gives up waiting and lets the client resync.
# 50 ms lost frames in a reconnect storm of 200 players, where a worker's `question`
# overtook a busy web process's `player_left`; 250 ms lost 3 where 50 lost 13
# (docs/capacity.md). It costs nothing unless a broadcast arrives past a gap.
NUXTEST_WS_REORDER_MS = env_int("NUXTEST_WS_REORDER_MS", 250)
# The same limit over all of a player's connections together (a token bucket in Redis).
NUXTEST_WS_USER_RATE_PER_SECOND = env_float("NUXTEST_WS_USER_RATE_PER_SECOND", 20.0)
NUXTEST_WS_USER_RATE_BURST = env_int("NUXTEST_WS_USER_RATE_BURST", 40)
for _name in ("NUXTEST_WS_RATE_PER_SECOND", "NUXTEST_WS_USER_RATE_PER_SECOND"):
    if not globals()[_name] > 0:
        raise ImproperlyConfigured(f"{_name} must be a positive number of messages a second")
NUXTEST_ABANDON_SECONDS = env_float("NUXTEST_ABANDON_SECONDS", 60.0)
NUXTEST_LOBBY_IDLE_SECONDS = env_float("NUXTEST_LOBBY_IDLE_SECONDS", 600.0)
NUXTEST_QUICK_START_SECONDS = env_float("NUXTEST_QUICK_START_SECONDS", 5.0)
# How long matchmaking holds a seat for a placed player who has not connected yet.
NUXTEST_QUICK_HOLD_SECONDS = env_float("NUXTEST_QUICK_HOLD_SECONDS", 15.0)
NUXTEST_SWEEP_INTERVAL_SECONDS = env_float("NUXTEST_SWEEP_INTERVAL_SECONDS", 1.0)
# How long past its deadline a round stays open for answers the server received before the
# deadline but had not stored yet (queued behind the room's other updates): the deadline timer
# closes it then. Answers received after the deadline are refused whatever this is.
NUXTEST_DEADLINE_GRACE_MS = env_int("NUXTEST_DEADLINE_GRACE_MS", 50)
# How late past its due time a step must be before the sweeper does it instead of its timer.
NUXTEST_SWEEP_GRACE_SECONDS = env_float("NUXTEST_SWEEP_GRACE_SECONDS", 1.0)
if not 0 <= NUXTEST_DEADLINE_GRACE_MS < NUXTEST_SWEEP_GRACE_SECONDS * 1000:
    # Past the sweeper's grace, the sweeper would close the round before its timer.
    raise ImproperlyConfigured(
        "NUXTEST_DEADLINE_GRACE_MS must be 0 or more, and less than NUXTEST_SWEEP_GRACE_SECONDS"
    )
# Finished and abandoned rooms stay readable this long, then the sweeper forgets them.
NUXTEST_ROOM_RETENTION_SECONDS = env_int("NUXTEST_ROOM_RETENTION_SECONDS", 3600)
NUXTEST_LEADERBOARD_CACHE_SECONDS = env_int("NUXTEST_LEADERBOARD_CACHE_SECONDS", 30)

# --- Static files, i18n ------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = True
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Telemetry (docs/telemetry.md) ------------------------------------------------------
# JSON lines on stdout for Loki; NUXTEST_LOG_FORMAT=text for humans.
NUXTEST_LOG_FORMAT = env_str("NUXTEST_LOG_FORMAT", "json")
if NUXTEST_LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"NUXTEST_LOG_FORMAT={NUXTEST_LOG_FORMAT!r}: use json or text")
LOGGING_CONFIG = "logging.config.dictConfig"
LOGGING = logging_config(level=env_str("LOG_LEVEL", "INFO"), fmt=NUXTEST_LOG_FORMAT)
# Who may read /metrics (Prometheus on the private network), as CIDRs.
try:
    NUXTEST_METRICS_ALLOWED_NETWORKS = [
        ipaddress.ip_network(n, strict=False)
        for n in env_list(
            "NUXTEST_METRICS_ALLOWED_NETWORKS",
            ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
        )
    ]
except ValueError as exc:
    raise ImproperlyConfigured(f"NUXTEST_METRICS_ALLOWED_NETWORKS: {exc} (use CIDRs)") from exc
# The Celery worker serves its task metrics here (0: not at all).
NUXTEST_WORKER_METRICS_PORT = env_int("NUXTEST_WORKER_METRICS_PORT", 9808)
NUXTEST_WORKER_METRICS_ADDR = env_str("NUXTEST_WORKER_METRICS_ADDR", "127.0.0.1")
# How old a process's copy of the fault flags may be (game/faults.py).
NUXTEST_FAULTS_CACHE_SECONDS = env_float("NUXTEST_FAULTS_CACHE_SECONDS", 1.0)
# On SIGTERM a web process closes its WebSockets with 1012 and waits this long for them.
NUXTEST_GRACEFUL_SHUTDOWN = env_bool("NUXTEST_GRACEFUL_SHUTDOWN", True)
NUXTEST_DRAIN_SECONDS = env_float("NUXTEST_DRAIN_SECONDS", 10.0)

CELERY_BEAT_SCHEDULE = {
    "rooms-sweep": {
        "task": "game.tasks.rooms_sweep",
        "schedule": NUXTEST_SWEEP_INTERVAL_SECONDS,
        # A sweep that could not run in time is pointless once the next one is due.
        "options": {"expires": max(NUXTEST_SWEEP_INTERVAL_SECONDS * 5, 5.0)},
    },
}
