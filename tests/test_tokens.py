"""Token lifecycle: access and refresh tokens, rotation, logout, password change.

POST /api/register, /api/login (token + refresh_token), POST /api/token/refresh,
POST /api/logout, PATCH /api/me/password, the revoked_tokens table and
`flask prune-tokens`; forged, expired and orphaned tokens; role re-checks.
Forged tokens are built with PyJWT directly, as an attacker would.
"""

import base64
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from sqlalchemy import func, select, update

from models import RevokedToken, User, db

ROOT = Path(__file__).resolve().parent.parent
NEW_USER = {"username": "tokenuser", "email": "token@example.com", "password": "password123"}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def revoked_rows(app) -> list[RevokedToken]:
    with app.app_context():
        return list(db.session.scalars(select(RevokedToken).order_by(RevokedToken.revoked_at)))


def token_version(app, user_id: int) -> int:
    with app.app_context():
        return db.session.get(User, user_id).token_version


def age_rotations(app, seconds: int) -> None:
    """Pretend every rotation happened `seconds` earlier (past the reuse leeway)."""
    with app.app_context():
        for row in db.session.scalars(select(RevokedToken)):
            row.revoked_at -= timedelta(seconds=seconds)
        db.session.commit()


def refresh(client, refresh_token: str):
    return client.post("/api/token/refresh", headers=bearer(refresh_token))


def logout(client, token: str, refresh_token: str | None = None):
    body = {"refresh_token": refresh_token} if refresh_token else None
    return client.post("/api/logout", headers=bearer(token), json=body)


def assert_401(response, message=None):
    assert response.status_code == 401, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]
    if message is not None:
        assert body["error"] == message


# ---------------------------------------------------------------------------
# Register / login hand out an access and a refresh token
# ---------------------------------------------------------------------------


def test_register_returns_access_and_refresh_token(client, app):
    response = client.post("/api/register", json=NEW_USER)

    assert response.status_code == 201
    body = response.get_json()
    user_id = body["user"]["id"]
    access, refresh = claims(body["token"]), claims(body["refresh_token"])
    assert access["type"] == "access" and refresh["type"] == "refresh"
    assert access["sub"] == refresh["sub"] == str(user_id)
    assert access["role"] == refresh["role"] == "driver"
    assert access["jti"] != refresh["jti"]
    assert client.get("/api/me", headers=bearer(body["token"])).get_json()["id"] == user_id


def test_login_returns_access_and_refresh_token(client, driver):
    response = client.post(
        "/api/login", json={"email": driver["email"], "password": driver["password"]}
    )

    assert response.status_code == 200
    body = response.get_json()
    assert body["user"]["id"] == driver["id"]
    assert claims(body["token"])["type"] == "access"
    assert claims(body["refresh_token"])["type"] == "refresh"
    assert claims(body["refresh_token"])["sub"] == str(driver["id"])


def test_sub_claim_is_a_string(login, driver):
    body = login(driver)
    for token in (body["token"], body["refresh_token"]):
        assert isinstance(claims(token)["sub"], str)


def test_default_lifetimes_are_15_minutes_and_30_days(login, driver):
    body = login(driver)
    access, refresh = claims(body["token"]), claims(body["refresh_token"])

    assert access["exp"] - access["iat"] == 15 * 60
    assert refresh["exp"] - refresh["iat"] == 30 * 24 * 3600


def test_lifetimes_are_configurable(app, app_factory, make_user):
    user = make_user()
    short = app_factory(JWT_ACCESS_MINUTES=5, JWT_REFRESH_DAYS=2)
    body = (
        short.test_client()
        .post("/api/login", json={"email": user["email"], "password": user["password"]})
        .get_json()
    )
    access, refresh = claims(body["token"]), claims(body["refresh_token"])

    assert access["exp"] - access["iat"] == 5 * 60
    assert refresh["exp"] - refresh["iat"] == 2 * 24 * 3600


def config_in_subprocess(**env) -> dict:
    """Import config.py in a fresh interpreter with exactly these variables set."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JWT_", "PASSWORD_HASH", "RATELIMIT_"))
    }
    code = (
        "import json, config; c = config.Config; print(json.dumps({k: getattr(c, k) for k in "
        "('JWT_ACCESS_MINUTES', 'JWT_REFRESH_DAYS', 'PASSWORD_HASH_METHOD', "
        "'RATELIMIT_ENABLED', 'RATELIMIT_STORAGE_URI')}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "PYTHON_DOTENV_DISABLED": "1", **env},  # a developer's .env must not count
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_config_defaults_and_environment_variables():
    defaults = config_in_subprocess()
    assert defaults == {
        "JWT_ACCESS_MINUTES": 15,
        "JWT_REFRESH_DAYS": 30,
        "PASSWORD_HASH_METHOD": "scrypt",
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_STORAGE_URI": "memory://",
    }
    configured = config_in_subprocess(
        JWT_ACCESS_MINUTES="7", JWT_REFRESH_DAYS="3", RATELIMIT_ENABLED="false"
    )
    assert configured["JWT_ACCESS_MINUTES"] == 7
    assert configured["JWT_REFRESH_DAYS"] == 3
    assert configured["RATELIMIT_ENABLED"] is False


def test_production_hashes_passwords_with_scrypt(app, app_factory):
    production_hashing = app_factory(PASSWORD_HASH_METHOD="scrypt")
    response = production_hashing.test_client().post("/api/register", json=NEW_USER)

    assert response.status_code == 201
    with app.app_context():
        stored = db.session.get(User, response.get_json()["user"]["id"]).password_hash
    assert stored.startswith("scrypt:")
    login = production_hashing.test_client().post(
        "/api/login", json={"email": NEW_USER["email"], "password": NEW_USER["password"]}
    )
    assert login.status_code == 200


# ---------------------------------------------------------------------------
# POST /api/token/refresh: rotation and reuse detection
# ---------------------------------------------------------------------------


def test_refresh_returns_a_new_pair_and_revokes_the_old_refresh_token(app, client, driver, login):
    old = login(driver)

    response = client.post("/api/token/refresh", headers=bearer(old["refresh_token"]))

    assert response.status_code == 200
    new = response.get_json()
    assert set(new) >= {"token", "refresh_token"}
    assert new["token"] != old["token"] and new["refresh_token"] != old["refresh_token"]
    assert claims(new["token"])["type"] == "access"
    assert claims(new["refresh_token"])["type"] == "refresh"
    assert client.get("/api/me", headers=bearer(new["token"])).status_code == 200
    # The old access token is not rotated away: it simply expires.
    assert client.get("/api/me", headers=bearer(old["token"])).status_code == 200
    [row] = revoked_rows(app)
    old_claims = claims(old["refresh_token"])
    assert row.jti == old_claims["jti"]
    assert row.token_type == "refresh"
    assert row.user_id == driver["id"]
    assert row.expires_at == datetime.fromtimestamp(old_claims["exp"], UTC)


def test_new_refresh_token_can_be_rotated_again(client, driver, login):
    first = login(driver)["refresh_token"]
    second = client.post("/api/token/refresh", headers=bearer(first)).get_json()["refresh_token"]

    third = client.post("/api/token/refresh", headers=bearer(second))

    assert third.status_code == 200
    assert client.get("/api/me", headers=bearer(third.get_json()["token"])).status_code == 200


def test_reused_refresh_token_revokes_every_token_of_the_user(app, client, driver, login):
    stolen = login(driver)
    other_session = login(driver)  # e.g. the same account on another phone
    rotated = client.post("/api/token/refresh", headers=bearer(stolen["refresh_token"])).get_json()
    version = token_version(app, driver["id"])
    age_rotations(app, app.config["JWT_REFRESH_REUSE_LEEWAY"] + 1)

    reuse = client.post("/api/token/refresh", headers=bearer(stolen["refresh_token"]))

    assert_401(reuse, "Token has been revoked")
    assert token_version(app, driver["id"]) > version
    for token in (rotated["token"], other_session["token"], stolen["token"]):
        assert_401(client.get("/api/me", headers=bearer(token)), "Token has been revoked")
    for token in (rotated["refresh_token"], other_session["refresh_token"]):
        assert_401(client.post("/api/token/refresh", headers=bearer(token)))
    # Logging in again is the way back.
    fresh = login(driver)
    assert client.get("/api/me", headers=bearer(fresh["token"])).status_code == 200


def test_a_retried_refresh_within_the_leeway_gets_the_same_pair(app, client, driver, login):
    """An app that lost the answer and retried is not logged out: the same
    refresh token, presented again within the leeway, gives the same pair."""
    session = login(driver)
    first = refresh(client, session["refresh_token"])
    version = token_version(app, driver["id"])

    again = refresh(client, session["refresh_token"])

    assert first.status_code == again.status_code == 200
    assert again.get_json() == first.get_json()
    assert token_version(app, driver["id"]) == version
    assert [row.reason for row in revoked_rows(app)] == ["rotated"]
    pair = again.get_json()
    assert client.get("/api/me", headers=bearer(pair["token"])).status_code == 200
    assert refresh(client, pair["refresh_token"]).status_code == 200
    # The pair is derived from the rotated token: same family, fresh ids.
    assert claims(pair["token"])["fam"] == claims(session["token"])["fam"]
    assert claims(pair["refresh_token"])["jti"] != claims(session["refresh_token"])["jti"]


def test_a_logged_out_refresh_token_is_not_replayed_within_the_leeway(app, client, driver, login):
    session = login(driver)
    pair = refresh(client, session["refresh_token"]).get_json()
    logout = client.post(
        "/api/logout",
        json={"refresh_token": pair["refresh_token"]},
        headers=bearer(pair["token"]),
    )
    assert logout.status_code == 200

    # The first refresh token is within its leeway, but its family is logged out.
    assert_401(refresh(client, session["refresh_token"]), "Token has been revoked")
    assert_401(client.get("/api/me", headers=bearer(pair["token"])), "Token has been revoked")


def test_access_token_is_refused_where_a_refresh_token_is_expected(app, client, driver, login):
    access = login(driver)["token"]

    response = client.post("/api/token/refresh", headers=bearer(access))

    assert_401(response, "Invalid token: Only refresh tokens are allowed")
    assert revoked_rows(app) == []


@pytest.mark.parametrize(
    ("method", "url"),
    [("GET", "/api/me"), ("POST", "/api/logout"), ("PATCH", "/api/me/password")],
)
def test_refresh_token_is_refused_where_an_access_token_is_expected(
    client, driver, login, method, url
):
    refresh = login(driver)["refresh_token"]

    response = client.open(url, method=method, headers=bearer(refresh), json={})

    assert_401(response, "Invalid token: Only non-refresh tokens are allowed")


def test_refresh_requires_a_token(client):
    assert_401(client.post("/api/token/refresh"), "Missing Authorization Header")


# ---------------------------------------------------------------------------
# POST /api/logout
# ---------------------------------------------------------------------------


def test_logout_revokes_the_access_and_the_refresh_token(app, client, driver, login):
    session = login(driver)

    response = logout(client, session["token"], session["refresh_token"])

    assert response.status_code == 200
    assert response.get_json() == {"message": "Logged out"}
    rows = {row.jti: row for row in revoked_rows(app)}
    access, refresh = claims(session["token"]), claims(session["refresh_token"])
    # The two tokens, and their family: pairs later rotated from it die too.
    assert access["fam"] == refresh["fam"]
    assert set(rows) == {access["jti"], refresh["jti"], refresh["fam"]}
    assert rows[access["jti"]].token_type == "access"
    assert rows[refresh["jti"]].token_type == "refresh"
    assert rows[refresh["fam"]].token_type == "family"
    assert {row.reason for row in rows.values()} == {"logout"}
    assert rows[access["jti"]].expires_at == datetime.fromtimestamp(access["exp"], UTC)
    assert all(row.user_id == driver["id"] for row in rows.values())
    assert_401(client.get("/api/me", headers=bearer(session["token"])), "Token has been revoked")
    assert_401(client.post("/api/token/refresh", headers=bearer(session["refresh_token"])))


def test_logout_without_body_revokes_only_the_access_token(app, client, driver, login):
    session = login(driver)

    response = client.post("/api/logout", headers=bearer(session["token"]))

    assert response.status_code == 200
    assert [row.jti for row in revoked_rows(app)] == [claims(session["token"])["jti"]]
    assert_401(client.get("/api/me", headers=bearer(session["token"])), "Token has been revoked")
    assert refresh(client, session["refresh_token"]).status_code == 200


def test_logout_leaves_other_sessions_alone(client, driver, login):
    first, second = login(driver), login(driver)

    logout(client, first["token"], first["refresh_token"])

    assert client.get("/api/me", headers=bearer(second["token"])).status_code == 200
    assert refresh(client, second["refresh_token"]).status_code == 200


def test_logout_twice_with_the_same_token_is_401(client, driver, login):
    token = login(driver)["token"]
    assert client.post("/api/logout", headers=bearer(token)).status_code == 200

    assert_401(client.post("/api/logout", headers=bearer(token)), "Token has been revoked")


def test_logout_requires_a_token(client):
    assert_401(client.post("/api/logout"), "Missing Authorization Header")


@pytest.mark.parametrize(
    ("refresh_token", "message"),
    [
        (123, "refresh_token must be a refresh token string"),
        (["x"], "refresh_token must be a refresh token string"),
        ("x" * 5000, "refresh_token must be a refresh token string"),
        ("not-a-token", "refresh_token is not a valid refresh token"),
        ("access", "refresh_token is not a valid refresh token"),
        ("someone-else", "refresh_token is not a valid refresh token"),
        ("wrong-key", "refresh_token is not a valid refresh token"),
    ],
)
def test_logout_rejects_a_bad_refresh_token_and_revokes_nothing(
    app, client, driver, other_driver, login, refresh_token, message
):
    session = login(driver)
    if refresh_token == "access":
        refresh_token = session["token"]
    elif refresh_token == "someone-else":
        refresh_token = login(other_driver)["refresh_token"]
    elif refresh_token == "wrong-key":
        refresh_token = jwt.encode(
            claims(session["refresh_token"]), "another-key-" * 4, algorithm="HS256"
        )

    response = client.post(
        "/api/logout", headers=bearer(session["token"]), json={"refresh_token": refresh_token}
    )

    assert response.status_code == 400
    assert response.get_json() == {"error": message}
    assert revoked_rows(app) == []
    assert client.get("/api/me", headers=bearer(session["token"])).status_code == 200


def test_logout_accepts_an_expired_refresh_token(app, client, driver, login, app_factory):
    short = app_factory(JWT_REFRESH_TOKEN_EXPIRES=timedelta(seconds=-1))
    expired_refresh = (
        short.test_client()
        .post("/api/login", json={"email": driver["email"], "password": driver["password"]})
        .get_json()["refresh_token"]
    )
    token = login(driver)["token"]

    response = client.post(
        "/api/logout", headers=bearer(token), json={"refresh_token": expired_refresh}
    )

    assert response.status_code == 200
    # Its row was written and, already expired, pruned at once; its family
    # (pairs rotated from it) stays revoked.
    rows = {row.jti for row in revoked_rows(app)}
    assert rows == {claims(token)["jti"], claims(expired_refresh)["fam"]}


# ---------------------------------------------------------------------------
# Pruning expired revocation rows
# ---------------------------------------------------------------------------


def add_revoked(app, user_id: int, expires_at: datetime) -> str:
    jti = str(uuid.uuid4())
    with app.app_context():
        db.session.add(
            RevokedToken(jti=jti, user_id=user_id, token_type="access", expires_at=expires_at)
        )
        db.session.commit()
    return jti


def test_prune_tokens_command_deletes_only_expired_rows(app, runner, driver):
    now = datetime.now(UTC)
    add_revoked(app, driver["id"], now - timedelta(minutes=1))
    add_revoked(app, driver["id"], now - timedelta(days=40))
    live = add_revoked(app, driver["id"], now + timedelta(minutes=10))

    result = runner.invoke(args=["prune-tokens"])

    assert result.exit_code == 0, result.output
    assert "Pruned 2 expired revoked tokens" in result.output
    assert [row.jti for row in revoked_rows(app)] == [live]


def test_logout_prunes_expired_rows(app, client, driver, login):
    add_revoked(app, driver["id"], datetime.now(UTC) - timedelta(minutes=1))
    live = add_revoked(app, driver["id"], datetime.now(UTC) + timedelta(minutes=10))
    token = login(driver)["token"]

    assert client.post("/api/logout", headers=bearer(token)).status_code == 200

    assert {row.jti for row in revoked_rows(app)} == {live, claims(token)["jti"]}


def test_revocation_rows_go_with_their_user(app, client, driver, login):
    token = login(driver)["token"]
    client.post("/api/logout", headers=bearer(token))
    assert len(revoked_rows(app)) == 1

    with app.app_context():
        db.session.delete(db.session.get(User, driver["id"]))
        db.session.commit()

    assert revoked_rows(app) == []


# ---------------------------------------------------------------------------
# PATCH /api/me/password
# ---------------------------------------------------------------------------


def change_password(client, token, current, new):
    return client.patch(
        "/api/me/password",
        headers=bearer(token),
        json={"current_password": current, "new_password": new},
    )


def test_change_password_invalidates_every_earlier_token(app, client, driver, login):
    first, second = login(driver), login(driver)

    response = change_password(client, first["token"], "password123", "new-password-456")

    assert response.status_code == 200
    body = response.get_json()
    assert body["message"] == "Password changed"
    assert token_version(app, driver["id"]) == 1
    for token in (first["token"], second["token"]):
        assert_401(client.get("/api/me", headers=bearer(token)), "Token has been revoked")
    for token in (first["refresh_token"], second["refresh_token"]):
        assert_401(client.post("/api/token/refresh", headers=bearer(token)))
    # The tokens in the answer are issued after the change and work.
    assert client.get("/api/me", headers=bearer(body["token"])).status_code == 200
    refreshed = client.post("/api/token/refresh", headers=bearer(body["refresh_token"]))
    assert refreshed.status_code == 200


def test_change_password_then_login_with_the_new_password(client, driver):
    token = client.post(
        "/api/login", json={"email": driver["email"], "password": "password123"}
    ).get_json()["token"]
    assert change_password(client, token, "password123", "new-password-456").status_code == 200

    old = client.post("/api/login", json={"email": driver["email"], "password": "password123"})
    new = client.post("/api/login", json={"email": driver["email"], "password": "new-password-456"})

    assert old.status_code == 401
    assert old.get_json() == {"error": "Invalid email or password"}
    assert new.status_code == 200
    assert client.get("/api/me", headers=bearer(new.get_json()["token"])).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"current_password": "wrong-password", "new_password": "new-password-456"},
         "Current password is incorrect"),
        ({"new_password": "new-password-456"}, "current_password is required"),
        ({"current_password": "", "new_password": "new-password-456"},
         "current_password is required"),
        ({"current_password": 12345678, "new_password": "new-password-456"},
         "current_password is required"),
        ({"current_password": "password123", "new_password": "short"},
         "Password must be at least 8 characters"),
        ({"current_password": "password123", "new_password": "x" * 129},
         "Password must be at most 128 characters"),
        ({"current_password": "password123"}, "new_password must be a string"),
        ({"current_password": "password123", "new_password": 123456789},
         "new_password must be a string"),
        ({"current_password": "password123", "new_password": "bad\u0000password"},
         "new_password must not contain NUL characters"),
    ],
)  # fmt: skip
def test_change_password_errors_change_nothing(app, client, driver, login, body, message):
    session = login(driver)
    with app.app_context():
        hash_before = db.session.get(User, driver["id"]).password_hash

    response = client.patch("/api/me/password", headers=bearer(session["token"]), json=body)

    assert response.status_code == 400
    assert response.get_json() == {"error": message}
    with app.app_context():
        user = db.session.get(User, driver["id"])
        assert user.password_hash == hash_before
        assert user.token_version == 0
    assert client.get("/api/me", headers=bearer(session["token"])).status_code == 200


def test_change_password_requires_a_token(client):
    response = client.patch(
        "/api/me/password", json={"current_password": "a" * 8, "new_password": "b" * 8}
    )
    assert_401(response, "Missing Authorization Header")


# ---------------------------------------------------------------------------
# Forged, expired and orphaned tokens
# ---------------------------------------------------------------------------


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forge(kind: str, genuine: str, secret: str, admin_id: int) -> str:
    """A token an attacker could make from a genuine driver token."""
    payload = claims(genuine)
    elevated = {**payload, "sub": str(admin_id), "role": "admin"}
    header, _body, signature = genuine.split(".")
    if kind == "alg-none":
        return jwt.encode(elevated, None, algorithm="none")
    if kind == "alg-none-unsigned-header":
        return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(elevated)}."
    if kind == "wrong-key":
        return jwt.encode(elevated, "an-attackers-own-secret-key-32-bytes!", algorithm="HS256")
    if kind == "other-algorithm":
        return jwt.encode(elevated, secret + "-and-more-for-hs512-" * 4, algorithm="HS512")
    if kind == "tampered-payload":
        return f"{header}.{b64(elevated)}.{signature}"
    if kind == "tampered-signature":
        return f"{header}.{_body}.{signature[:-4]}AAAA"
    if kind == "expired":
        now = datetime.now(UTC)
        past = {**payload, "iat": now - timedelta(hours=2), "nbf": now - timedelta(hours=2)}
        return jwt.encode({**past, "exp": now - timedelta(hours=1)}, secret, algorithm="HS256")
    if kind == "not-yet-valid":
        later = datetime.now(UTC) + timedelta(hours=1)
        return jwt.encode({**payload, "nbf": later}, secret, algorithm="HS256")
    if kind == "integer-sub":
        return jwt.encode({**payload, "sub": int(payload["sub"])}, secret, algorithm="HS256")
    if kind == "garbage":
        return "not.a.jwt"
    raise AssertionError(kind)


FORGERIES = [
    "alg-none",
    "alg-none-unsigned-header",
    "wrong-key",
    "other-algorithm",
    "tampered-payload",
    "tampered-signature",
    "expired",
    "not-yet-valid",
    "integer-sub",
    "garbage",
]


@pytest.mark.parametrize("kind", FORGERIES)
def test_forged_and_expired_tokens_are_401_json(app, client, driver, admin, login, kind):
    genuine = login(driver)["token"]
    token = forge(kind, genuine, app.config["JWT_SECRET_KEY"], admin["id"])

    for method, url in [
        ("GET", "/api/me"),
        ("POST", "/api/parking-lots"),
        ("POST", "/api/token/refresh"),
    ]:
        response = client.open(
            url, method=method, headers=bearer(token), json={"name": "X", "location": "Y"}
        )
        assert_401(response)
        if kind == "expired" and url != "/api/token/refresh":
            assert response.get_json() == {"error": "Token has expired"}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 2


def test_genuine_token_passes_the_same_checks(app, client, driver, login):
    """Control for the forgeries: the untouched token works."""
    genuine = login(driver)["token"]
    assert client.get("/api/me", headers=bearer(genuine)).status_code == 200


def test_token_signed_with_the_real_key_is_accepted(app, client, driver, login):
    """Control for `forge`: re-signing an unchanged payload with the app's key works."""
    payload = claims(login(driver)["token"])
    token = jwt.encode(payload, app.config["JWT_SECRET_KEY"], algorithm="HS256")
    assert client.get("/api/me", headers=bearer(token)).status_code == 200


def test_token_of_a_deleted_user_is_401(app, client, make_user, login):
    user = make_user()
    session = login(user)
    with app.app_context():
        db.session.delete(db.session.get(User, user["id"]))
        db.session.commit()

    assert_401(client.get("/api/me", headers=bearer(session["token"])), "User not found")
    assert_401(
        client.post("/api/token/refresh", headers=bearer(session["refresh_token"])),
        "User not found",
    )
    assert_401(client.post("/api/logout", headers=bearer(session["token"])), "User not found")


def test_token_of_a_deleted_user_does_not_work_for_a_new_user_with_the_same_id(
    app, client, make_user, login
):
    """SQLite hands a deleted highest id to the next row; the old token must not follow it."""
    user = make_user()
    session = login(user)
    with app.app_context():
        db.session.delete(db.session.get(User, user["id"]))
        db.session.commit()
        db.session.add(
            User(
                id=user["id"],
                username="newcomer",
                email="newcomer@example.com",
                password_hash="x",
                created_at=datetime.now(UTC) + timedelta(minutes=1),
            )
        )
        db.session.commit()

    assert_401(client.get("/api/me", headers=bearer(session["token"])), "Token has been revoked")
    assert_401(client.post("/api/token/refresh", headers=bearer(session["refresh_token"])))


# ---------------------------------------------------------------------------
# The role claim is informative; authorization re-reads the user row
# ---------------------------------------------------------------------------

LOT = {"name": "Lot Z", "location": "Westlands"}


def test_demoted_admin_loses_admin_rights_at_once(app, client, admin, login):
    token = login(admin)["token"]
    assert claims(token)["role"] == "admin"
    assert client.post("/api/parking-lots", headers=bearer(token), json=LOT).status_code == 201

    with app.app_context():
        db.session.execute(update(User).where(User.id == admin["id"]).values(role="driver"))
        db.session.commit()

    response = client.post("/api/parking-lots", headers=bearer(token), json=LOT)
    assert response.status_code == 403
    assert response.get_json() == {"error": "Admin privileges required"}
    assert client.get("/api/me", headers=bearer(token)).get_json()["role"] == "driver"
    with app.app_context():
        from models import ParkingLot

        assert db.session.scalar(select(func.count()).select_from(ParkingLot)) == 1


def test_promoted_driver_gains_admin_rights_at_once(app, client, driver, login):
    token = login(driver)["token"]
    assert claims(token)["role"] == "driver"
    assert client.post("/api/parking-lots", headers=bearer(token), json=LOT).status_code == 403

    with app.app_context():
        db.session.execute(update(User).where(User.id == driver["id"]).values(role="admin"))
        db.session.commit()

    assert client.post("/api/parking-lots", headers=bearer(token), json=LOT).status_code == 201


def test_role_claim_in_a_token_signed_with_the_real_key_grants_nothing(app, client, driver, login):
    """Even a correctly signed token claiming admin does not make a driver an admin."""
    payload = {**claims(login(driver)["token"]), "role": "admin"}
    token = jwt.encode(payload, app.config["JWT_SECRET_KEY"], algorithm="HS256")

    response = client.post("/api/parking-lots", headers=bearer(token), json=LOT)

    assert response.status_code == 403
    assert response.get_json() == {"error": "Admin privileges required"}


# ---------------------------------------------------------------------------
# The signing key
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret", ["", "your_secure_jwt_secret_key", "change-me", "short-but-not-placeholder-31ch"]
)
def test_production_refuses_a_missing_weak_or_placeholder_secret(secret):
    from app import create_app

    with pytest.raises(RuntimeError, match="JWT_SECRET_KEY"):
        create_app({"TESTING": False, "DEBUG": False, "JWT_SECRET_KEY": secret})


def test_production_accepts_a_32_character_secret(app):
    from app import create_app

    production = create_app(
        {
            "TESTING": False,
            "DEBUG": False,
            "JWT_SECRET_KEY": "0123456789abcdef0123456789abcdef",
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "RATELIMIT_ENABLED": False,
        }
    )
    assert production.config["JWT_ACCESS_TOKEN_EXPIRES"] == timedelta(minutes=15)
