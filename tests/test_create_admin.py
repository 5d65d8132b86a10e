"""`flask create-admin`: the first admin of a real deployment.

From ADMIN_EMAIL / ADMIN_PASSWORD / ADMIN_USERNAME, or asked interactively;
a weak or demo password is refused, and so is the e-mail of an existing driver
(`flask promote` is the way to make that account an admin).
"""

import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from models import User, db

ROOT = os.path.join(os.path.dirname(__file__), "..")
STRONG = "correct-horse-battery-staple"
NO_ADMIN_ENV = {"ADMIN_EMAIL": None, "ADMIN_PASSWORD": None, "ADMIN_USERNAME": None}


def create_admin(runner, input=None, **env):
    return runner.invoke(args=["create-admin"], env={**NO_ADMIN_ENV, **env}, input=input)


def users(app) -> list[tuple[str, str, str]]:
    with app.app_context():
        rows = db.session.execute(select(User.username, User.email, User.role).order_by(User.id))
        return [tuple(row) for row in rows]


def logs_in(client, email, password) -> bool:
    response = client.post("/api/login", json={"email": email, "password": password})
    return response.status_code == 200


def test_create_admin_from_the_environment(app, runner, client):
    result = create_admin(runner, ADMIN_EMAIL=" Boss@Example.com ", ADMIN_PASSWORD=STRONG)

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Created admin boss <boss@example.com>"
    assert users(app) == [("boss", "boss@example.com", "admin")]
    assert logs_in(client, "boss@example.com", STRONG)
    login = client.post("/api/login", json={"email": "boss@example.com", "password": STRONG})
    headers = {"Authorization": f"Bearer {login.get_json()['token']}"}
    created = client.post(
        "/api/parking-lots", json={"name": "Lot B", "location": "Westlands"}, headers=headers
    )
    assert created.status_code == 201  # a real admin


def test_create_admin_takes_the_username_from_the_environment(app, runner):
    result = create_admin(
        runner, ADMIN_EMAIL="ops@example.com", ADMIN_PASSWORD=STRONG, ADMIN_USERNAME="Operator"
    )

    assert result.exit_code == 0, result.output
    assert users(app) == [("Operator", "ops@example.com", "admin")]


def test_create_admin_asks_for_what_the_environment_lacks(app, runner, client):
    answers = f"ops@example.com\nnight-shift\n{STRONG}\n{STRONG}\n"

    result = create_admin(runner, input=answers)

    assert result.exit_code == 0, result.output
    assert "E-mail: " in result.output
    assert "Username [ops]: " in result.output
    assert STRONG not in result.output  # the password is not echoed
    assert users(app) == [("night-shift", "ops@example.com", "admin")]
    assert logs_in(client, "ops@example.com", STRONG)


def test_create_admin_asks_only_for_the_password_when_the_email_is_set(app, runner):
    result = create_admin(runner, input=f"{STRONG}\n{STRONG}\n", ADMIN_EMAIL="ops@example.com")

    assert result.exit_code == 0, result.output
    assert "E-mail" not in result.output and "Username" not in result.output
    assert users(app) == [("ops", "ops@example.com", "admin")]


WEAK = [
    ("short-pw-1", "The admin password must be at least 12 characters"),
    ("adminpass", "The admin password must be at least 12 characters"),
    ("AdminPass2026!", "The admin password must not contain the demo password adminpass"),
    ("my-adminpass-1", "The admin password must not contain the demo password adminpass"),
    ("Password123456", "The admin password is a common password"),
    ("qwertyuiop!!!!", "The admin password is a common password"),
    ("123456789012", "The admin password is a common password"),
    ("zzzzzzzzzzzzzzzz", "The admin password must not be one character repeated"),
    ("boss@example.com", "The admin password must not be the e-mail address or the username"),
    ("night-shift-boss", "The admin password must not be the e-mail address or the username"),
    ("x" * 129, "The admin password must be at most 128 characters"),
]


@pytest.mark.parametrize(("password", "message"), WEAK)
def test_create_admin_refuses_a_weak_password(app, runner, password, message):
    result = create_admin(
        runner,
        ADMIN_EMAIL="boss@example.com",
        ADMIN_USERNAME="night-shift-boss",
        ADMIN_PASSWORD=password,
    )

    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {message}")
    assert users(app) == []


def test_create_admin_refuses_a_weak_password_typed_in(app, runner):
    result = create_admin(runner, input="boss@example.com\n\nadminpass\nadminpass\n")

    assert result.exit_code == 1
    assert "Error: The admin password must be at least 12 characters" in result.output
    assert users(app) == []


def test_create_admin_leaves_an_existing_admin_alone(app, runner, client, admin):
    result = create_admin(runner, ADMIN_EMAIL=admin["email"], ADMIN_PASSWORD=STRONG)

    assert result.exit_code == 0, result.output
    assert "boss@example.com is already an admin: nothing changed" in result.output
    assert logs_in(client, admin["email"], admin["password"])  # the old password still works
    assert not logs_in(client, admin["email"], STRONG)


def test_create_admin_refuses_the_email_of_a_driver(app, runner, client, driver):
    result = create_admin(runner, ADMIN_EMAIL="DRIVER@example.com", ADMIN_PASSWORD=STRONG)

    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: driver@example.com belongs to a driver: make that account an admin with "
        "`flask promote driver@example.com` (its password stays), or choose another e-mail"
    )
    assert users(app) == [("driver", "driver@example.com", "driver")]
    assert logs_in(client, driver["email"], driver["password"])


def test_create_admin_refuses_a_taken_username(app, runner, driver):
    result = create_admin(
        runner, ADMIN_EMAIL="new@example.com", ADMIN_USERNAME="DRIVER", ADMIN_PASSWORD=STRONG
    )

    assert result.exit_code == 1
    assert "Error: Username DRIVER is taken: choose another one (ADMIN_USERNAME)" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.parametrize("email", ["not-an-email", "boss@localhost", "a b@example.com"])
def test_create_admin_refuses_an_invalid_email(app, runner, email):
    result = create_admin(runner, ADMIN_EMAIL=email, ADMIN_PASSWORD=STRONG)

    assert result.exit_code == 1
    assert "Error: Not an e-mail address" in result.output
    assert users(app) == []


def test_create_admin_in_a_fresh_process_as_on_render(tmp_path):
    """`flask create-admin` in the service's shell: production config, env only."""
    database = tmp_path / "prod.db"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"FLASK_DEBUG", "TEST_DATABASE_URL", *NO_ADMIN_ENV}
    }
    env.update(
        {
            "FLASK_APP": "app.py",
            "DATABASE_URL": f"sqlite:///{database}",
            "JWT_SECRET_KEY": "0123456789abcdef0123456789abcdef",
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
            "ADMIN_EMAIL": "owner@example.com",
            "ADMIN_PASSWORD": STRONG,
        }
    )
    flask = os.path.join(os.path.dirname(sys.executable), "flask")

    def step(*args):
        return subprocess.run(
            [flask, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )

    migrated = step("db", "upgrade")
    created = step("create-admin")
    again = step("create-admin")

    assert migrated.returncode == 0, migrated.stderr[-2000:]
    assert created.returncode == 0, created.stderr[-2000:]
    assert created.stdout.strip() == "Created admin owner <owner@example.com>"
    assert again.returncode == 0, again.stderr[-2000:]
    assert "owner@example.com is already an admin: nothing changed" in again.stdout
