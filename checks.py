"""Checks that answer in one line: can the app start, can it serve, is a password good enough.

Each check returns a problem (one line that names the setting and the fix) or None,
so every entry point reports it its own way: the app factory raises `ConfigError`,
gunicorn.conf.py, `flask` and seed.py exit with the line and no traceback, and
`/api/test-db` answers 503 with it.
"""

import logging
import os
import re
import sys
import time
from functools import cache

from alembic.script import ScriptDirectory
from flask import current_app
from flask.helpers import get_debug_flag
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from config import PLACEHOLDER_SECRETS, database_url

log = logging.getLogger(__name__)

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
VERSION_TABLE = "alembic_version"


class ConfigError(RuntimeError):
    """A setting the app cannot start with; the message is one line naming it and the fix."""


# ---------------------------------------------------------------------------
# Configuration: what create_app() refuses, and gunicorn before it forks
# ---------------------------------------------------------------------------

SECRET_FIX = (
    "set it to a long random value (e.g. `openssl rand -hex 32`) in the environment or .env"
)
# A random key of 32 characters or more never has this few different characters.
SECRET_MIN_DISTINCT = 8


def secret_problem(secret: str | None) -> str | None:
    secret = secret or ""
    # HS256 needs a key of at least 32 bytes (RFC 7518 3.2; PyJWT warns below that).
    if secret.strip().lower() in PLACEHOLDER_SECRETS or len(secret.encode()) < 32:
        return (
            f"JWT_SECRET_KEY is missing, a placeholder or shorter than 32 characters: {SECRET_FIX}."
        )
    if len(set(secret)) < SECRET_MIN_DISTINCT:
        return (
            f"JWT_SECRET_KEY has fewer than {SECRET_MIN_DISTINCT} different characters "
            f"(one character repeated?): {SECRET_FIX}."
        )
    return None


def database_url_problem(uri: str) -> str | None:
    """Whether SQLAlchemy can use the database URL at all (not whether the server answers)."""
    try:
        url = make_url(uri)
    except ArgumentError:
        return (
            "DATABASE_URL is not a database URL: set it like "
            "postgresql://user:password@host:5432/dbname, or unset it to use SQLite "
            "(instance/parking.db)."
        )
    try:
        url.get_dialect().import_dbapi()
    except (NoSuchModuleError, ImportError):
        return (
            f"DATABASE_URL names a database this app cannot use ({url.drivername}): "
            "use postgresql://user:password@host:5432/dbname, or unset it to use SQLite."
        )
    return None


def environment_problem() -> str | None:
    """What create_app() would refuse in this process's environment (and .env).

    gunicorn.conf.py asks before forking: a worker that fails to boot prints a
    traceback and gunicorn several lines of its own.
    """
    if not get_debug_flag():
        problem = secret_problem(os.environ.get("JWT_SECRET_KEY"))
        if problem:
            return problem
    return database_url_problem(database_url(os.environ.get("DATABASE_URL")))


def exit_on_environment_problem() -> None:
    problem = environment_problem()
    if problem:
        sys.exit(problem)


# ---------------------------------------------------------------------------
# The database: reachable, and at the code's schema revision
# ---------------------------------------------------------------------------


def connection_problem(error: Exception, url: URL) -> str:
    """One line for a database that did not answer: which one, the driver's reason, the fix."""
    reason = str(getattr(error, "orig", None) or error).strip()
    reason = " ".join(reason.splitlines()[0].split()) if reason else type(error).__name__
    # As the user wrote it: without the "+psycopg2" that config.database_url adds.
    where = url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        return (
            f"Cannot open the SQLite database {where}: {reason}. "
            "Check that its folder exists and is writable."
        )
    if "does not exist" in reason and url.database:
        options = (
            (f"-h {url.host} " if url.host else "")
            + (f"-p {url.port} " if url.port else "")
            + (f"-U {url.username} " if url.username else "")
        )
        fix = f"Create it (createdb {options}{url.database})"
    else:
        fix = "Check that the server runs and accepts connections"
    return (
        f"Cannot connect to the database {where} (DATABASE_URL): {reason}. "
        f"{fix}, or unset DATABASE_URL to use SQLite."
    )


@cache
def migration_scripts() -> ScriptDirectory:
    return ScriptDirectory(MIGRATIONS)


@cache
def head_revision() -> str:
    """The newest revision in migrations/versions, read once per process."""
    return migration_scripts().get_current_head()


def current_revisions(connection: Connection) -> tuple[str, ...]:
    """The revisions the database was migrated to (one, unless branches were merged badly).

    Read with plain SQL: Alembic's MigrationContext logs two INFO lines each time.
    """
    if not inspect(connection).has_table(VERSION_TABLE):
        return ()
    return tuple(sorted(connection.scalars(text(f"SELECT version_num FROM {VERSION_TABLE}"))))


def schema_problem(connection: Connection) -> str | None:
    """None if the database can be served by this code, else what to do.

    An empty database (no `alembic_version` table, or no row in it) is at
    "none". A revision this code does not know was written by a newer release:
    that is the normal moment of a rolling deploy (Render migrates in
    preDeployCommand, then replaces the old instances once the new ones are
    healthy), and migrations keep the previous release working, so the old
    instances stay healthy meanwhile.
    """
    heads = current_revisions(connection)
    head = head_revision()
    if heads == (head,):
        return None
    known = {script.revision for script in migration_scripts().walk_revisions()}
    if heads and not set(heads) & known:
        log.warning("Database schema %s is newer than this code (%s)", ",".join(heads), head)
        return None
    current = ",".join(heads) or "none"
    return f"Database schema is at {current}, code expects {head}: run flask db upgrade"


# Seconds a process keeps the answer of schema_problem() for /api/test-db.
SCHEMA_CHECK_SECONDS = 5.0


def cached_schema_problem(connection: Connection) -> str | None:
    """schema_problem() for the current app, asked again after SCHEMA_CHECK_SECONDS.

    The health check runs every few seconds on every instance; the revision
    rarely changes, so each process reads it at most once per interval.
    """
    app = current_app._get_current_object()
    now = time.monotonic()
    cached = app.extensions.get("schema_check")
    if cached is not None and now < cached[0]:
        return cached[1]
    problem = schema_problem(connection)
    seconds = app.config.get("SCHEMA_CHECK_SECONDS", SCHEMA_CHECK_SECONDS)
    app.extensions["schema_check"] = (now + seconds, problem)
    return problem


# ---------------------------------------------------------------------------
# The password of an admin created by `flask create-admin`
# ---------------------------------------------------------------------------

ADMIN_PASSWORD_MIN, ADMIN_PASSWORD_MAX = 12, 128
DEMO_PASSWORD = "adminpass"
# Lower-case, with trailing digits and symbols removed ("Password123!" -> "password").
COMMON_PASSWORDS = frozenset(
    {
        "admin",
        "adminadmin",
        "administrator",
        "adminpassword",
        "changeme",
        "iloveyou",
        "letmein",
        "monkey",
        "parking",
        "parkinglot",
        "passw0rd",
        "password",
        "p@ssw0rd",
        "p@ssword",
        "qwerty",
        "qwertyuiop",
        "secret",
        "superuser",
        "welcome",
        "123456789012",
        "1234567890123",
        "12345678901234",
        "1q2w3e4r5t6y",
        "qazwsxedcrfv",
        "zaq1zaq1zaq1",
    }
)
TRAILING_DIGITS_AND_SYMBOLS = re.compile(r"[\d\W_]+$")


def admin_password_problem(password: str, email: str, username: str) -> str | None:
    """Why `password` is too weak for an admin, or None."""
    lowered = password.lower()
    base = TRAILING_DIGITS_AND_SYMBOLS.sub("", lowered)
    if "\x00" in password:
        return "The admin password must not contain NUL characters"
    if len(password) < ADMIN_PASSWORD_MIN:
        return f"The admin password must be at least {ADMIN_PASSWORD_MIN} characters"
    if len(password) > ADMIN_PASSWORD_MAX:
        return f"The admin password must be at most {ADMIN_PASSWORD_MAX} characters"
    if DEMO_PASSWORD in lowered:
        return f"The admin password must not contain the demo password {DEMO_PASSWORD}"
    if len(set(password)) == 1:
        return "The admin password must not be one character repeated"
    if lowered in COMMON_PASSWORDS or base in COMMON_PASSWORDS:
        return "The admin password is a common password: choose a long, unusual one"
    names = {email.lower(), email.lower().split("@")[0], username.lower()}
    if lowered in names or base in names:
        return "The admin password must not be the e-mail address or the username"
    return None
