"""One error path and the request body as a JSON object.

Views raise `ApiError(status, message)`; `register_error_handlers` turns that,
every HTTPException, JWT failure and unexpected exception into
`{"error": message}` with the right status, so no view builds an error body.
`json_body()` reads the request's JSON object (refusing what is not one with a
400); the fields in it are validated by the models in schemas.py.
"""

import logging
from typing import Any

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from database import RETRY_AFTER_SECONDS, UNAVAILABLE, is_database_fault

log = logging.getLogger(__name__)

# PostgreSQL's integer is 32-bit; ids and amounts beyond it are refused up front.
MAX_INT = 2**31 - 1


class ApiError(Exception):
    """An answer with `{"error": message}` (plus `extra` keys, e.g. the balance
    of a 402) and the status; raised anywhere, answered in one place."""

    def __init__(
        self, status: int, message: str, headers: dict | None = None, extra: dict | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}


def error_response(status: int, message: str, headers: dict | None = None, extra=None):
    response = jsonify({"error": message, **(extra or {})})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# Werkzeug's default descriptions are paragraphs written for HTML pages.
SHORT_MESSAGES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large (limit 1 MiB)",
    415: "Content-Type must be application/json",
    429: "Too many requests",
}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError):
        rollback_quietly()  # nothing half-done survives a refused request
        return error_response(error.status, error.message, error.headers, error.extra)

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException):
        status = error.code or 500
        headers = {}
        if status == 405 and error.valid_methods:
            headers["Allow"] = ", ".join(error.valid_methods)
        return error_response(status, SHORT_MESSAGES.get(status, error.name), headers)

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        rollback_quietly()
        if is_database_fault(error):
            log.warning("Database fault on %s %s: %s", request.method, request.path, error)
            return error_response(503, UNAVAILABLE, {"Retry-After": str(RETRY_AFTER_SECONDS)})
        log.exception("Unhandled exception on %s %s", request.method, request.path)
        return error_response(500, "Internal server error")


def rollback_quietly() -> None:
    """Roll the request's session back; on a dead connection that may fail too,
    and the answer must still be JSON."""
    from models import db

    try:
        db.session.rollback()
    except Exception:  # the connection is gone; the pool discards it
        log.warning("Rollback failed", exc_info=True)


# ---------------------------------------------------------------------------
# Request bodies
# ---------------------------------------------------------------------------


def request_json() -> Any:
    """The parsed JSON body (None when absent or not JSON), or 400.

    Two inputs the json module accepts would otherwise end in a 500: nesting
    deep enough to raise RecursionError, and `\\ud800`-style escapes that decode
    to lone surrogates, which no database driver, hash or Redis key can encode.
    """
    if request.content_length is None and request.environ.get("wsgi.input_terminated"):
        # A chunked body has no Content-Length to refuse up front: the server
        # stops reading at MAX_CONTENT_LENGTH, and what it read is cut short.
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        if limit is not None and len(request.get_data(cache=True)) >= limit:
            raise ApiError(413, SHORT_MESSAGES[413])
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        raise ApiError(400, "Request body must be valid JSON") from None
    pending = [data]
    while pending:  # iterative: the body may be nested close to the recursion limit
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ApiError(400, "Request body must be valid UTF-8 text") from None
    return data


def json_body() -> dict[str, Any]:
    """The request's JSON object, or 400. Never raises anything else."""
    data = request_json()
    if data is None:
        raw = request.get_data(cache=True).strip()
        if not raw:
            return {}
        if not request.is_json:
            raise ApiError(400, "Content-Type must be application/json")
        if raw == b"null":
            raise ApiError(400, "Request body must be a JSON object")
        raise ApiError(400, "Request body must be valid JSON")
    if not isinstance(data, dict):
        raise ApiError(400, "Request body must be a JSON object")
    return data


# ---------------------------------------------------------------------------
# Path ids
# ---------------------------------------------------------------------------


class IdConverter(IntegerConverter):
    """`<int:...>` in URLs. An id beyond MAX_INT cannot exist; it becomes 0 (which
    never exists either), so the view gives its usual not-found answer instead of
    an OverflowError (500) from the database driver.

    Refusing it with `max=` would be wrong: Werkzeug checks a sibling rule's
    methods before converting, so PATCH/DELETE would answer 405, not 404.
    """

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        return number if number <= MAX_INT else 0
