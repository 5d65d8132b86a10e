"""Accounts: /register, /login, /token/refresh, /logout, /me, /me/password."""

from flask import current_app
from flask_jwt_extended import (
    current_user,
    decode_token,
    get_jwt,
)
from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

import schemas
import tokens
from endpoints import REFRESH, USER, endpoint
from models import (
    User,
    db,
)
from ratelimit import account_rate_limit, auth_rate_limits
from routes.common import api
from tokens import issue_tokens
from validation import ApiError

# ===========================================================================
# Accounts: /register, /login, /token/refresh, /logout, /me, /me/password
# ===========================================================================

_dummy_hashes: dict[str, str] = {}


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def password_matches(user: User | None, password: str) -> bool:
    """Check a password; for an unknown user hash anyway, so timing reveals nothing."""
    if user is None:
        method = current_app.config["PASSWORD_HASH_METHOD"]
        if method not in _dummy_hashes:
            _dummy_hashes[method] = generate_password_hash("not-a-password", method=method)
        check_password_hash(_dummy_hashes[method], password)
        return False
    return check_password_hash(user.password_hash, password)


def user_to_dict(user: User) -> dict:
    return {"id": user.id, "username": user.username, "email": user.email, "role": user.role}


@api.route("/register", methods=["POST"])
@endpoint(
    tag="Accounts",
    summary="Register a driver account",
    body=schemas.RegisterRequest,
    response=(schemas.Session, 201),
    limits=[auth_rate_limits],
    description="Always creates a `driver`; a `role` key in the body is ignored.",
)
def register(body: schemas.RegisterRequest):
    username, email, password = body.username, body.email, body.password

    def taken() -> None:
        if db.session.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
            raise ApiError(400, "Username already taken")
        if db.session.scalar(select(User.id).where(User.email == email)):
            raise ApiError(400, "Email already taken")

    taken()
    # Only whitelisted fields: a "role" or "is_admin" in the body is ignored.
    user = User(username=username, email=email, password_hash=hash_password(password))
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        # A concurrent registration took the name or e-mail between check and insert.
        db.session.rollback()
        taken()
        raise ApiError(400, "Username or email already taken") from None
    return {"user": user_to_dict(user), **issue_tokens(user)}, 201


@api.route("/login", methods=["POST"])
@endpoint(
    tag="Accounts",
    summary="Log in",
    body=schemas.LoginRequest,
    response=schemas.Session,
    errors={401: "Invalid email or password"},
    limits=[auth_rate_limits],
)
def login(body: schemas.LoginRequest):
    user = db.session.scalar(select(User).where(User.email == body.email))
    if not password_matches(user, body.password):
        raise ApiError(401, "Invalid email or password")
    return {"user": user_to_dict(user), **issue_tokens(user)}


@api.route("/token/refresh", methods=["POST"])
@endpoint(
    tag="Accounts",
    summary="Exchange a refresh token for a new token pair",
    auth=REFRESH,
    response=schemas.Tokens,
    idempotent=False,  # the answer carries tokens; a retry is safe anyway (above)
    description=(
        "Send the **refresh** token as the bearer token. It is rotated: the old "
        "one is revoked. Presenting it again within a few seconds (a retry) gives "
        "the same new pair; later, it revokes every token of the user."
    ),
)
def refresh_token():
    """Rotate: the presented refresh token is revoked and a new pair issued;
    a retry within the leeway gets the same pair, a later reuse revokes every
    token of the user (tokens.py)."""
    return tokens.rotate(get_jwt(), current_user)


@api.route("/logout", methods=["POST"])
@endpoint(
    tag="Accounts",
    summary="Revoke the access token (and optionally a refresh token)",
    auth=USER,
    body=schemas.LogoutRequest,
    response=schemas.Message,
)
def logout(body: schemas.LogoutRequest):
    refresh_payload = None
    refresh = body.refresh_token
    if refresh is not None:
        try:
            refresh_payload = decode_token(refresh, allow_expired=True)
        except Exception:  # any decoding failure: not one of our refresh tokens
            raise ApiError(400, "refresh_token is not a valid refresh token") from None
        if refresh_payload.get("type") != "refresh" or refresh_payload["sub"] != get_jwt()["sub"]:
            raise ApiError(400, "refresh_token is not a valid refresh token")
    if not tokens.logout(get_jwt(), refresh_payload):
        raise ApiError(401, "Token has been revoked")  # a concurrent logout came first
    tokens.prune_revoked_tokens()
    return {"message": "Logged out"}


@api.route("/me", methods=["GET"])
@endpoint(tag="Accounts", summary="The authenticated user", auth=USER, response=schemas.User)
def me():
    return user_to_dict(current_user)


@api.route("/me/password", methods=["PATCH"])
@endpoint(
    tag="Accounts",
    summary="Change the password; every earlier token stops working",
    auth=USER,
    body=schemas.ChangePasswordRequest,
    response=schemas.PasswordChanged,
    limits=[account_rate_limit],
    idempotent=False,  # the answer carries tokens, which are never stored
)
def change_password(body: schemas.ChangePasswordRequest):
    """Change the password; every token issued before stops working."""
    user = db.session.get(User, current_user.id)
    if not check_password_hash(user.password_hash, body.current_password):
        raise ApiError(400, "Current password is incorrect")
    user.password_hash = hash_password(body.new_password)
    user.token_version += 1
    db.session.commit()
    return {"message": "Password changed", **issue_tokens(user)}
