"""Application factory: `create_app()` builds the app, `app` serves gunicorn and the CLI.

`gunicorn app:app` and `FLASK_APP=app.py` both find the module-level `app`,
which is created on first access (so importing `create_app` in tests does not
build a production app that would demand a JWT secret).
"""

import logging
import sqlite3
from dataclasses import fields
from datetime import timedelta

import click
import orjson
from flask import Flask, g, request
from flask.helpers import get_debug_flag
from flask.json.provider import DefaultJSONProvider
from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
from sqlalchemy import bindparam, event, exists, select, update
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

import replica
from config import PLACEHOLDER_SECRETS, DevelopmentConfig, ProductionConfig, TestConfig
from models import AuthUser, RevokedToken, User, db
from routes import api, limiter, prune_revoked_tokens, revoke_all_tokens, run
from validation import IdConverter, error_response, register_error_handlers

jwt = JWTManager()
migrate = Migrate()

# Headers the SPA needs to read across origins (pagination, rate limits).
EXPOSED_HEADERS = ["X-Total-Count", "Link", "Retry-After", "Content-Disposition"]


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
    register_commands(app)
    return app


def check_secret(app: Flask) -> None:
    if app.debug or app.testing:
        return
    secret = app.config.get("JWT_SECRET_KEY") or ""
    # HS256 needs a key of at least 32 bytes (RFC 7518 3.2; PyJWT warns below that).
    if secret.strip().lower() in PLACEHOLDER_SECRETS or len(secret.encode()) < 32:
        raise RuntimeError(
            "JWT_SECRET_KEY is missing, a placeholder or shorter than 32 characters: set it "
            "to a long random value (e.g. `openssl rand -hex 32`) in the environment or .env."
        )


def register_extensions(app: Flask) -> None:
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        import os

        os.makedirs(app.instance_path, exist_ok=True)
    db.init_app(app)
    replica.init_app(app)
    migrate.init_app(app, db, directory="migrations", compare_type=True, render_as_batch=True)
    jwt.init_app(app)
    limiter.init_app(app)
    CORS(
        app,
        resources={r"/api/*": {"origins": app.config["CORS_ORIGINS"]}},
        expose_headers=EXPOSED_HEADERS,
        allow_headers=["Authorization", "Content-Type"],
        methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        max_age=600,
    )


@event.listens_for(Engine, "connect")
def enforce_sqlite_foreign_keys(dbapi_connection, _record) -> None:
    """SQLite ignores foreign keys unless asked, per connection; PostgreSQL always checks."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA foreign_keys=ON")


# The user and whether the token was revoked, in one statement on every
# authenticated request. Built once, run on the session's connection and read
# as a plain row: building it per request and loading an ORM object cost more
# CPU than running it (bench/README.md).
TOKEN_USER = select(
    *(getattr(User, field.name) for field in fields(AuthUser)),
    exists().where(RevokedToken.jti == bindparam("jti")).label("revoked"),
).where(User.id == bindparam("user_id"))


def token_user(payload: dict) -> tuple[AuthUser, bool] | None:
    """The token's user and whether the token itself was revoked (None: no such user)."""
    params = {"user_id": int(payload["sub"]), "jti": payload["jti"]}
    row = run(TOKEN_USER, params).first()
    if row is None:
        return None
    *columns, revoked = row
    return AuthUser(*columns), revoked


def register_jwt_callbacks(app: Flask) -> None:
    """Every JWT failure answers 401 `{"error": ...}`; authorization re-reads the user row."""

    @jwt.user_lookup_loader
    def load_user(_header, payload):
        # is_revoked (which runs first) read the row: one statement per request.
        cached = g.pop("jwt_user", None)
        if cached is not None and cached[0] == payload["jti"]:
            return cached[1]
        found = token_user(payload)
        return found and found[0]

    @jwt.token_in_blocklist_loader
    def is_revoked(_header, payload) -> bool:
        found = token_user(payload)
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
        return revoked

    @jwt.user_lookup_error_loader
    def user_gone(_header, _payload):
        return error_response(401, "User not found")

    @jwt.unauthorized_loader
    def missing_token(message):
        return error_response(401, message)

    @jwt.invalid_token_loader
    def invalid_token(message):
        return error_response(401, f"Invalid token: {message}")

    @jwt.expired_token_loader
    def expired_token(_header, _payload):
        return error_response(401, "Token has expired")

    @jwt.revoked_token_loader
    def revoked_token(_header, payload):
        if payload.get("type") == "refresh" and db.session.get(RevokedToken, payload["jti"]):
            # A refresh token that was already rotated away came back: it was
            # copied. Revoke every token of the user; they must log in again.
            revoke_all_tokens(int(payload["sub"]))
        return error_response(401, "Token has been revoked")

    @jwt.needs_fresh_token_loader
    def stale_token(_header, _payload):
        return error_response(401, "Fresh token required")


def register_security_headers(app: Flask) -> None:
    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if "Authorization" in request.headers or response.is_json:
            # API answers are personal or live; no cache may keep them.
            response.headers["Cache-Control"] = "no-store"
        return response


def register_commands(app: Flask) -> None:
    @app.cli.command("promote")
    @click.argument("email")
    def promote(email):
        """Make the user with EMAIL an admin."""
        result = db.session.execute(
            update(User).where(User.email == email.strip().lower()).values(role="admin")
        )
        db.session.commit()
        if result.rowcount == 0:
            raise click.ClickException(f"No user with e-mail {email}")
        click.echo(f"{email} is now an admin")

    @app.cli.command("prune-tokens")
    def prune_tokens():
        """Delete revocation records of tokens that have expired anyway."""
        click.echo(f"Pruned {prune_revoked_tokens()} expired revoked tokens")


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def __getattr__(name: str):
    if name == "app":
        globals()["app"] = application = create_app()
        return application
    raise AttributeError(name)


__all__ = ["create_app", "TestConfig"]
