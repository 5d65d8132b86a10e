"""Application factory: `create_app()` builds the app, `app` serves gunicorn and the CLI.

`gunicorn app:app` and `FLASK_APP=app.py` both find the module-level `app`,
which is created on first access (so importing `create_app` in tests does not
build a production app that would demand a JWT secret).
"""

import logging
import os
import sqlite3
import sys
from datetime import timedelta

import click
import orjson
from flask import Flask, g, request
from flask.helpers import get_debug_flag
from flask.json.provider import DefaultJSONProvider
from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
from sqlalchemy import event, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.middleware.proxy_fix import ProxyFix

import database
import idempotency
import replica
import tokens
from checks import ConfigError, admin_password_problem, database_url_problem, secret_problem
from config import DevelopmentConfig, ProductionConfig, TestConfig
from models import RevokedToken, User, db, utcnow
from routes import api, hash_password, limiter
from schemas import EMAIL_MAX, EMAIL_RE, USERNAME_MAX
from validation import ApiError, IdConverter, error_response, register_error_handlers

jwt = JWTManager()
migrate = Migrate()

# Headers the SPA needs to read across origins (pagination, rate limits).
EXPOSED_HEADERS = [
    "X-Total-Count",
    "Link",
    "Retry-After",
    "Content-Disposition",
    idempotency.REPLAYED,
]


class FastJSONProvider(DefaultJSONProvider):
    """Response bodies encoded by orjson (several times faster on the list bodies).

    Same output as the stdlib encoder: compact, keys in insertion order, and
    dates, decimals and the like through Flask's own `default`. Whatever orjson
    refuses (integers beyond 64 bits, lone surrogates) falls back to the stdlib;
    debug mode keeps Flask's indented output, and `dumps` (the test client's
    request bodies) stays the stdlib's.
    """

    sort_keys = False
    OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME

    def _encode(self, obj) -> bytes | None:
        try:
            return orjson.dumps(obj, default=self.default, option=self.OPTIONS)
        except (TypeError, orjson.JSONEncodeError):
            return None

    def response(self, *args, **kwargs):
        if self._app.debug:
            return super().response(*args, **kwargs)
        obj = self._prepare_response_obj(args, kwargs)
        encoded = self._encode(obj)
        if encoded is None:
            return super().response(obj)
        return self._app.response_class(encoded + b"\n", mimetype=self.mimetype)


def create_app(config=None) -> Flask:
    """Build the app. `config` is a config class, or a dict applied on top of
    the environment's class (DevelopmentConfig under FLASK_DEBUG, else Production)."""
    app = Flask(__name__, instance_relative_config=True)
    app.json = FastJSONProvider(app)
    env_config = DevelopmentConfig if get_debug_flag() else ProductionConfig
    if isinstance(config, dict):
        app.config.from_object(env_config)
        app.config.update(config)
    else:
        app.config.from_object(config or env_config)
    app.config.setdefault(
        "JWT_ACCESS_TOKEN_EXPIRES", timedelta(minutes=app.config["JWT_ACCESS_MINUTES"])
    )
    app.config.setdefault(
        "JWT_REFRESH_TOKEN_EXPIRES", timedelta(days=app.config["JWT_REFRESH_DAYS"])
    )
    check_secret(app)
    check_database_url(app)
    app.url_map.strict_slashes = False
    # Ids in URLs stay within the integer range of the columns (404 beyond).
    app.url_map.converters["int"] = IdConverter
    if app.config["PROXY_HOPS"]:
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=app.config["PROXY_HOPS"], x_proto=app.config["PROXY_HOPS"]
        )
    register_extensions(app)
    app.register_blueprint(api, url_prefix="/api")
    register_error_handlers(app)
    register_jwt_callbacks(app)
    register_security_headers(app)
    idempotency.register(app)
    register_commands(app)
    app.wsgi_app = JSONFailSafe(app.wsgi_app)
    return app


def check_secret(app: Flask) -> None:
    if app.debug or app.testing:
        return
    problem = secret_problem(app.config.get("JWT_SECRET_KEY"))
    if problem:
        raise ConfigError(problem)


def check_database_url(app: Flask) -> None:
    problem = database_url_problem(app.config["SQLALCHEMY_DATABASE_URI"])
    if problem:
        raise ConfigError(problem)


def register_extensions(app: Flask) -> None:
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///"):
        import os

        os.makedirs(app.instance_path, exist_ok=True)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = database.engine_options(uri, app.config)
    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            database.install(app, engine)
    guard_session_teardown(app)
    replica.init_app(app)
    migrate.init_app(app, db, directory="migrations", compare_type=True, render_as_batch=True)
    jwt.init_app(app)
    # Flask runs after_request hooks in reverse order of registration: this
    # one, registered first, sees the limiter's headers.
    app.after_request(retry_after_only_when_refused)
    limiter.init_app(app)
    CORS(
        app,
        resources={
            # The public availability feed: any origin (signage, open-data sites).
            "/api/availability": {"origins": "*", "send_wildcard": True},
            r"/api/*": {"origins": app.config["CORS_ORIGINS"]},
        },
        expose_headers=EXPOSED_HEADERS,
        allow_headers=["Authorization", "Content-Type", idempotency.HEADER],
        methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        max_age=600,
    )


def guard_session_teardown(app: Flask) -> None:
    """Flask-SQLAlchemy closes the session after every request; on a connection
    that died meanwhile that can raise, after the answer was made, and the
    client would get the WSGI server's HTML 500. Close it without raising."""
    original = db._teardown_session
    funcs = app.teardown_appcontext_funcs

    def teardown_session(exc):
        try:
            original(exc)
        except Exception:
            logging.getLogger(__name__).warning("Closing the session failed", exc_info=True)

    funcs[:] = [teardown_session if f == original else f for f in funcs]


class JSONFailSafe:
    """Outermost WSGI layer: whatever escapes Flask (a failing teardown, an
    error inside an error handler) still answers JSON, never the server's
    HTML page. The app's start_response is held back until the app returned,
    so an answer already made can still be replaced by the error."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        started = []

        def hold(status, headers, exc_info=None):
            started[:] = [(status, headers)]
            return start_response(status, headers, exc_info) if exc_info else None

        try:
            body = self.wsgi_app(environ, hold)
        except Exception as error:
            logging.getLogger(__name__).exception("Failure outside the app's error handlers")
            if database.is_database_fault(error):
                status, message = "503 SERVICE UNAVAILABLE", database.UNAVAILABLE
                extra = [("Retry-After", str(database.RETRY_AFTER_SECONDS))]
            else:
                status, message, extra = "500 INTERNAL SERVER ERROR", "Internal server error", []
            payload = orjson.dumps({"error": message}) + b"\n"
            headers = [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload))),
                ("Cache-Control", "no-store"),
                *extra,
            ]
            start_response(status, headers)
            return [payload]
        start_response(*started[0])
        return body


@event.listens_for(Session, "before_commit")
def commit_only_for_a_listening_client(_session) -> None:
    """A write whose client already gave up (a timeout, a closed app) is not
    committed: the client would retry a request it believes failed. Clients
    that lose an answer after the commit retry with an Idempotency-Key."""
    if database.client_gone():
        raise ApiError(400, "The client closed the connection; nothing was written")


@event.listens_for(Engine, "connect")
def enforce_sqlite_foreign_keys(dbapi_connection, _record) -> None:
    """SQLite ignores foreign keys unless asked, per connection; PostgreSQL always checks."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA foreign_keys=ON")


def retry_after_only_when_refused(response):
    """`Retry-After` asks a client to come back later: only a 429 (rate limit)
    or a 503 (database fault) means that. Flask-Limiter adds its window's reset
    as `Retry-After` to every answer of a limited route, and on a 503 raises
    the database's 2 seconds to that reset (up to a minute); both are undone
    here."""
    if response.status_code == 503:
        response.headers["Retry-After"] = str(database.RETRY_AFTER_SECONDS)
    elif response.status_code != 429:
        response.headers.pop("Retry-After", None)
    return response


# Token errors whose detail a client can act on: the wrong kind of token, a
# malformed header. Every other detail comes from the decoder and names its
# internals (codecs, padding, segments): those answer "Invalid token" alone.
TOKEN_ERRORS_SHOWN = (
    "Only refresh tokens are allowed",
    "Only non-refresh tokens are allowed",
    "Bad Authorization header",
)


def register_jwt_callbacks(app: Flask) -> None:
    """Every JWT failure answers 401 `{"error": ...}`; authorization re-reads the user row."""

    @jwt.user_lookup_loader
    def load_user(_header, payload):
        # is_revoked (which runs first) read the row: one statement per request.
        cached = g.pop("jwt_user", None)
        if cached is not None and cached[0] == payload["jti"]:
            return cached[1]
        found = tokens.token_user(payload)
        return found and found[0]

    @jwt.token_in_blocklist_loader
    def is_revoked(_header, payload) -> bool:
        found = tokens.token_user(payload)
        if found is None:
            return False  # reported by the user lookup as "User not found"
        user, revoked = found
        g.jwt_user = (payload["jti"], user)
        if payload.get("ver") != user.token_version:
            return True
        # Issued before this row existed: a deleted user's token whose id was
        # reused (SQLite reuses the highest rowid). 5 s allow for clock skew.
        if payload.get("iat", 0) + 5 < user.created_at.timestamp():
            return True
        if revoked and payload["type"] == "refresh":
            # A retried refresh within the leeway gets the same new pair (tokens.py).
            return not tokens.replay_allowed(payload, utcnow())
        return revoked

    @jwt.user_lookup_error_loader
    def user_gone(_header, _payload):
        return error_response(401, "User not found")

    @jwt.unauthorized_loader
    def missing_token(message):
        return error_response(401, message)

    @jwt.invalid_token_loader
    def invalid_token(message):
        if message.startswith(TOKEN_ERRORS_SHOWN):
            return error_response(401, f"Invalid token: {message}")
        return error_response(401, "Invalid token")

    @jwt.expired_token_loader
    def expired_token(_header, _payload):
        return error_response(401, "Token has expired")

    @jwt.revoked_token_loader
    def revoked_token(_header, payload):
        if payload.get("type") == "refresh" and db.session.get(RevokedToken, payload["jti"]):
            # A refresh token that was already rotated away came back: it was
            # copied. Revoke every token of the user; they must log in again.
            tokens.revoke_all_tokens(int(payload["sub"]))
        return error_response(401, "Token has been revoked")

    @jwt.needs_fresh_token_loader
    def stale_token(_header, _payload):
        return error_response(401, "Fresh token required")


# JSON answers that shared caches may keep: the public availability feed sets
# its own `Cache-Control: public, max-age=5` (routes/availability.py).
CACHEABLE_ENDPOINTS = frozenset({"api.availability"})


def register_security_headers(app: Flask) -> None:
    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.endpoint in CACHEABLE_ENDPOINTS and response.status_code in (200, 304):
            return response
        if "Authorization" in request.headers or response.is_json:
            # API answers are personal or live; no cache may keep them.
            response.headers["Cache-Control"] = "no-store"
        return response


def register_commands(app: Flask) -> None:
    @app.cli.command("promote")
    @click.argument("email")
    @click.option(
        "--role",
        type=click.Choice(["attendant", "admin"]),
        default="admin",
        show_default=True,
        help="The role to give (PATCH /api/users/<id> changes roles too).",
    )
    def promote(email, role):
        """Give the user with EMAIL a staff role (admin by default)."""
        result = db.session.execute(
            update(User).where(User.email == email.strip().lower()).values(role=role)
        )
        db.session.commit()
        if result.rowcount == 0:
            raise click.ClickException(f"No user with e-mail {email}")
        click.echo(f"{email} is now an {role}")

    @app.cli.command("create-admin")
    def create_admin():
        """Create an admin account: the first one of a real deployment.

        Reads ADMIN_EMAIL, ADMIN_PASSWORD and ADMIN_USERNAME (optional: the
        e-mail's local part) from the environment, and asks for what is missing.
        Refuses a weak or demo password, and an e-mail that belongs to a driver
        (`flask promote EMAIL` makes that account an admin, password unchanged).
        """
        interactive = not os.environ.get("ADMIN_EMAIL")
        email = (os.environ.get("ADMIN_EMAIL") or click.prompt("E-mail")).strip().lower()
        if len(email) > EMAIL_MAX or not EMAIL_RE.match(email):
            raise click.ClickException(f"Not an e-mail address: {email}")
        existing = db.session.scalar(select(User).where(User.email == email))
        if existing is not None and existing.is_admin:
            click.echo(f"{email} is already an admin: nothing changed (password included)")
            return
        if existing is not None:
            raise click.ClickException(
                f"{email} belongs to a {existing.role}: make that account an admin with "
                f"`flask promote {email}` (its password stays), or choose another e-mail"
            )
        default_username = email.split("@")[0][:USERNAME_MAX]
        username = os.environ.get("ADMIN_USERNAME") or (
            click.prompt("Username", default=default_username) if interactive else default_username
        )
        username = username.strip()
        if not username or len(username) > USERNAME_MAX:
            raise click.ClickException(f"The username must be 1-{USERNAME_MAX} characters")
        taken = select(User.id).where(func.lower(User.username) == username.lower())
        if db.session.scalar(taken) is not None:
            raise click.ClickException(
                f"Username {username} is taken: choose another one (ADMIN_USERNAME)"
            )
        password = os.environ.get("ADMIN_PASSWORD") or click.prompt(
            "Password", hide_input=True, confirmation_prompt=True
        )
        problem = admin_password_problem(password, email, username)
        if problem:
            raise click.ClickException(problem)
        db.session.add(
            User(
                username=username,
                email=email,
                role="admin",
                password_hash=hash_password(password),
            )
        )
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            raise click.ClickException(
                f"{email} or {username} was registered meanwhile: run the command again"
            ) from None
        click.echo(f"Created admin {username} <{email}>")

    @app.cli.command("prune-tokens")
    def prune_tokens():
        """Delete revocation records of tokens that have expired anyway."""
        click.echo(f"Pruned {tokens.prune_revoked_tokens()} expired revoked tokens")

    @app.cli.command("deliver-events")
    @click.option("--once", is_flag=True, help="One pass over what is due now, then exit.")
    @click.option("--poll", default=1.0, show_default=True, help="Seconds between idle passes.")
    def deliver_events(once, poll):
        """Deliver webhook events (the outbox) until stopped; several may run."""
        import webhooks

        if once:
            dispatched, delivered, failed = webhooks.run_pass()
            click.echo(f"Dispatched {dispatched} events; {delivered} delivered, {failed} not")
            return
        webhooks.run_forever(poll)

    @app.cli.command("expire-reservations")
    def expire_reservations():
        """Record as no-shows the confirmed reservations not checked in by their
        no_show_at. Optional: the API treats them so already; this writes it down."""
        from parking import now
        from routes.reservations import expire_overdue

        count = expire_overdue(now())
        db.session.commit()
        click.echo(f"Marked {count} reservations as no-shows")

    @app.cli.command("prune-idempotency")
    def prune_idempotency():
        """Delete idempotency keys older than 24 hours (their answers are no longer replayed)."""
        click.echo(f"Pruned {idempotency.prune()} expired idempotency keys")


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def __getattr__(name: str):
    if name == "app":
        try:
            application = create_app()
        except ConfigError as error:
            # The entry points (gunicorn, `flask`) print one line, not a traceback.
            # Status 4 is gunicorn's "App failed to load": its master stops
            # instead of forking new workers forever; elsewhere it is just non-zero.
            print(error, file=sys.stderr)
            raise SystemExit(4) from None
        globals()["app"] = application
        return application
    raise AttributeError(name)


__all__ = ["create_app", "TestConfig"]
