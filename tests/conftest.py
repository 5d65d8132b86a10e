"""Shared fixtures: a migrated real database, the app, clients and users.

The suite runs on SQLite by default and on PostgreSQL when TEST_DATABASE_URL
is set (CI does both). The schema is built once per session by running the
Alembic migrations, so every test also exercises them; between tests every
table is emptied.

Fixtures: `app`, `client`, `runner`, `make_user`, `driver`, `other_driver`,
`admin`, `auth_headers`, `lot`, `vehicle`, `clock`, `count_queries`,
`fresh_database_uri` (an empty database of its own),
`live_server` (PostgreSQL only), the `http` helper for real HTTP,
`run_at_once` to release concurrent clients together and `gunicorn_server`
to run the real server.
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask_migrate import upgrade
from sqlalchemy import create_engine, event, make_url, text
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

from app import create_app
from config import TestConfig, database_url
from models import ParkingLot, ParkingSpot, User, Vehicle, db

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
IS_POSTGRES = bool(TEST_DATABASE_URL)
# Children before parents: SQLite empties them with DELETE, foreign keys on.
TABLES = (
    "webhook_deliveries",
    "webhooks",
    "events",
    "idempotency_keys",
    "audit_log",
    "payments",
    "reservations",  # after payments (their refunds), before tickets (its ticket)
    "permit_lots",
    "permit_plates",
    "revoked_tokens",
    "tickets",
    "lot_days",  # after tickets: deleting tickets (SQLite) runs its roll-up trigger
    "permits",
    "devices",
    "lot_staff",
    "parking_spots",
    "vehicles",
    "parking_lots",
    "users",
)

postgres_only = pytest.mark.skipif(
    not IS_POSTGRES,
    reason="needs real concurrency: runs on PostgreSQL (set TEST_DATABASE_URL; CI does)",
)


@pytest.fixture(scope="session")
def database_uri(tmp_path_factory):
    if IS_POSTGRES:
        return database_url(TEST_DATABASE_URL)
    return "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.db")


def make_config(database_uri: str, **overrides):
    return type("Config", (TestConfig,), {"SQLALCHEMY_DATABASE_URI": database_uri, **overrides})


@pytest.fixture
def fresh_database_uri(tmp_path):
    """An empty database of its own (no tables, not migrated): a SQLite file,
    or a new PostgreSQL database next to the test database."""
    if not IS_POSTGRES:
        yield "sqlite:///" + str(tmp_path / "fresh.db")
        return
    url = make_url(database_url(TEST_DATABASE_URL))
    name = f"{url.database}_fresh"
    server = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


@pytest.fixture(scope="session")
def _migrated(database_uri):
    """Drop whatever is there and build the schema with the migrations."""
    app = create_app(make_config(database_uri))
    with app.app_context():
        with db.engine.begin() as conn:
            if IS_POSTGRES:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
            else:
                for table in (*TABLES, "alembic_version"):
                    conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        upgrade(directory=os.path.join(os.path.dirname(__file__), "..", "migrations"))
        db.engine.dispose()
    return database_uri


def empty_tables() -> None:
    with db.engine.begin() as conn:
        if IS_POSTGRES:
            conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for table in TABLES:
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def app_factory(_migrated):
    """Build an app on the test database with config overrides."""
    apps = []

    def build(**overrides):
        application = create_app(make_config(_migrated, **overrides))
        apps.append(application)
        return application

    yield build
    for application in apps:
        with application.app_context():
            db.engine.dispose()


def lot_counter_mismatches() -> list:
    """Lots whose counters (kept by triggers, migration 0003) disagree with their spots."""
    with db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT l.id, l.spots_total, l.spots_available, "
                "(SELECT count(*) FROM parking_spots AS s WHERE s.lot_id = l.id), "
                "(SELECT count(*) FROM parking_spots AS s "
                "WHERE s.lot_id = l.id AND s.status = 'available') FROM parking_lots AS l"
            )
        ).all()
    return [tuple(row) for row in rows if (row[1], row[2]) != (row[3], row[4])]


def rollup_mismatches() -> list:
    """Where the rollups the database keeps (migration 0009: lot_days, and the
    lots' ticket counters) disagree with the tickets and payments themselves,
    or a row's local day with its time in the lot's zone."""
    problems = []
    with db.engine.connect() as conn:
        zones = dict(conn.execute(text("SELECT id, timezone FROM parking_lots")).all())
        truth: dict = {}

        def add(lot, day, **values):
            row = truth.setdefault((lot, str(day)), dict.fromkeys(ROLLUP_COLUMNS, 0))
            for name, value in values.items():
                row[name] += value

        for ticket in conn.execute(
            text(
                "SELECT id, lot_id, check_in, check_out, check_in_day, check_out_day, "
                "amount_due, amount_paid, duration_minutes, permit_id FROM tickets"
            )
        ):
            zone = ZoneInfo(zones[ticket.lot_id])
            for moment, day in (
                (ticket.check_in, ticket.check_in_day),
                (ticket.check_out, ticket.check_out_day),
            ):
                if moment is not None:
                    moment = (
                        moment if isinstance(moment, datetime) else datetime.fromisoformat(moment)
                    )
                    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
                    if str(moment.astimezone(zone).date()) != str(day):
                        problems.append(("ticket day", ticket.id, moment, day))
            add(ticket.lot_id, ticket.check_in_day, tickets_started=1)
            if ticket.check_out is not None:
                due = ticket.amount_due or 0
                add(
                    ticket.lot_id,
                    ticket.check_out_day,
                    tickets_closed=1,
                    revenue=due,
                    stay_minutes=ticket.duration_minutes or 0,
                    outstanding=max(due - ticket.amount_paid, 0),
                    permit_sessions=int(ticket.permit_id is not None),
                )
        for lot, day, method, amount in conn.execute(
            text("SELECT lot_id, day, method, amount FROM payments")
        ):
            add(lot, day, **{f"paid_{method}": amount})
        kept = {
            (row.lot_id, str(row.day)): {name: getattr(row, name) for name in ROLLUP_COLUMNS}
            for row in conn.execute(text("SELECT * FROM lot_days"))
        }
        zero = dict.fromkeys(ROLLUP_COLUMNS, 0)
        for key in truth.keys() | kept.keys():
            if truth.get(key, zero) != kept.get(key, zero):
                problems.append(("lot day", key, truth.get(key), kept.get(key)))
        for row in conn.execute(
            text(
                "SELECT l.id, l.tickets_total, l.tickets_open, "
                "(SELECT count(*) FROM tickets AS t WHERE t.lot_id = l.id), "
                "(SELECT count(*) FROM tickets AS t WHERE t.lot_id = l.id AND t.check_out IS NULL) "
                "FROM parking_lots AS l"
            )
        ):
            if (row[1], row[2]) != (row[3], row[4]):
                problems.append(("ticket counters", *row))
    return problems


ROLLUP_COLUMNS = (
    "tickets_started",
    "tickets_closed",
    "revenue",
    "stay_minutes",
    "outstanding",
    "permit_sessions",
    "paid_cash",
    "paid_card",
    "paid_app",
    "paid_reservation",
)


@pytest.fixture
def app(app_factory):
    application = app_factory()
    with application.app_context():
        empty_tables()
    yield application
    with application.app_context():
        db.session.remove()
        # Every test, whatever it did to spots, leaves the lot counters right.
        mismatches = lot_counter_mismatches()
        rollups = rollup_mismatches()
        empty_tables()
    assert not mismatches, f"lot counters disagree with the spots: {mismatches}"
    assert not rollups, f"daily rollups or ticket counters disagree with the rows: {rollups}"


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_user(app):
    """Create a user straight in the database (role "driver" or "admin")."""
    counter = iter(range(1, 10_000))

    def create(username=None, email=None, password="password123", role="driver"):
        n = next(counter)
        username = username or f"{role}{n}"
        email = email or f"{username}@example.com"
        with app.app_context():
            user = User(
                username=username,
                email=email.lower(),
                role=role,
                password_hash=generate_password_hash(
                    password, method=app.config["PASSWORD_HASH_METHOD"]
                ),
            )
            db.session.add(user)
            db.session.commit()
            return {"id": user.id, "username": username, "email": email, "password": password}

    return create


@pytest.fixture
def login(client):
    """Log a user in through the API; returns the response body."""

    def do_login(user):
        response = client.post(
            "/api/login", json={"email": user["email"], "password": user["password"]}
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    return do_login


@pytest.fixture
def auth_headers(login):
    """`auth_headers(user)` -> {"Authorization": "Bearer <access token>"}."""

    def headers(user):
        return {"Authorization": f"Bearer {login(user)['token']}"}

    return headers


@pytest.fixture
def driver(make_user):
    return make_user(username="driver", email="driver@example.com")


@pytest.fixture
def other_driver(make_user):
    return make_user(username="other", email="other@example.com")


@pytest.fixture
def admin(make_user):
    return make_user(username="boss", email="boss@example.com", role="admin")


@pytest.fixture
def make_lot(app):
    """Create a lot with `spots` spots numbered <prefix>1..N straight in the database."""

    def create(name="Lot A", location="Nairobi CBD", spots=10, prefix="A", **fields):
        with app.app_context():
            lot = ParkingLot(
                name=name,
                location=location,
                currency=fields.pop("currency", "KES"),
                timezone=fields.pop("timezone", "UTC"),
                **fields,
            )
            db.session.add(lot)
            db.session.flush()
            db.session.add_all(
                ParkingSpot(lot_id=lot.id, spot_number=f"{prefix}{n}") for n in range(1, spots + 1)
            )
            db.session.commit()
            spot_ids = [s.id for s in sorted(lot.spots, key=lambda s: s.id)]
            return {"id": lot.id, "name": name, "spot_ids": spot_ids}

    return create


@pytest.fixture
def lot(make_lot):
    return make_lot()


@pytest.fixture
def make_vehicle(app):
    """Create a vehicle straight in the database. Plates default to KCB 123A,
    KCB 124A, ...: a plate is one car, whoever registered it."""
    plates = (f"KCB {n}A" for n in range(123, 1000))

    def create(user, plate=None, type="SUV"):
        plate = plate or next(plates)
        with app.app_context():
            vehicle = Vehicle(plate_number=plate, type=type, user_id=user["id"])
            db.session.add(vehicle)
            db.session.commit()
            return {"id": vehicle.id, "plate_number": plate, "user_id": user["id"]}

    return create


@pytest.fixture
def vehicle(make_vehicle, driver):
    return make_vehicle(driver)


@dataclass
class Clock:
    """A controllable clock for the app: `clock.advance(minutes=61)`."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock(app):
    fake = Clock(datetime(2026, 1, 15, 8, 0, tzinfo=UTC))
    app.config["CLOCK"] = fake
    return fake


@pytest.fixture
def count_queries(app):
    """`with count_queries() as statements: ...` records the SQL statements run."""

    @contextmanager
    def counting():
        statements = []

        def record(conn, cursor, statement, parameters, context, executemany):
            statements.append(statement)

        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", record)
        try:
            yield statements
        finally:
            event.remove(engine, "before_cursor_execute", record)

    return counting


# ---------------------------------------------------------------------------
# Real HTTP (concurrency tests): a threaded server on a free local port.
# ---------------------------------------------------------------------------


@pytest.fixture
def live_server(app):
    """Serve `app` over real HTTP with one thread per request; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def http(method, url, body=None, token=None, timeout=30):
    """One real HTTP request; returns (status, parsed JSON body or None)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


RACE_TIMEOUT = 60  # seconds a concurrent client may take before the test fails


def run_at_once(calls):
    """Run the zero-argument `calls` in threads released together by a barrier,
    so they hit the server at the same instant; their results in order."""
    barrier = threading.Barrier(len(calls), timeout=RACE_TIMEOUT)
    results = [None] * len(calls)
    errors = []

    def worker(index, call):
        try:
            barrier.wait()
            results[index] = call()
        except Exception as error:  # reported below, with the thread's index
            errors.append((index, error))

    threads = [
        threading.Thread(target=worker, args=(i, call), daemon=True) for i, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(RACE_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a client never finished"
    assert not errors, errors
    return results


# ---------------------------------------------------------------------------
# The real server: gunicorn with gunicorn.conf.py, as in production.
# ---------------------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUNICORN_START_TIMEOUT = 30  # seconds for a server to answer /api/test-db


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn_server(database_uri: str, log_path, **env):
    """Serve app:app with gunicorn and gunicorn.conf.py (production config, a random
    JWT secret, rate limits off unless `env` says otherwise) on a free loopback port.

    Yields (base URL, process); the server is always stopped (SIGTERM, then SIGKILL
    after 10 s). `env` adds or overrides environment variables, e.g. WEB_CONCURRENCY.
    """
    port = free_port()
    beside_python = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    command = beside_python if os.path.exists(beside_python) else shutil.which("gunicorn")
    environ = {
        **os.environ,
        "DATABASE_URL": database_uri,
        "JWT_SECRET_KEY": secrets.token_hex(32),
        "RATELIMIT_ENABLED": "false",
        "FLASK_DEBUG": "0",
        "GUNICORN_ACCESS_LOG": "0",
        **env,
    }
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [command, "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "app:app"],
            cwd=ROOT,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + GUNICORN_START_TIMEOUT
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{open(log_path).read()[-3000:]}")
            try:
                if http("GET", base + "/api/test-db", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
