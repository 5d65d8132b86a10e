"""Accounts: POST /api/register, POST /api/login, GET /api/me."""

from datetime import timedelta

import pytest
from flask_jwt_extended import create_access_token
from sqlalchemy import func, select

from models import User, db

NEW_USER = {"username": "testuser", "email": "test@example.com", "password": "password123"}


def users_in_db(app) -> list[User]:
    with app.app_context():
        return list(db.session.scalars(select(User).order_by(User.id)))


def user_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


def assert_token_works(client, token, user_id):
    me = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.get_json()
    assert me.get_json()["id"] == user_id


# ---------------------------------------------------------------------------
# POST /api/register
# ---------------------------------------------------------------------------


def test_register_returns_user_and_token(client, app):
    response = client.post("/api/register", json=NEW_USER)

    assert response.status_code == 201
    body = response.get_json()
    assert set(body) >= {"user", "token"}
    assert set(body["user"]) >= {"id", "username", "email"}
    assert body["user"]["username"] == "testuser"
    assert body["user"]["email"] == "test@example.com"
    assert isinstance(body["user"]["id"], int)
    assert isinstance(body["token"], str) and body["token"]
    [user] = users_in_db(app)
    assert user.id == body["user"]["id"]
    assert user.username == "testuser"
    assert user.email == "test@example.com"
    assert user.role == "driver"
    assert user.password_hash != "password123"
    assert_token_works(client, body["token"], user.id)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "a@example.com", "password": "password123"},
        {"username": "a", "password": "password123"},
        {"username": "a", "email": "a@example.com"},
        {"username": "", "email": "a@example.com", "password": "password123"},
        {"username": "   ", "email": "a@example.com", "password": "password123"},
        {"username": "a", "email": "  ", "password": "password123"},
        {"username": "a", "email": "a@example.com", "password": ""},
        {"username": None, "email": "a@example.com", "password": "password123"},
    ],
)
def test_register_requires_all_fields(client, app, body):
    response = client.post("/api/register", json=body)

    assert response.status_code == 400
    assert response.get_json() == {"error": "All fields are required"}
    assert user_count(app) == 0


@pytest.mark.parametrize(
    "email", ["not-an-email", "a@b", "@example.com", "a@", "a b@example.com", "a@@example.com"]
)
def test_register_rejects_invalid_email(client, app, email):
    response = client.post("/api/register", json={**NEW_USER, "email": email})

    assert response.status_code == 400
    assert response.get_json() == {"error": "Invalid email format"}
    assert user_count(app) == 0


def test_register_rejects_short_password(client, app):
    response = client.post("/api/register", json={**NEW_USER, "password": "1234567"})

    assert response.status_code == 400
    assert response.get_json() == {"error": "Password must be at least 8 characters"}
    assert user_count(app) == 0


def test_register_accepts_password_of_exactly_eight_characters(client):
    response = client.post("/api/register", json={**NEW_USER, "password": "12345678"})
    assert response.status_code == 201


def test_register_rejects_taken_username(client, app, driver):
    body = {"username": "driver", "email": "new@example.com", "password": "password123"}
    response = client.post("/api/register", json=body)

    assert response.status_code == 400
    assert response.get_json() == {"error": "Username already taken"}
    assert user_count(app) == 1


@pytest.mark.parametrize("username", ["DRIVER", "Driver", " driver "])
def test_usernames_are_unique_case_insensitively(client, app, driver, username):
    body = {"username": username, "email": "new@example.com", "password": "password123"}
    response = client.post("/api/register", json=body)

    assert response.status_code == 400
    assert response.get_json() == {"error": "Username already taken"}
    assert user_count(app) == 1


def test_register_rejects_taken_email(client, app, driver):
    body = {"username": "newname", "email": "driver@example.com", "password": "password123"}
    response = client.post("/api/register", json=body)

    assert response.status_code == 400
    assert response.get_json() == {"error": "Email already taken"}
    assert user_count(app) == 1


@pytest.mark.parametrize("email", ["DRIVER@EXAMPLE.COM", "  Driver@Example.com  "])
def test_emails_are_unique_case_insensitively(client, app, driver, email):
    body = {"username": "newname", "email": email, "password": "password123"}
    response = client.post("/api/register", json=body)

    assert response.status_code == 400
    assert response.get_json() == {"error": "Email already taken"}
    assert user_count(app) == 1


def test_register_stores_email_trimmed_and_lower_case(client, app):
    response = client.post("/api/register", json={**NEW_USER, "email": "  Test.User@Example.COM "})

    assert response.status_code == 201
    assert response.get_json()["user"]["email"] == "test.user@example.com"
    [user] = users_in_db(app)
    assert user.email == "test.user@example.com"


def test_register_keeps_username_case_but_trims_it(client, app):
    response = client.post("/api/register", json={**NEW_USER, "username": "  MixedCase "})

    assert response.status_code == 201
    assert response.get_json()["user"]["username"] == "MixedCase"
    [user] = users_in_db(app)
    assert user.username == "MixedCase"


@pytest.mark.parametrize(
    "extra", [{"role": "admin"}, {"is_admin": True}, {"role": "admin", "is_admin": True}]
)
def test_register_ignores_role_in_body(client, app, extra):
    response = client.post("/api/register", json={**NEW_USER, **extra})

    assert response.status_code == 201
    [user] = users_in_db(app)
    assert user.role == "driver"
    # The new account cannot use admin routes either.
    token = response.get_json()["token"]
    created = client.post(
        "/api/parking-lots",
        json={"name": "Mine", "location": "Here"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 403
    assert created.get_json() == {"error": "Admin privileges required"}


# ---------------------------------------------------------------------------
# POST /api/login
# ---------------------------------------------------------------------------


def test_login_returns_user_and_token(client, driver):
    response = client.post(
        "/api/login", json={"email": "driver@example.com", "password": "password123"}
    )

    assert response.status_code == 200
    body = response.get_json()
    assert body["user"]["id"] == driver["id"]
    assert body["user"]["username"] == "driver"
    assert body["user"]["email"] == "driver@example.com"
    assert isinstance(body["token"], str) and body["token"]
    assert_token_works(client, body["token"], driver["id"])


def test_login_after_register(client):
    registered = client.post("/api/register", json=NEW_USER).get_json()
    response = client.post(
        "/api/login", json={"email": NEW_USER["email"], "password": NEW_USER["password"]}
    )

    assert response.status_code == 200
    assert response.get_json()["user"] == registered["user"]


@pytest.mark.parametrize("email", ["DRIVER@example.com", "  Driver@Example.Com "])
def test_login_with_differently_cased_email(client, driver, email):
    response = client.post("/api/login", json={"email": email, "password": "password123"})

    assert response.status_code == 200
    assert response.get_json()["user"]["id"] == driver["id"]


def test_login_rejects_wrong_password(client, driver):
    response = client.post(
        "/api/login", json={"email": "driver@example.com", "password": "wrongpassword"}
    )

    assert response.status_code == 401
    assert response.get_json() == {"error": "Invalid email or password"}


def test_login_rejects_unknown_email(client, driver):
    response = client.post(
        "/api/login", json={"email": "nobody@example.com", "password": "password123"}
    )

    assert response.status_code == 401
    assert response.get_json() == {"error": "Invalid email or password"}


def test_login_password_is_case_sensitive(client, driver):
    response = client.post(
        "/api/login", json={"email": "driver@example.com", "password": "PASSWORD123"}
    )
    assert response.status_code == 401
    assert response.get_json() == {"error": "Invalid email or password"}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "driver@example.com"},
        {"password": "password123"},
        {"email": "", "password": ""},
    ],
)
def test_login_requires_email_and_password(client, driver, body):
    response = client.post("/api/login", json=body)

    assert response.status_code == 400
    assert response.get_json() == {"error": "Email and password are required"}


# ---------------------------------------------------------------------------
# GET /api/me
# ---------------------------------------------------------------------------


def test_me_returns_the_current_user(client, driver, auth_headers):
    response = client.get("/api/me", headers=auth_headers(driver))

    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == driver["id"]
    assert body["username"] == "driver"
    assert body["email"] == "driver@example.com"
    assert "password_hash" not in body


def test_me_requires_a_token(client):
    response = client.get("/api/me")

    assert response.status_code == 401
    assert response.get_json() == {"error": "Missing Authorization Header"}


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-token",
        "Bearer a.b.c",
        "Bearer ",
        "Token abc",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    ],
)
def test_me_rejects_malformed_tokens(client, driver, header):
    response = client.get("/api/me", headers={"Authorization": header})

    assert response.status_code == 401
    assert response.is_json
    assert set(response.get_json()) == {"error"}
    assert response.get_json()["error"]


def test_me_rejects_a_token_with_a_bad_signature(client, driver, login):
    token = login(driver)["token"]
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[::-1]}"
    response = client.get("/api/me", headers={"Authorization": f"Bearer {forged}"})

    assert response.status_code == 401
    assert response.get_json()["error"].startswith("Invalid token")


def test_me_rejects_a_token_signed_with_another_key(app_factory, client, driver):
    other = app_factory(JWT_SECRET_KEY="another-secret-key-that-is-long-enough")
    with other.app_context():
        token = create_access_token(identity=str(driver["id"]))
    response = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert response.get_json()["error"].startswith("Invalid token")


def test_me_rejects_an_expired_token(app, client, driver):
    with app.app_context():
        token = create_access_token(
            identity=str(driver["id"]),
            additional_claims={"ver": 0},
            expires_delta=timedelta(seconds=-1),
        )
    response = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert response.get_json() == {"error": "Token has expired"}


def test_me_for_a_deleted_user(app, client, driver, auth_headers):
    headers = auth_headers(driver)
    with app.app_context():
        db.session.delete(db.session.get(User, driver["id"]))
        db.session.commit()
    response = client.get("/api/me", headers=headers)

    assert response.status_code == 401
    assert response.get_json() == {"error": "User not found"}
