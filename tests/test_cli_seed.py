"""The CLI (`flask promote EMAIL`, `flask prune-tokens`) and seed.py."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from conftest import make_config
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import OperationalError
from werkzeug.security import generate_password_hash

from models import ParkingLot, ParkingSpot, RevokedToken, User, db
from seed import seed

ROOT = os.path.join(os.path.dirname(__file__), "..")


def role_of(app, user_id) -> str:
    with app.app_context():
        return db.session.get(User, user_id).role


# ---------------------------------------------------------------------------
# flask promote EMAIL
# ---------------------------------------------------------------------------


def test_promote_makes_an_admin(app, runner, client, driver, auth_headers):
    result = runner.invoke(args=["promote", "driver@example.com"])

    assert result.exit_code == 0, result.output
    assert "driver@example.com is now an admin" in result.output
    assert role_of(app, driver["id"]) == "admin"
    created = client.post(
        "/api/parking-lots",
        json={"name": "Lot B", "location": "Westlands"},
        headers=auth_headers(driver),
    )
    assert created.status_code == 201


def test_promote_matches_email_case_insensitively(app, runner, driver):
    result = runner.invoke(args=["promote", "  Driver@Example.COM "])

    assert result.exit_code == 0, result.output
    assert role_of(app, driver["id"]) == "admin"


def test_promote_touches_only_that_user(app, runner, driver, other_driver):
    runner.invoke(args=["promote", "driver@example.com"])

    assert role_of(app, other_driver["id"]) == "driver"


def test_promote_unknown_email_fails(app, runner, driver):
    result = runner.invoke(args=["promote", "nobody@example.com"])

    assert result.exit_code != 0
    assert "No user with e-mail nobody@example.com" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(User.role == "admin")) == 0


def test_promote_requires_an_email(runner):
    result = runner.invoke(args=["promote"])

    assert result.exit_code != 0


# ---------------------------------------------------------------------------
# flask prune-tokens
# ---------------------------------------------------------------------------


def test_prune_tokens_deletes_only_expired_revocations(app, runner, driver):
    now = datetime.now(UTC)
    with app.app_context():
        db.session.add_all(
            [
                RevokedToken(
                    jti="expired",
                    user_id=driver["id"],
                    token_type="access",
                    expires_at=now - timedelta(minutes=1),
                ),
                RevokedToken(
                    jti="still-valid",
                    user_id=driver["id"],
                    token_type="refresh",
                    expires_at=now + timedelta(days=1),
                ),
            ]
        )
        db.session.commit()

    result = runner.invoke(args=["prune-tokens"])

    assert result.exit_code == 0, result.output
    assert "Pruned 1 expired revoked tokens" in result.output
    with app.app_context():
        assert list(db.session.scalars(select(RevokedToken.jti))) == ["still-valid"]


def test_prune_tokens_with_nothing_to_prune(runner):
    result = runner.invoke(args=["prune-tokens"])

    assert result.exit_code == 0, result.output
    assert "Pruned 0 expired revoked tokens" in result.output


# ---------------------------------------------------------------------------
# seed.py
# ---------------------------------------------------------------------------


def assert_seeded(app):
    with app.app_context():
        admins = list(db.session.scalars(select(User).where(User.email == "admin@example.com")))
        assert len(admins) == 1
        assert admins[0].username == "admin"
        assert admins[0].role == "admin"
        assert db.session.scalar(select(func.count()).select_from(User)) == 1
        lots = list(db.session.scalars(select(ParkingLot).where(ParkingLot.name == "Lot A")))
        assert len(lots) == 1
        assert lots[0].location == "Nairobi CBD"
        assert db.session.scalar(select(func.count()).select_from(ParkingLot)) == 1
        numbers = sorted(
            db.session.scalars(
                select(ParkingSpot.spot_number).where(ParkingSpot.lot_id == lots[0].id)
            ),
            key=lambda n: int(n[1:]),
        )
        assert numbers == [f"A{n}" for n in range(1, 11)]
        assert db.session.scalar(select(func.count()).select_from(ParkingSpot)) == 10
        statuses = set(db.session.scalars(select(ParkingSpot.status)))
        assert statuses == {"available"}


def test_seed_creates_admin_and_lot(app, client):
    with app.app_context():
        seed()

    assert_seeded(app)
    login = client.post("/api/login", json={"email": "admin@example.com", "password": "adminpass"})
    assert login.status_code == 200, login.get_json()
    assert login.get_json()["user"]["username"] == "admin"
    headers = {"Authorization": f"Bearer {login.get_json()['token']}"}
    created = client.post(
        "/api/parking-lots", json={"name": "Lot B", "location": "Westlands"}, headers=headers
    )
    assert created.status_code == 201


def test_seed_is_idempotent(app, client):
    with app.app_context():
        seed()
    with app.app_context():
        seed()

    assert_seeded(app)
    login = client.post("/api/login", json={"email": "admin@example.com", "password": "adminpass"})
    assert login.status_code == 200
    lots = client.get(
        "/api/parking-lots", headers={"Authorization": f"Bearer {login.get_json()['token']}"}
    ).get_json()
    assert [(lot["name"], lot["location"], lot["spots"]) for lot in lots] == [
        ("Lot A", "Nairobi CBD", 10)
    ]


CREATED = [
    "Created: admin admin@example.com / adminpass (demo only: the password is public)",
    "Created: lot Lot A (Nairobi CBD) with spots A1-A10",
]
ALREADY_THERE = [
    "Already there: user admin@example.com (left as it is; its password may not be adminpass)",
    "Already there: lot Lot A (left as it is, spots included)",
]


def test_seed_says_what_it_created_then_what_was_there(app):
    with app.app_context():
        first = seed()
    with app.app_context():
        second = seed()

    assert first == CREATED
    assert second == ALREADY_THERE
    assert_seeded(app)


def spot_numbers(app) -> list[str]:
    with app.app_context():
        return sorted(db.session.scalars(select(ParkingSpot.spot_number)))


def test_seed_after_a_rename_does_not_add_the_old_spot_back(app, client):
    with app.app_context():
        seed()
    token = client.post(
        "/api/login", json={"email": "admin@example.com", "password": "adminpass"}
    ).get_json()["token"]
    [a1] = client.get("/api/spots?lot_id=1&per_page=1").get_json()
    renamed = client.patch(
        f"/api/spots/{a1['id']}",
        json={"spot_number": "VIP1"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert renamed.status_code == 200, renamed.get_json()

    with app.app_context():
        report = seed()

    assert report[1] == ALREADY_THERE[1]
    assert spot_numbers(app) == sorted(["VIP1", *(f"A{n}" for n in range(2, 11))])


def test_seed_leaves_the_spots_of_an_existing_lot_alone(app):
    """Spots deleted from (or added to) Lot A stay deleted (or added)."""
    with app.app_context():
        seed()
        lot_id = db.session.scalar(select(ParkingLot.id))
        db.session.execute(ParkingSpot.__table__.delete().where(ParkingSpot.spot_number == "A7"))
        db.session.add(ParkingSpot(lot_id=lot_id, spot_number="B1"))
        db.session.commit()
        seed()

    assert spot_numbers(app) == sorted(["B1", *(f"A{n}" for n in range(1, 11) if n != 7)])


def test_seed_leaves_a_changed_admin_alone(app, client):
    with app.app_context():
        seed()
        admin = db.session.scalar(select(User).where(User.email == "admin@example.com"))
        admin.role = "driver"
        admin.password_hash = generate_password_hash(
            "a-new-passphrase", method=app.config["PASSWORD_HASH_METHOD"]
        )
        db.session.commit()
        report = seed()

    assert report[0] == ALREADY_THERE[0]
    with app.app_context():
        admin = db.session.scalar(select(User).where(User.email == "admin@example.com"))
        assert admin.role == "driver"
    old = client.post("/api/login", json={"email": "admin@example.com", "password": "adminpass"})
    new = client.post(
        "/api/login", json={"email": "admin@example.com", "password": "a-new-passphrase"}
    )
    assert old.status_code == 401
    assert new.status_code == 200


def test_seed_skips_the_admin_when_its_username_is_taken(app, make_user):
    make_user(username="Admin", email="someone@example.com")

    with app.app_context():
        report = seed()

    assert report == [
        "Not created: the demo admin admin@example.com (username 'admin' is another account's)",
        CREATED[1],
    ]
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(User.role == "admin")) == 0


def test_seed_keeps_existing_data(app, driver, lot):
    """Run on a database in use (Lot A exists): nothing is duplicated or removed."""
    with app.app_context():
        seed()

    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 2
        assert db.session.scalar(select(func.count()).select_from(ParkingLot)) == 1
        assert db.session.scalar(select(func.count()).select_from(ParkingSpot)) == 10


def test_seed_never_creates_tables(tmp_path):
    """On a database without the schema, seed() fails instead of creating tables."""
    from app import create_app

    empty = create_app(make_config("sqlite:///" + str(tmp_path / "empty.db")))
    try:
        with empty.app_context():
            with pytest.raises(OperationalError):
                seed()
            db.session.rollback()
            assert inspect(db.engine).get_table_names() == []
    finally:
        with empty.app_context():
            db.engine.dispose()


def test_make_run_steps_migrate_then_seed(tmp_path):
    """`flask db upgrade` then `python seed.py`, as `make run` does, in fresh processes."""
    database = tmp_path / "run.db"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "FLASK_APP": "app.py",
        "FLASK_DEBUG": "1",
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
    }
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    steps = [[flask, "db", "upgrade"], [sys.executable, "seed.py"]]
    outputs = []
    for step in [*steps, steps[1]]:  # seeding twice, as two `make run`s do
        done = subprocess.run(step, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout)
    assert outputs[1].splitlines() == CREATED
    assert outputs[2].splitlines() == ALREADY_THERE

    from app import create_app

    application = create_app(make_config(f"sqlite:///{database}"))
    try:
        assert_seeded(application)
    finally:
        with application.app_context():
            db.engine.dispose()
