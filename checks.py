"""Checks that answer in one line: can the app serve.

Each check returns a problem (one line that says what is wrong and the fix)
or None; `/api/test-db` answers 503 with it.
"""

import os
import time
from functools import cache

from alembic.script import ScriptDirectory
from flask import current_app
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
VERSION_TABLE = "alembic_version"


# ---------------------------------------------------------------------------
# The database: at the code's schema revision
# ---------------------------------------------------------------------------


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
    """None if the database is at the code's head revision, else what to do.

    An empty database (no `alembic_version` table, or no row in it) is at "none".
    """
    heads = current_revisions(connection)
    head = head_revision()
    if heads == (head,):
        return None
    current = ",".join(heads) or "none"
    known = {script.revision for script in migration_scripts().walk_revisions()}
    if set(heads) <= known:
        fix = "run flask db upgrade"
    else:
        # Migrated by a newer release of the code: upgrading cannot help, deploying can.
        fix = f"deploy the code that has revision {current}"
    return f"Database schema is at {current}, code expects {head}: {fix}"


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
