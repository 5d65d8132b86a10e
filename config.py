"""Configuration read from the environment (and from `.env` via python-dotenv).

Every variable is documented in `.env.example`. `create_app()` picks
`ProductionConfig` unless FLASK_DEBUG is on, and tests pass `TestConfig`.
"""

import os

from dotenv import load_dotenv
from redis.backoff import NoBackoff
from redis.retry import Retry

load_dotenv()

BASE_DIR = os.path.abspath(os.path.dirname(__file__))

# Values that must never sign real tokens: the seed README's placeholder and
# the usual "change me" strings people copy from examples.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "your_secure_jwt_secret_key",
        "change-me",
        "changeme",
        "secret",
        "dev",
        "super-secret",
    }
)


def database_url(url: str | None) -> str:
    """Normalise a DATABASE_URL to a driver SQLAlchemy can load.

    Render and Heroku hand out `postgres://` URLs, which SQLAlchemy rejects,
    and SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3, which we do not
    install; both become `postgresql+psycopg2://`.
    """
    if not url:
        return "sqlite:///" + os.path.join(BASE_DIR, "instance", "parking.db")
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def replica_binds(url: str | None, connect_timeout: int) -> dict:
    """SQLALCHEMY_BINDS for an optional read replica (replica.py routes reads to it).

    The replica gets a short connect timeout, so a replica that does not answer
    costs a request at most that long before it falls back to the primary.
    """
    if not url:
        return {}
    options = {"url": database_url(url), "pool_pre_ping": True}
    if options["url"].startswith("postgresql"):
        options["connect_args"] = {"connect_timeout": connect_timeout}
    return {"replica": options}


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


class Config:
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    # Bounded waits on the database (database.py). Per request transaction:
    # how long a statement may run and how long it may wait for a lock; then
    # how long to wait for a pooled connection and for a new one (seconds).
    # A request that hits one answers 503 with Retry-After.
    DB_STATEMENT_TIMEOUT_MS = env_int("DB_STATEMENT_TIMEOUT_MS", 5000)
    DB_LOCK_TIMEOUT_MS = env_int("DB_LOCK_TIMEOUT_MS", 2000)
    DB_POOL_TIMEOUT = env_int("DB_POOL_TIMEOUT", 3)
    # Connections per process: a gevent worker serves many requests at once,
    # and the ones beyond the pool wait (DB_POOL_TIMEOUT) for a connection.
    DB_POOL_SIZE = env_int("DB_POOL_SIZE", 5)
    DB_MAX_OVERFLOW = env_int("DB_MAX_OVERFLOW", 5)
    DB_CONNECT_TIMEOUT = env_int("DB_CONNECT_TIMEOUT", 3)
    # The health check's bound for everything it asks the database (ms).
    HEALTH_TIMEOUT_MS = env_int("HEALTH_TIMEOUT_MS", 1000)
    # Optional read replica for the reads that tolerate a second of lag (replica.py).
    # libpq's connect timeout is whole seconds, 2 at least.
    REPLICA_CONNECT_TIMEOUT = max(2, env_int("REPLICA_CONNECT_TIMEOUT", 2))
    SQLALCHEMY_BINDS = replica_binds(
        os.environ.get("DATABASE_REPLICA_URL"), REPLICA_CONNECT_TIMEOUT
    )
    # After a replica failure, read from the primary for this long before trying again.
    REPLICA_RETRY_SECONDS = env_int("REPLICA_RETRY_SECONDS", 10)
    JWT_SECRET_KEY = os.environ.get("JWT_SECRET_KEY", "")
    # Token lifetimes; create_app turns them into JWT_*_TOKEN_EXPIRES.
    JWT_ACCESS_MINUTES = env_int("JWT_ACCESS_MINUTES", 15)
    JWT_REFRESH_DAYS = env_int("JWT_REFRESH_DAYS", 30)
    JWT_ERROR_MESSAGE_KEY = "error"
    # Seconds during which a refresh token that was just exchanged may be
    # exchanged again for the same new pair (an app that retried); after that
    # a reuse revokes every token of the user (tokens.py).
    JWT_REFRESH_REUSE_LEEWAY = env_int("JWT_REFRESH_REUSE_LEEWAY", 5)
    # Comma-separated list of origins the browser front end is served from.
    CORS_ORIGINS = env_list("CORS_ORIGINS", "")
    # Request bodies above 1 MiB are refused with 413 before they are parsed.
    MAX_CONTENT_LENGTH = 1024 * 1024
    # Werkzeug's scrypt in production; tests use a cheaper method via TestConfig.
    PASSWORD_HASH_METHOD = os.environ.get("PASSWORD_HASH_METHOD", "scrypt")
    DEFAULT_CURRENCY = os.environ.get("DEFAULT_CURRENCY", "KES").strip().upper()
    # Flask-Limiter: on unless RATELIMIT_ENABLED=false; memory:// is per process,
    # so production sets RATELIMIT_STORAGE_URI=redis://... (render.yaml does).
    RATELIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", True)
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    RATELIMIT_DEFAULT = os.environ.get("RATELIMIT_DEFAULT", "600 per minute")
    # If Redis is unreachable, count in memory rather than fail every request.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATELIMIT_SWALLOW_ERRORS = True
    # A hung or unreachable Redis costs a request at most these waits (ms),
    # never retried: then the limiter counts in memory and checks Redis again
    # now and then (after 1, 2, 4 ... 32 s).
    REDIS_CONNECT_TIMEOUT_MS = env_int("REDIS_CONNECT_TIMEOUT_MS", 100)
    REDIS_TIMEOUT_MS = env_int("REDIS_TIMEOUT_MS", 300)
    RATELIMIT_STORAGE_OPTIONS = {
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_MS / 1000,
        "socket_timeout": REDIS_TIMEOUT_MS / 1000,
        "retry": Retry(NoBackoff(), 0),
    }
    RATELIMIT_AUTH = os.environ.get("RATELIMIT_AUTH", "10 per minute")
    # Integrations (README, "Integrations"). A write still "in progress" under
    # its Idempotency-Key after this many seconds was abandoned by a dead
    # worker (no request runs that long: gunicorn's timeout is 30 s and every
    # database wait is bounded); a retry may then take its key over.
    IDEMPOTENCY_ABANDONED_SECONDS = env_int("IDEMPOTENCY_ABANDONED_SECONDS", 60)
    # Hosts (names or IP addresses) webhooks may be sent to even though they
    # resolve to private, loopback or link-local addresses (SSRF guard).
    WEBHOOK_ALLOWED_HOSTS = env_list("WEBHOOK_ALLOWED_HOSTS", "")
    # Seconds one delivery attempt may take in all before it counts as failed.
    WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10)
    # Number of reverse proxies in front of the app (Render has one).
    PROXY_HOPS = env_int("PROXY_HOPS", 1)
    TESTING = False
    DEBUG = False


class DevelopmentConfig(Config):
    DEBUG = True
    # A development-only key so `make run` works without a .env file.
    JWT_SECRET_KEY = Config.JWT_SECRET_KEY or "development-only-not-for-production-use"
    CORS_ORIGINS = Config.CORS_ORIGINS or ["*"]
    # Generous, so trying the README's examples a few times never hits 429.
    RATELIMIT_AUTH = os.environ.get("RATELIMIT_AUTH") or "100 per minute"


class ProductionConfig(Config):
    pass


class TestConfig(Config):
    TESTING = True
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("TEST_DATABASE_URL") or "sqlite://")
    SQLALCHEMY_BINDS = {}  # tests/test_replica.py brings its own replica
    JWT_SECRET_KEY = "test-secret-key-that-is-long-enough-for-hs256"
    PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"
    CORS_ORIGINS = ["http://localhost:5173"]
    RATELIMIT_ENABLED = False
    RATELIMIT_STORAGE_URI = "memory://"
    DEFAULT_CURRENCY = "KES"
