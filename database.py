"""Bounded waits on the database, and what a database fault answers.

No request may wait on the database for long, whatever the database does:

* Server side, per transaction: `SET LOCAL statement_timeout` and
  `lock_timeout` at the start of every transaction a request opens (PostgreSQL).
  `SET LOCAL` ends with the transaction, so it holds behind PgBouncer in
  transaction mode, where a session-level `SET` would leak to other clients.
* Client side, for a server that does not answer at all (paused, a dead
  network path, a full backlog): psycopg2 runs in "green" mode with a wait
  callback that polls the socket with `select()` and gives up at a deadline,
  which covers connecting too. A connection that timed out is discarded
  (its query may still be running), never reused.
* The pool: `pool_timeout` bounds the wait for a free connection and libpq's
  `connect_timeout` the connection attempt.

Outside a request (migrations, CLI commands) nothing is bounded unless the
command asks with `bounded()`: `flask db upgrade` may legitimately run for
minutes. The health check uses a shorter bound (`HEALTH_TIMEOUT_MS`).

Every such fault (a timeout, a lost connection, a restart, a deadlock, a lock
that could not be taken) becomes `503 {"error": "Database unavailable, retry
shortly"}` with `Retry-After` (see validation.register_error_handlers).
"""

import select as io_select
import socket
import time
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from flask import Flask, current_app, has_request_context, request
from sqlalchemy import event, select, update
from sqlalchemy import exc as sa_exc

from models import db

try:  # psycopg2 is a runtime dependency, but SQLite alone needs none of this
    import psycopg2
    import psycopg2.extensions
except ImportError:  # pragma: no cover
    psycopg2 = None

UNAVAILABLE = "Database unavailable, retry shortly"
RETRY_AFTER_SECONDS = 2


@dataclass(frozen=True, slots=True)
class Limits:
    """How long one statement may run (statement_ms) and wait for a lock
    (lock_ms); `deadline` (time.monotonic()) ends every wait, whatever is left."""

    statement_ms: int
    lock_ms: int
    deadline: float | None = None

    def client_deadline(self) -> float:
        # The server's own timeout should answer first; the client waits a
        # little longer, for a server that cannot answer at all.
        wait_until = time.monotonic() + self.statement_ms / 1000 + 1.0
        return wait_until if self.deadline is None else min(wait_until, self.deadline)


# The limits of the current request or command (None: unbounded).
_limits: ContextVar[Limits | None] = ContextVar("database_limits", default=None)


def request_limits() -> Limits | None:
    limits = _limits.get()
    if limits is not None:
        return limits
    if has_request_context():
        config = current_app.config
        return Limits(config["DB_STATEMENT_TIMEOUT_MS"], config["DB_LOCK_TIMEOUT_MS"])
    return None


@contextmanager
def bounded(statement_ms: int, lock_ms: int | None = None, total_seconds: float | None = None):
    """Bound the database waits of the enclosed code (requests and commands);
    `total_seconds` bounds all of them together (connecting included)."""
    deadline = None if total_seconds is None else time.monotonic() + total_seconds
    lock_ms = statement_ms if lock_ms is None else lock_ms
    token = _limits.set(Limits(statement_ms, lock_ms, deadline))
    try:
        yield
    finally:
        _limits.reset(token)


class DatabaseWaitTimeout(psycopg2.OperationalError if psycopg2 else Exception):
    """The database did not answer before the client-side deadline."""


def wait_with_deadline(connection) -> None:
    """psycopg2 wait callback: poll until the result is in, or give up.

    Same loop as psycopg2.extras.wait_select, with a deadline. Under gevent's
    monkey patching select() yields to other greenlets, so this also makes
    psycopg2 cooperative there.
    """
    limits = request_limits()
    deadline = None if limits is None else limits.client_deadline()
    if connection.status == psycopg2.extensions.STATUS_SETUP:
        # Connecting: libpq applies connect_timeout only to blocking connects.
        seconds = psycopg2.extensions.parse_dsn(connection.dsn).get("connect_timeout")
        if seconds:
            connect_by = time.monotonic() + max(2, int(seconds))
            deadline = connect_by if deadline is None else min(deadline, connect_by)
    while True:
        state = connection.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        if state == psycopg2.extensions.POLL_READ:
            readers, writers = [connection.fileno()], []
        elif state == psycopg2.extensions.POLL_WRITE:
            readers, writers = [], [connection.fileno()]
        else:  # pragma: no cover - psycopg2 documents no other state
            raise psycopg2.OperationalError(f"bad state from poll: {state}")
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = io_select.select(readers, writers, [], timeout)
        if deadline is not None and not any(ready) and time.monotonic() >= deadline:
            raise DatabaseWaitTimeout("the database did not answer in time")


_installed: "weakref.WeakSet" = weakref.WeakSet()


def install(app: Flask, engine) -> None:
    """Apply the bounds to the app's engine (idempotent per engine)."""
    if engine.dialect.name != "postgresql" or engine in _installed:
        return
    _installed.add(engine)
    psycopg2.extensions.set_wait_callback(wait_with_deadline)

    @event.listens_for(engine, "begin")
    def set_transaction_timeouts(conn) -> None:
        limits = request_limits()
        if limits is None:
            return
        # The raw cursor: SQLAlchemy is still opening its transaction here.
        # psycopg2 sends BEGIN first, so SET LOCAL lasts exactly this transaction.
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            # jit: the app runs short statements only, which PostgreSQL's JIT
            # compiles for longer than they run (bench/README.md: 11 s of JIT
            # in a 365-day report); off in the same round trip.
            cursor.execute(
                f"SET LOCAL statement_timeout = {int(limits.statement_ms)};"
                f"SET LOCAL lock_timeout = {int(limits.lock_ms)};"
                "SET LOCAL jit = off"
            )
        finally:
            cursor.close()

    @event.listens_for(engine, "handle_error")
    def discard_timed_out_connections(context) -> None:
        # Its query may still be running on the server: never reuse it.
        if isinstance(context.original_exception, DatabaseWaitTimeout):
            context.is_disconnect = True


def client_gone() -> bool:
    """Has the client of this request closed its connection? (Only for the
    servers that expose the socket: gunicorn and Werkzeug's; False otherwise.)

    A closed connection is readable and reads as end-of-file; a pipelined next
    request is readable too, but has bytes."""
    environ = request.environ if has_request_context() else {}
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if sock is None:
        return False
    try:
        readable, _, _ = io_select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):  # reset, or already closed
        return True


def engine_options(uri: str, config) -> dict:
    """SQLALCHEMY_ENGINE_OPTIONS for the database in `uri`."""
    options = dict(config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if uri.startswith("postgresql"):
        options.setdefault("pool_pre_ping", True)
        options.setdefault("pool_timeout", config["DB_POOL_TIMEOUT"])
        options.setdefault("pool_size", config["DB_POOL_SIZE"])
        options.setdefault("max_overflow", config["DB_MAX_OVERFLOW"])
        connect_args = dict(options.get("connect_args") or {})
        connect_args.setdefault("connect_timeout", config["DB_CONNECT_TIMEOUT"])
        options["connect_args"] = connect_args
    elif uri.startswith("sqlite"):
        # How long a writer waits for SQLite's write lock before "database is locked".
        connect_args = dict(options.get("connect_args") or {})
        connect_args.setdefault("timeout", config["DB_LOCK_TIMEOUT_MS"] / 1000)
        options["connect_args"] = connect_args
    return options


def is_database_fault(error: BaseException) -> bool:
    """A fault of the database or the way to it, which a retry may cure."""
    if isinstance(error, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True  # no pooled connection in time / lost while checking out
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    original = getattr(error, "orig", error)
    if psycopg2 is not None and isinstance(original, psycopg2.OperationalError):
        # Lost connection, restart, statement/lock timeout, deadlock, admin shutdown.
        return True
    if isinstance(error, sa_exc.OperationalError):
        message = str(original).lower()
        # SQLite: "database is locked" / "unable to open database file"; a missing
        # table is a deployment error (the health check reports it), not a fault.
        return "no such" not in message
    return False


# ---------------------------------------------------------------------------
# Running statements and taking row locks in the request's transaction
# ---------------------------------------------------------------------------


def run(statement, params: dict | None = None):
    """Execute a prebuilt Core statement in the session's transaction, without
    the ORM's per-statement machinery (plain rows, no identity map)."""
    return db.session.connection().execute(statement, params or {})


def lock_row(table, row_id: int) -> bool:
    """Lock one row for the rest of the transaction; False if it does not exist.

    PostgreSQL: SELECT ... FOR NO KEY UPDATE (foreign keys pointing at the row
    may still be inserted). SQLite locks the whole database for the first
    write, so a no-op UPDATE takes that lock now."""
    key = table.c.id if hasattr(table, "c") else table.id
    if db.session.get_bind().dialect.name == "sqlite":
        statement = update(key.table).where(key == row_id).values({key.name: key})
        return run(statement).rowcount == 1
    statement = select(key).where(key == row_id).with_for_update(key_share=True)
    return run(statement).first() is not None
