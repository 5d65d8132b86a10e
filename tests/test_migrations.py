"""Migrations: the migrated schema is the models' schema, and a seed database is adopted.

The session's test database was built by running the migrations (conftest),
so comparing it with `db.metadata` proves they agree on the current backend.
Adoption runs on a database of its own: the seed's schema (revision 0001),
rows as the seed's code wrote them, then `upgrade` to head.
"""

import os
import re
import warnings
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import IS_POSTGRES, make_config
from flask_migrate import upgrade
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError
from werkzeug.security import generate_password_hash

from models import ParkingLot, ParkingSpot, Ticket, User, Vehicle, db

MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "migrations")
EXPRESSION_INDEX = "ux_users_username_lower"


def schema_differences(engine) -> list:
    """Alembic's autogenerate diff between the database and the models.

    SQLite cannot reflect expression indexes, so there (only) the warnings
    about `lower(username)` are expected; its definition is checked separately.
    """
    with engine.connect() as conn, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    sqlite = engine.dialect.name == "sqlite"
    messages = [str(w.message) for w in caught]
    unexpected = [m for m in messages if not (sqlite and EXPRESSION_INDEX in m)]
    assert unexpected == []
    return differences


def index_definitions(conn) -> dict[str, str]:
    """Index name -> its SQL definition, as the database reports it."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")
        )
    else:
        rows = conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        )
    return {name: " ".join(sql.split()) for name, sql in rows}


def head_revision() -> str:
    return ScriptDirectory(MIGRATIONS).get_current_head()


# ---------------------------------------------------------------------------
# The migrated schema is the models' schema
# ---------------------------------------------------------------------------


def test_migrated_schema_matches_models(app):
    with app.app_context():
        assert schema_differences(db.engine) == []


def test_database_is_at_the_head_revision(app):
    with app.app_context(), db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()


def test_rule_indexes_exist_with_their_conditions(app):
    with app.app_context(), db.engine.connect() as conn:
        indexes = index_definitions(conn)
    for name in (
        "ux_tickets_open_spot",
        "ux_tickets_open_vehicle",
        "ux_tickets_open_plate_key",
        "ux_vehicles_owner_plate_key_active",
        "ux_vehicles_unowned_plate_key",
    ):
        assert "UNIQUE" in indexes[name].upper(), indexes[name]
    for name in ("ux_tickets_open_spot", "ux_tickets_open_vehicle", "ux_tickets_open_plate_key"):
        assert "check_out IS NULL" in indexes[name]
    assert "deleted_at IS NULL" in indexes["ux_vehicles_owner_plate_key_active"]
    assert "user_id IS NULL" in indexes["ux_vehicles_unowned_plate_key"]
    assert "UNIQUE" in indexes[EXPRESSION_INDEX].upper()
    # PostgreSQL spells it lower((username)::text), SQLite as written.
    assert "lowerusername" in re.sub(r"::\w+|[()\s]", "", indexes[EXPRESSION_INDEX].lower())


def test_database_refuses_a_second_open_ticket(app, driver, make_vehicle, lot):
    """The exclusivity rules hold even for writes that bypass the views."""
    first = make_vehicle(driver, plate="ONE 1")
    second = make_vehicle(driver, plate="TWO 2")
    spot_a, spot_b = lot["spot_ids"][:2]
    now = datetime.now(UTC)

    def insert(vehicle_id, spot_id, check_out=None):
        db.session.add(
            Ticket(
                vehicle_id=vehicle_id,
                spot_id=spot_id,
                user_id=driver["id"],
                lot_id=lot["id"],
                check_in=now,
                check_out=check_out,
            )
        )
        db.session.commit()

    with app.app_context():
        insert(first["id"], spot_a)
        with pytest.raises(IntegrityError):
            insert(second["id"], spot_a)  # same spot, both open
        db.session.rollback()
        with pytest.raises(IntegrityError):
            insert(first["id"], spot_b)  # same vehicle, both open
        db.session.rollback()
        # Closed tickets never conflict.
        insert(first["id"], spot_a, check_out=now)
        insert(second["id"], spot_b)


def test_database_refuses_case_variants_of_a_username(app, make_user):
    make_user(username="Alice", email="alice@example.com")
    with app.app_context():
        db.session.add(User(username="ALICE", email="other@example.com", password_hash="x"))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


# ---------------------------------------------------------------------------
# Adopting a database made by the seed's code
# ---------------------------------------------------------------------------


# Rows as the seed's code inserted them (ids come from the sequences: 1, 2, 3 in order).
SEED_ROWS = [
    # Users as the seed registered them: e-mails kept exactly as typed.
    "INSERT INTO users (username, email, password_hash) VALUES "
    "('Alice', '  Alice@Example.COM ', :hash), ('bob', 'BOB@example.com', :hash)",
    "INSERT INTO parking_lots (name, location) VALUES ('Lot A', 'Nairobi CBD'), ('Lot B', NULL)",
    # Status as the seed left it: A1 says available but has an open ticket,
    # A2 says occupied though its ticket is closed.
    "INSERT INTO parking_spots (spot_number, status, lot_id) VALUES "
    "('A1', 'available', 1), ('A2', 'occupied', 1), ('B1', 'available', 2)",
    "INSERT INTO vehicles (plate_number, type, user_id) VALUES "
    "('kcb 123a', 'SUV', 1), (' kdd 456b ', NULL, 2)",
    # Naive timestamps (the seed used datetime.utcnow()); ticket 1 is still open.
    "INSERT INTO tickets (vehicle_id, spot_id, check_in, check_out) VALUES "
    "(1, 1, '2024-03-01 10:00:00', NULL), (2, 2, '2024-02-01 08:00:00', '2024-02-01 09:30:00')",
]


def test_seed_database_is_adopted(fresh_database_uri):
    app = create_app_on(fresh_database_uri)
    try:
        with app.app_context():
            upgrade(directory=MIGRATIONS, revision="0001")
            password_hash = generate_password_hash(
                "password123", method=app.config["PASSWORD_HASH_METHOD"]
            )
            with db.engine.begin() as conn:
                for statement in SEED_ROWS:
                    conn.execute(text(statement), {"hash": password_hash})

            upgrade(directory=MIGRATIONS)

            with db.engine.connect() as conn:
                assert MigrationContext.configure(conn).get_current_revision() == head_revision()
            assert schema_differences(db.engine) == []

            users = {u.id: u for u in db.session.scalars(select(User))}
            assert users[1].email == "alice@example.com"
            assert users[2].email == "bob@example.com"
            assert users[1].username == "Alice"
            assert {u.role for u in users.values()} == {"driver"}
            assert {u.token_version for u in users.values()} == {0}

            plates = dict(db.session.execute(select(Vehicle.id, Vehicle.plate_number)).all())
            assert plates == {1: "KCB 123A", 2: "KDD 456B"}

            tickets = {t.id: t for t in db.session.scalars(select(Ticket))}
            assert (tickets[1].user_id, tickets[1].lot_id) == (1, 1)
            assert (tickets[2].user_id, tickets[2].lot_id) == (2, 1)
            assert tickets[1].check_in == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
            assert tickets[1].check_in.utcoffset().total_seconds() == 0
            assert tickets[1].check_out is None
            assert tickets[2].check_out == datetime(2024, 2, 1, 9, 30, tzinfo=UTC)

            statuses = dict(db.session.execute(select(ParkingSpot.id, ParkingSpot.status)).all())
            assert statuses == {1: "occupied", 2: "available", 3: "available"}

            columns = {c["name"]: c for c in inspect(db.engine).get_columns("tickets")}
            if IS_POSTGRES:
                assert columns["check_in"]["type"].timezone is True
                assert columns["check_out"]["type"].timezone is True
            db.session.remove()

        assert_adopted_database_serves_the_api(app)
    finally:
        with app.app_context():
            db.engine.dispose()


def create_app_on(uri):
    from app import create_app

    return create_app(make_config(uri))


def assert_adopted_database_serves_the_api(app):
    client = app.test_client()
    login = client.post(
        "/api/login", json={"email": "ALICE@example.com", "password": "password123"}
    )
    assert login.status_code == 200, login.get_json()
    headers = {"Authorization": f"Bearer {login.get_json()['token']}"}

    [ticket] = client.get("/api/tickets", headers=headers).get_json()
    assert ticket["id"] == 1
    assert ticket["check_in"] == "2024-03-01T10:00:00+00:00"
    assert ticket["check_out"] is None

    taken = client.post(
        "/api/tickets", json={"vehicle_id": 1, "parking_spot_id": 2}, headers=headers
    )
    assert taken.status_code == 409
    assert taken.get_json() == {"error": "Vehicle already parked"}

    out = client.patch("/api/checkout/1", headers=headers)
    assert out.status_code == 200
    spots = {s["spot_number"]: s["status"] for s in client.get("/api/spots").get_json()}
    assert spots == {"A1": "available", "A2": "available", "B1": "available"}

    # The id sequences carried over: new rows follow the seed's.
    booked = client.post(
        "/api/tickets", json={"vehicle_id": 1, "parking_spot_id": 3}, headers=headers
    )
    assert booked.status_code == 201, booked.get_json()
    # (PostgreSQL may skip a value: the refused booking above used one.)
    assert booked.get_json()["ticket_id"] > 2


# What the seed's code let through and 0002 must repair rather than fail on.
MESSY_SEED_ROWS = [
    "INSERT INTO users (username, email, password_hash) "
    "VALUES ('carol', 'carol@example.com', :hash)",
    "INSERT INTO parking_lots (name, location) VALUES ('Lot A', 'Nairobi CBD')",
    "INSERT INTO parking_spots (spot_number, status, lot_id) VALUES "
    "('A1', NULL, 1), ('A2', 'available', 1)",
    # The same car twice (spacing and case differ), and a plate over the API's 16 characters.
    "INSERT INTO vehicles (plate_number, type, user_id) VALUES "
    "('kcb   1', NULL, 1), ('KCB 1', NULL, 1), ('a very long plate number 123', NULL, 1)",
    # Two open tickets on spot 1 (vehicles 1 and 3) and two on vehicle 2 (spots 1 and 2).
    "INSERT INTO tickets (vehicle_id, spot_id, check_in, check_out) VALUES "
    "(1, 1, '2024-03-01 10:00:00', NULL), (3, 1, '2024-03-01 11:00:00', NULL), "
    "(2, 2, '2024-03-01 12:00:00', NULL), (2, 1, '2024-03-01 13:00:00', NULL)",
]


def test_messy_seed_data_is_repaired_on_upgrade(fresh_database_uri):
    app = create_app_on(fresh_database_uri)
    try:
        with app.app_context():
            upgrade(directory=MIGRATIONS, revision="0001")
            with db.engine.begin() as conn:
                for statement in MESSY_SEED_ROWS:
                    conn.execute(text(statement), {"hash": "x"})

            upgrade(directory=MIGRATIONS)

            vehicles = {v.id: v for v in db.session.scalars(select(Vehicle))}
            assert vehicles[1].plate_number == "KCB 1"
            assert vehicles[1].deleted_at is None
            # The duplicate is hidden (its tickets stay), the long plate kept whole.
            assert vehicles[2].plate_number == "KCB 1"
            assert vehicles[2].deleted_at is not None
            assert vehicles[3].plate_number == "A VERY LONG PLATE NUMBER 123"

            open_tickets = db.session.scalars(
                select(Ticket.id).where(Ticket.check_out.is_(None)).order_by(Ticket.id)
            ).all()
            # Newest open ticket per spot and per vehicle survives: 4 (spot 1,
            # vehicle 2) closes 2 (spot 1) and 3 (vehicle 2); 1 is older than 4 on spot 1.
            assert open_tickets == [4]
            closed_early = db.session.get(Ticket, 2)
            assert closed_early.check_out == closed_early.check_in

            statuses = dict(db.session.execute(select(ParkingSpot.id, ParkingSpot.status)).all())
            assert statuses == {1: "occupied", 2: "available"}
            # 0003 counts the spots the seed data left.
            counters = db.session.execute(
                select(ParkingLot.spots_total, ParkingLot.spots_available)
            ).all()
            assert counters == [(2, 1)]
            db.session.remove()
    finally:
        with app.app_context():
            db.engine.dispose()
