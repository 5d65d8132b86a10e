"""The token lifecycle: issuing pairs, rotation, revocation.

Every login starts a *family*: its access and refresh token, and every pair
later rotated from that refresh token, carry the family's id in the `fam`
claim. Revocations live in `revoked_tokens`, keyed by a token's `jti` or (for
a whole family) by the family id, and the per-request token check looks up
both in one statement (`TOKEN_USER`).

The rules, which hold under any interleaving of requests and instances:

* Logout revokes the access token, and the refresh token given in the body
  together with its whole family, each with its own `INSERT ... ON CONFLICT
  DO NOTHING`: a revocation written by a racing request never rolls the
  others back, and a pair that a racing refresh minted from that refresh
  token belongs to the family and dies with it.
* Refresh rotates: the presented refresh token is revoked (reason `rotated`)
  and a new pair is issued whose claims (jti, iat, exp) are derived from the
  old token's jti and the moment of rotation. So two refreshes of one token
  within `JWT_REFRESH_REUSE_LEEWAY` seconds (an app that retried) both get
  the *same* new pair; nothing is revoked.
* A refresh token presented again after that leeway, or after a logout, was
  copied: every token of the user is revoked (`users.token_version`).
"""

import hashlib
import hmac
import uuid
from dataclasses import fields
from datetime import UTC, datetime, timedelta

from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy import bindparam, delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from database import run
from models import AuthUser, RevokedToken, User, db, utcnow
from validation import ApiError

# The user and whether the token or its family was revoked, in one statement
# on every authenticated request. Built once, run on the session's connection
# and read as a plain row: building it per request and loading an ORM object
# cost more CPU than running it (bench/README.md).
TOKEN_USER = select(
    *(getattr(User, field.name) for field in fields(AuthUser)),
    exists().where(RevokedToken.jti.in_([bindparam("jti"), bindparam("family")])).label("revoked"),
).where(User.id == bindparam("user_id"))


def family_of(payload: dict) -> str:
    """A token's family (tokens from before families: their own jti)."""
    return payload.get("fam") or payload["jti"]


def token_user(payload: dict) -> tuple[AuthUser, bool] | None:
    """The token's user and whether the token or its family was revoked
    (None: no such user)."""
    params = {"user_id": int(payload["sub"]), "jti": payload["jti"], "family": family_of(payload)}
    row = run(TOKEN_USER, params).first()
    if row is None:
        return None
    *columns, revoked = row
    return AuthUser(*columns), revoked


def _derived(jti: str, purpose: str) -> str:
    """A jti derived from another one, unguessable without the signing key."""
    key = current_app.config["JWT_SECRET_KEY"].encode()
    return hmac.new(key, f"{jti}/{purpose}".encode(), hashlib.sha256).hexdigest()[:32]


def issue_tokens(user, family: str | None = None, rotated: tuple[str, datetime] | None = None):
    """A new access + refresh pair for `user`.

    `rotated=(old_jti, rotated_at)` makes the pair a function of the rotated
    token: the same inputs give byte-for-byte the same tokens."""
    identity = str(user.id)  # PyJWT 2.10+ requires a string subject
    claims = {"role": user.role, "ver": user.token_version, "fam": family or uuid.uuid4().hex}
    access_claims, refresh_claims = dict(claims), dict(claims)
    if rotated is not None:
        old_jti, rotated_at = rotated
        issued = int(rotated_at.timestamp())
        for kind, kind_claims in (("access", access_claims), ("refresh", refresh_claims)):
            lifetime = current_app.config[f"JWT_{kind.upper()}_TOKEN_EXPIRES"]
            kind_claims.update(
                jti=_derived(old_jti, kind),
                csrf=_derived(old_jti, f"{kind}/csrf"),  # Flask-JWT-Extended adds one
                iat=issued,
                nbf=issued,
                exp=issued + int(lifetime.total_seconds()),
            )
    return {
        "token": create_access_token(identity=identity, additional_claims=access_claims),
        "refresh_token": create_refresh_token(identity=identity, additional_claims=refresh_claims),
    }


def _revocation(payload: dict, reason: str, now: datetime) -> dict:
    return {
        "jti": payload["jti"],
        "user_id": int(payload["sub"]),
        "token_type": payload["type"],
        "expires_at": datetime.fromtimestamp(payload["exp"], UTC),
        "revoked_at": now,
        "reason": reason,
    }


def _family_revocation(payload: dict, now: datetime) -> dict:
    # A family lives as long as its newest refresh token; one minted by a
    # refresh racing this revocation expires a lifetime (and a margin) from now.
    lifetime = current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    return {
        "jti": family_of(payload),
        "user_id": int(payload["sub"]),
        "token_type": "family",
        "expires_at": now + lifetime + timedelta(minutes=5),
        "revoked_at": now,
        "reason": "logout",
    }


def _insert_new(row: dict) -> bool:
    """Insert a revocation unless its jti is already revoked; True if it was new."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(RevokedToken).values(**row).on_conflict_do_nothing(index_elements=["jti"])
    return db.session.execute(statement).rowcount == 1


def revoke_all_tokens(user_id: int) -> None:
    db.session.execute(
        update(User).where(User.id == user_id).values(token_version=User.token_version + 1)
    )
    db.session.commit()


def prune_revoked_tokens() -> int:
    """Delete revocation rows of tokens that have expired anyway."""
    result = db.session.execute(delete(RevokedToken).where(RevokedToken.expires_at < utcnow()))
    db.session.commit()
    return result.rowcount


def reuse_leeway() -> timedelta:
    return timedelta(seconds=current_app.config["JWT_REFRESH_REUSE_LEEWAY"])


def replay_allowed(payload: dict, now: datetime) -> bool:
    """May this revoked refresh token still be exchanged? Only when it was
    rotated within the leeway and its family is not revoked."""
    rows = db.session.execute(
        select(RevokedToken.jti, RevokedToken.reason, RevokedToken.revoked_at).where(
            RevokedToken.jti.in_([payload["jti"], family_of(payload)])
        )
    ).all()
    if any(jti != payload["jti"] or reason != "rotated" for jti, reason, _ in rows):
        return False
    return any(now - revoked_at <= reuse_leeway() for _, _, revoked_at in rows)


def rotate(payload: dict, user) -> dict:
    """Exchange a refresh token for a new pair (see the module docstring)."""
    now = utcnow()
    if _insert_new(_revocation(payload, "rotated", now)):
        db.session.commit()
        rotated_at = now
    else:
        # Another request rotated it (committed: ON CONFLICT waited for it).
        db.session.rollback()
        row = db.session.get(RevokedToken, payload["jti"])
        if not (row and replay_allowed(payload, now)):
            revoke_all_tokens(user.id)
            raise ApiError(401, "Token has been revoked")
        rotated_at = row.revoked_at
    return issue_tokens(user, family_of(payload), rotated=(payload["jti"], rotated_at))


def logout(access: dict, refresh: dict | None) -> bool:
    """Revoke the access token, and the refresh token and its family when
    given; commits every revocation. False when the access token had already
    been revoked by another request (the caller answers 401, as if it had
    come second)."""
    now = utcnow()
    access_is_new = _insert_new(_revocation(access, "logout", now))
    if refresh is not None:
        _insert_new(_revocation(refresh, "logout", now))
        _insert_new(_family_revocation(refresh, now))
    db.session.commit()
    return access_is_new
