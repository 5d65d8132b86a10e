"""Health: /test-db (Render's health check)."""

from flask import current_app
from sqlalchemy import (
    text,
)

import schemas
from checks import cached_schema_problem
from database import RETRY_AFTER_SECONDS, bounded
from endpoints import endpoint
from models import (
    db,
)
from ratelimit import limiter
from routes.common import api
from validation import ApiError, rollback_quietly

# ===========================================================================
# Health: /test-db
# ===========================================================================


@api.route("/test-db", methods=["GET"])
@limiter.exempt
@endpoint(
    tag="Health",
    summary="Check the database connection and schema (the health check)",
    response=schemas.Message,
    errors={
        503: "The database does not answer within a second (`Database connection failed: "
        "<error class>`), or its schema is behind the code's revision, e.g. `Database schema "
        "is at 0003, code expects 0006: run flask db upgrade`"
    },
)
def test_db():
    """Render's health check: 200 only when the database answers within
    HEALTH_TIMEOUT_MS (connecting included) and its schema is at the code's
    head revision or newer (checks.cached_schema_problem); otherwise 503."""
    limit = current_app.config["HEALTH_TIMEOUT_MS"]
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    try:
        with bounded(limit, total_seconds=limit / 1000):
            db.session.execute(text("SELECT 1"))
            problem = cached_schema_problem(db.session.connection())
    except Exception as exc:  # any driver error means "not connected"
        rollback_quietly()
        current_app.logger.warning("Database check failed: %s", exc)
        raise ApiError(503, f"Database connection failed: {type(exc).__name__}", retry) from None
    if problem:
        raise ApiError(503, problem, retry)
    return {"message": "Database connection successful"}
