"""Settings for the consortium portal: one strict, 12-factor file.

Every knob comes from the environment. Secrets may instead come from ``<NAME>_FILE`` paths
(Kubernetes Secrets). Defaults give the embedded set-up: SQLite and blobs under ``var/``.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str | None = None) -> str | None:
    """Read ``name`` from the environment, or from the file named by ``name + '_FILE'``."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path} cannot be read: {exc}") from exc
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = env(name)
    if raw is None:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = env(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from exc
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}")
    return value


def env_networks(name: str, default: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """A comma-separated list of CIDRs, e.g. ``10.0.0.0/8,::1/128``."""
    raw = env(name, default) or ""
    try:
        return [ipaddress.ip_network(cidr.strip()) for cidr in raw.split(",") if cidr.strip()]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from exc


def env_rate(name: str, default: str) -> str:
    """A DRF throttle rate such as ``60/min`` (period: s, min, h or day)."""
    raw = env(name, default) or default
    count, _, period = raw.partition("/")
    if not count.isdigit() or int(count) < 1 or period[:1] not in {"s", "m", "h", "d"}:
        raise ImproperlyConfigured(f"{name} must look like 60/min, not {raw!r}")
    return raw


VAR_DIR = Path(env("CONSORTIUM_VAR_DIR", str(BASE_DIR / "var")) or "var")
DEBUG = env_bool("DJANGO_DEBUG", False)


def private_file(path: Path, content: bytes = b"") -> None:
    """Create ``path`` readable by its owner only (and its directory 0700), if missing.

    The mode is given to ``open`` itself: a file written first and chmod-ed afterwards is
    readable by everyone in between. An existing directory keeps its mode (it may be a
    mounted volume); only one we create here is 0700.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process (web, scheduler) created it first; theirs stands
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


def _secret_key() -> str:
    key = env("DJANGO_SECRET_KEY")
    if key:
        return key
    # Embedded default only: a random key kept beside the SQLite file, never a constant.
    path = VAR_DIR / "secret_key"
    private_file(path, secrets.token_urlsafe(50).encode())
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = [
    h for h in (env("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost") or "").split(",") if h
]
CSRF_TRUSTED_ORIGINS = [o for o in (env("DJANGO_CSRF_TRUSTED_ORIGINS", "") or "").split(",") if o]
# Production: the portal is served over https (TLS ends at the ingress). The embedded
# demo leaves it off and runs over plain http on loopback.
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
if SESSION_COOKIE_SECURE:
    # Browsers that saw the portal once refuse plain http to it for a year.
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    # Preload lists are hard to leave: opt in only.
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
    # The ingress terminates TLS and sets this header; it must overwrite a client's own.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Sign-in rate limit (failed logins per username and address) and the throttle cache table.
    "axes",
    "consortium.api",
    "audit",
    # The audit trail's REST API and report export: reads both audit and the rounds.
    "consortium.audit_api",
    "consortium.members",
    "consortium.rounds",
    "consortium.portal",
    "consortium.governance",
]

MIDDLEWARE = [
    # First, so that it counts every response, including other middleware's 400s and 503s.
    "consortium.metrics.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before any view hashes a password: a source that failed too often is refused unread.
    "consortium.api.middleware.SignInThrottleMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "consortium.api.middleware.DatabaseUnavailableMiddleware",
    "consortium.api.middleware.DeepJSONMiddleware",
    # Last, as django-axes asks: it answers 429 to a locked-out sign-in.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "consortium.urls"
WSGI_APPLICATION = "consortium.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'portal.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite creates its file with the process umask (often 0644): create it 0600 first
    # (an empty file is an empty database); its journal files take the same mode.
    if str(DATABASES["default"]["NAME"]) not in {"", ":memory:"}:
        private_file(Path(DATABASES["default"]["NAME"]))
    # Several processes (two gunicorn workers, the scheduler) write to one file at once.
    # - timeout: wait up to 30 s for another writer's lock instead of failing at once.
    # - IMMEDIATE: a transaction takes the write lock when it begins. SQLite's default
    #   (DEFERRED) starts it as a reader and upgrades at the first write; when two readers
    #   both try to upgrade, one gets "database is locked" at once, without waiting for the
    #   timeout (a deadlock it refuses), which the API answered as a 503 (issue 14: six
    #   nodes uploading together). Writers now queue on the timeout instead.
    # - WAL: readers (status polls, downloads) do not block the writer, nor it them;
    #   synchronous=NORMAL is durable across a process crash in WAL mode, at far less fsync.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        }
    )
    # Tests on SQLite use a file, not Django's shared in-memory database: with live-server
    # tests a second thread writes while the first reads, and the in-memory shared cache
    # answers "table is locked" at once where a file waits for the lock (timeout above).
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-portal.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# WhiteNoise serves static files from the portal process itself. It also looks in the
# apps' static/ folders (Django's finders), so neither the tests, the demo nor the image
# (read-only root filesystem, STATIC_ROOT under /tmp) need a `collectstatic` step; files
# that `collectstatic` did put in STATIC_ROOT are served as well.
WHITENOISE_USE_FINDERS = True

# Passwords set through Django's forms (the back office) and our create_* commands.
AUTH_PASSWORD_VALIDATORS: list[dict[str, Any]] = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# The web portal's sign-in (Django auth, session cookie).
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:overview"
LOGOUT_REDIRECT_URL = "portal:login"

# Ciphertext blobs (uploads and aggregates) live on a filesystem path (in Kubernetes a
# PVC) or, with CONSORTIUM_BLOB_STORE=s3, in an S3-compatible bucket; BLOB_DIR then holds
# only staging files (consortium/rounds/storage.py).
BLOB_DIR = Path(env("CONSORTIUM_BLOB_DIR", str(VAR_DIR / "blobs")) or "blobs")
BLOB_STORE = env("CONSORTIUM_BLOB_STORE", "filesystem") or "filesystem"
if BLOB_STORE not in ("filesystem", "s3"):
    raise ImproperlyConfigured(f"CONSORTIUM_BLOB_STORE={BLOB_STORE!r}: choose 'filesystem' or 's3'")
BLOB_S3_BUCKET = env("CONSORTIUM_S3_BUCKET", "") or ""
BLOB_S3_PREFIX = env("CONSORTIUM_S3_PREFIX", "") or ""
BLOB_S3_ENDPOINT_URL = env("CONSORTIUM_S3_ENDPOINT_URL", "") or ""
BLOB_S3_REGION = env("CONSORTIUM_S3_REGION", "") or ""
# Keys for the bucket, best as files (CONSORTIUM_S3_ACCESS_KEY_ID_FILE, ..._FILE); when
# unset, boto3's own chain applies (AWS_* variables, web identity, instance role).
BLOB_S3_ACCESS_KEY_ID = env("CONSORTIUM_S3_ACCESS_KEY_ID", "") or ""
BLOB_S3_SECRET_ACCESS_KEY = env("CONSORTIUM_S3_SECRET_ACCESS_KEY", "") or ""
if BLOB_STORE == "s3" and not BLOB_S3_BUCKET:
    raise ImproperlyConfigured("CONSORTIUM_BLOB_STORE=s3 needs CONSORTIUM_S3_BUCKET")
# Largest accepted upload body. 1M parameters at 8x float32 is about 33 MB.
MAX_UPLOAD_BYTES = env_int("CONSORTIUM_MAX_UPLOAD_BYTES", 256 * 1024 * 1024, minimum=1024)
# Uploads one worker process takes at once; more get 429 + Retry-After and the node
# retries. With threaded workers (gthread) this keeps threads free for status polls.
MAX_CONCURRENT_UPLOADS = env_int("CONSORTIUM_MAX_CONCURRENT_UPLOADS", 4, minimum=1)
# Check uploads' ciphertexts in a niced helper process per worker (validation_pool.py), so
# a burst of uploads does not starve status polls of the interpreter lock and the cores.
VALIDATION_PROCESS = env_bool("CONSORTIUM_VALIDATION_PROCESS", True)
# How long a worker reuses its answer to GET /api/v1/rounds/current (seconds; 0 = never).
STATUS_CACHE_SECONDS = float(env("CONSORTIUM_STATUS_CACHE_SECONDS", "1") or 0)
# How long a worker trusts a bank credential it checked for a read (GET) without asking the
# database again (0 = never): a suspension or a replaced credential reaches reads within
# this bound; writes always ask the database (consortium/api/auth_cache.py).
AUTH_CACHE_SECONDS = env_int("CONSORTIUM_AUTH_CACHE_SECONDS", 5, maximum=60)
# After a rotation the old API credential keeps working until the node first uses the new
# one or this many hours pass (0: refused at once), so a node is not cut off mid-round.
CREDENTIAL_GRACE = timedelta(hours=env_int("CONSORTIUM_CREDENTIAL_GRACE_HOURS", 24, maximum=720))
SCHEDULER_INTERVAL_SECONDS = env_int("CONSORTIUM_SCHEDULER_INTERVAL", 2, minimum=1)
# Upper bound on banks in one sum (v1 uploads beyond it are refused, a v2 cohort above it
# never opens). Every node keeps its values within 1/MAX_BANKS_PER_SUM of the CKKS
# headroom (bank_node.counts.MAX_BANKS_PER_SUM; tests/consortium/test_max_banks.py holds
# the two equal), so a larger sum could wrap: a smaller value may be set, a larger one is
# refused.
MAX_BANKS_PER_SUM = 256
MAX_BANKS_PER_ROUND = env_int(
    "CONSORTIUM_MAX_BANKS_PER_ROUND", MAX_BANKS_PER_SUM, minimum=2, maximum=MAX_BANKS_PER_SUM
)
# The portal's Ed25519 key (PEM, PKCS#8) signing audit checkpoints and reports; in
# Kubernetes a mounted Secret, which must then exist. The embedded default keeps one
# under VAR_DIR, created 0600 on first use. Public half: GET /api/v1/audit/public-key.
_PORTAL_KEY_FILE = os.environ.get("CONSORTIUM_PORTAL_SIGNING_KEY_FILE")
PORTAL_SIGNING_KEY_FILE = Path(_PORTAL_KEY_FILE or VAR_DIR / "portal_signing_key.pem")
PORTAL_SIGNING_KEY_GENERATE = not _PORTAL_KEY_FILE
# Prometheus (consortium/metrics/). /metrics is outside the API: with a token set, a
# scrape must send it as "Authorization: Bearer <token>"; without one, only clients in
# these networks may scrape (default: loopback only).
METRICS_TOKEN = env("CONSORTIUM_METRICS_TOKEN") or ""
METRICS_ALLOWED_NETWORKS = env_networks("CONSORTIUM_METRICS_ALLOWED_CIDRS", "127.0.0.1/32,::1/128")
# The scheduler serves its own /metrics, /healthz and /readyz on this port (0: not at all).
SCHEDULER_METRICS_PORT = env_int("CONSORTIUM_SCHEDULER_METRICS_PORT", 0)
SCHEDULER_METRICS_ADDR = env("CONSORTIUM_SCHEDULER_METRICS_ADDR", "0.0.0.0") or "0.0.0.0"  # noqa: S104
# Seconds between the scheduler's full walks of the audit chain (0: never).
AUDIT_VERIFY_INTERVAL_SECONDS = env_int("CONSORTIUM_AUDIT_VERIFY_INTERVAL", 600)
# TEST-ONLY fault injection (tests/faults): the scheduler pauses this many seconds between
# writing a round's aggregate and committing its publication. Never set it in production.
FAULT_SLEEP_IN_AGGREGATION_SECONDS = env_int("CONSORTIUM_FAULT_SLEEP_IN_AGGREGATION", 0)
# Non-upload JSON bodies stay small.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# Rate limits. Their counters must be shared by every gunicorn worker and every replica,
# so they live in the database (a per-process LocMemCache would multiply each limit by
# the number of workers). The counters are approximate under races: a limit, not a quota.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "consortium_throttle_cache",
        "OPTIONS": {"MAX_ENTRIES": 10000},
    },
}
# Uploads per bank (every PUT, retries and refusals included); nodes back off on 429.
UPLOAD_RATE = env_rate("CONSORTIUM_UPLOAD_RATE", "60/min")
# Sign-in (web portal, /admin/, HTTP basic auth on the API): django-axes locks a username
# from one address out after this many failures, for this long; every failure during
# the lock-out restarts it. Answer: 429.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Before any of that, per source address alone: this many failed sign-ins in a minute
# (any usernames) and further attempts from there are refused before a password is checked.
SIGN_IN_FAILURES_PER_MINUTE = env_int("CONSORTIUM_SIGNIN_FAILURES_PER_MINUTE", 20, minimum=1)
# Failed sign-ins are kept in a bounded security log (not the audit chain): its newest rows.
SECURITY_LOG_MAX_ROWS = env_int("CONSORTIUM_SECURITY_LOG_MAX_ROWS", 10000, minimum=10)
AXES_FAILURE_LIMIT = env_int("CONSORTIUM_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("CONSORTIUM_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Operators use basic auth on every API call: no access-log row per request.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "consortium.api.auth.BankCredentialAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "consortium.api.auth.LockoutAwareBasicAuthentication",
    ],
    # Deny by default: every view names who may call it (tests/security/test_authorisation.py).
    "DEFAULT_PERMISSION_CLASSES": ["consortium.api.auth.DenyAll"],
    "DEFAULT_SCHEMA_CLASS": "consortium.api.schema.ConsortiumAutoSchema",
    "EXCEPTION_HANDLER": "consortium.api.errors.exception_handler",
    # JSON with a nesting-depth and element bound (a deep body is a 400, not a 500).
    "DEFAULT_PARSER_CLASSES": [
        "consortium.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
    # Only views that name a throttle class are throttled (the upload view).
    "DEFAULT_THROTTLE_RATES": {"upload": UPLOAD_RATE},
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Consortium portal API",
    "DESCRIPTION": "Rounds, encrypted updates and aggregates for federated fraud models.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("CONSORTIUM_LOG_LEVEL", "INFO")},
    "loggers": {"django.server": {"level": "WARNING"}},
}
