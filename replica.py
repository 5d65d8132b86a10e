"""Reads that tolerate a second of lag, from a read replica (DATABASE_REPLICA_URL).

A view decorated with `@replica_reads` runs its queries on the `replica` bind
(config.py builds it from DATABASE_REPLICA_URL); everything else stays on the
primary: every write, everything that decides a booking, and what a user reads
right after writing. Put the decorator *below* `@jwt_required()`, so the token
check, which must see a logout at once, still reads the primary.

The views keep querying the models through `db.session`: `RoutingSession`
hands out the replica engine while a routed view runs, so a routed view that
tried to write would fail on the read-only replica instead of writing somewhere
unexpected.

A dead replica must not take the routed reads down with it or stall them:

* the replica connection is opened when the view starts, with a short
  connect timeout (REPLICA_CONNECT_TIMEOUT); if that fails the view runs on
  the primary;
* a failure opens a circuit breaker for REPLICA_RETRY_SECONDS: during that
  time the routed views go straight to the primary, so a dead replica costs
  one failed connection attempt per worker per window, not one per request;
* a replica connection lost in the middle of a view opens the breaker too, and
  the view (read-only) runs again on the primary.

Without DATABASE_REPLICA_URL the decorator does nothing.
"""

import time
from functools import wraps

from flask import current_app, g, has_app_context
from flask_sqlalchemy.session import Session
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

REPLICA = "replica"


class RoutingSession(Session):
    """Flask-SQLAlchemy's session, sending every statement to the replica while
    a `@replica_reads` view runs (the engine is in `g.replica_engine`)."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is None and has_app_context():
            engine = g.get("replica_engine")
            if engine is not None:
                return engine
        return super().get_bind(mapper, clause=clause, bind=bind, **kwargs)


class Breaker:
    """Per app and process: after a replica failure, leave it alone for a while."""

    def __init__(self, retry_seconds: float):
        self.retry_seconds = retry_seconds
        self.open_until = 0.0

    def closed(self) -> bool:
        return time.monotonic() >= self.open_until

    def trip(self) -> None:
        self.open_until = time.monotonic() + self.retry_seconds


def init_app(app) -> None:
    app.extensions["replica_breaker"] = Breaker(app.config["REPLICA_RETRY_SECONDS"])


def replica_engine():
    """The replica's engine, or None (not configured, or the breaker is open)."""
    if REPLICA not in current_app.config["SQLALCHEMY_BINDS"]:
        return None
    if not current_app.extensions["replica_breaker"].closed():
        return None
    return current_app.extensions["sqlalchemy"].engines[REPLICA]


def replica_failed(db, error: Exception) -> None:
    """Open the breaker and drop whatever the replica left in the session."""
    current_app.extensions["replica_breaker"].trip()
    current_app.logger.warning(
        "read replica unavailable, reading from the primary for %ss: %s",
        current_app.config["REPLICA_RETRY_SECONDS"],
        str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__,
    )
    g.pop("replica_engine", None)
    db.session.rollback()


def replica_reads(view):
    """Run the view's queries on the read replica when there is a healthy one."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        engine = replica_engine()
        if engine is None:
            return view(*args, **kwargs)
        db = current_app.extensions["sqlalchemy"]
        try:
            # Connect now (pool checkout, pre-ping, connect timeout): a failure
            # here is cheap to recover from, before the view has done anything.
            db.session.connection(bind_arguments={"bind": engine})
        except SQLAlchemyError as error:
            replica_failed(db, error)
            return view(*args, **kwargs)
        g.replica_engine = engine
        try:
            return view(*args, **kwargs)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            # The replica went away mid-view; the view only reads, so run it again.
            replica_failed(db, error)
            return view(*args, **kwargs)
        finally:
            g.pop("replica_engine", None)

    return wrapper
