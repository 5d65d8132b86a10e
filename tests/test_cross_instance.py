"""Two gunicorn instances, one PostgreSQL: the rules hold across servers.

The API keeps nothing between requests in a process (no sessions, no caches
that matter for correctness), so it scales by running more instances behind
a load balancer (docs/scaling.md). These tests start two real gunicorn
servers (2 workers each, the production config, one JWT secret) on the test
database and split concurrent requests between them: a spot, a vehicle and a
ticket are each used at most once, and a token revoked on one instance is
refused by the other.
"""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import http, postgres_only, run_at_once
from sqlalchemy import func, select

from models import ParkingSpot, RevokedToken, Ticket, db

pytestmark = postgres_only

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30  # seconds for an instance to answer /api/test-db
REQUEST_TIMEOUT = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_command() -> str:
    beside_python = Path(sys.executable).parent / "gunicorn"
    return str(beside_python) if beside_python.exists() else shutil.which("gunicorn")


def wait_until_up(base: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if http("GET", base + "/api/test-db", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn at {base} did not start:\n{log_path.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def instances(_migrated, tmp_path_factory):
    """Base URLs of two gunicorn instances (A, B) serving the test database."""
    logs = tmp_path_factory.mktemp("gunicorn")
    env = {
        **os.environ,
        "DATABASE_URL": _migrated,
        "JWT_SECRET_KEY": secrets.token_hex(32),  # the same on both, as in production
        "RATELIMIT_ENABLED": "false",
        "FLASK_DEBUG": "0",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "1",
        "GUNICORN_ACCESS_LOG": "0",
    }
    started = []
    try:
        for name in ("a", "b"):
            port = free_port()
            log_path = logs / f"{name}.log"
            with open(log_path, "w") as log:
                process = subprocess.Popen(
                    [gunicorn_command(), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"]
                    + ["app:app"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            started.append((f"http://127.0.0.1:{port}", process, log_path))
        for base, process, log_path in started:
            wait_until_up(base, process, log_path)
        yield [base for base, _, _ in started]
        for _, _, log_path in started:
            assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]
    finally:
        for _, process, _ in started:
            stop(process)


def race(calls):
    """Run the (method, url, body, token) calls at the same instant; return (status, body)s."""
    return run_at_once([lambda call=call: http(*call, timeout=REQUEST_TIMEOUT) for call in calls])


def login_on(base: str, user: dict) -> str:
    status, body = http(
        "POST", base + "/api/login", {"email": user["email"], "password": user["password"]}
    )
    assert status == 200, body
    return body["token"]


def open_tickets(app, **filters) -> list[Ticket]:
    with app.app_context():
        stmt = select(Ticket).where(Ticket.check_out.is_(None)).filter_by(**filters)
        return list(db.session.scalars(stmt))


def spot_statuses(app, spot_ids) -> dict[int, str]:
    with app.app_context():
        rows = db.session.execute(
            select(ParkingSpot.id, ParkingSpot.status).where(ParkingSpot.id.in_(spot_ids))
        )
        return dict(rows.all())


def test_a_spot_is_booked_once_across_instances(app, instances, make_user, make_lot, make_vehicle):
    lot = make_lot(spots=3)
    spot = lot["spot_ids"][1]
    drivers = [make_user() for _ in range(12)]
    calls = []
    for i, driver in enumerate(drivers):
        base = instances[i % 2]
        token = login_on(instances[(i + 1) % 2], driver)  # a token from the other instance
        vehicle = make_vehicle(driver, plate=f"KDA {i:03d}A")
        calls.append(
            ("POST", base + "/api/tickets", {"vehicle_id": vehicle["id"], "parking_spot_id": spot})
            + (token,)
        )

    results = race(calls)

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [400] * 11, results
    assert all(body == {"error": "Spot unavailable"} for status, body in results if status == 400)
    winner = next(body for status, body in results if status == 201)
    tickets = open_tickets(app, spot_id=spot)
    assert [t.id for t in tickets] == [winner["ticket_id"]]
    assert spot_statuses(app, lot["spot_ids"]) == {
        lot["spot_ids"][0]: "available",
        spot: "occupied",
        lot["spot_ids"][2]: "available",
    }


def test_a_vehicle_is_parked_once_across_instances(app, instances, driver, make_lot, vehicle):
    lot = make_lot(spots=12)
    token = login_on(instances[0], driver)
    calls = [
        ("POST", instances[i % 2] + "/api/tickets")
        + ({"vehicle_id": vehicle["id"], "parking_spot_id": spot}, token)
        for i, spot in enumerate(lot["spot_ids"])
    ]

    results = race(calls)

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 11, results
    assert all(
        body == {"error": "Vehicle already parked"} for status, body in results if status == 409
    )
    winner = next(body for status, body in results if status == 201)
    tickets = open_tickets(app, vehicle_id=vehicle["id"])
    assert [(t.id, t.spot_id) for t in tickets] == [(winner["ticket_id"], winner["spot_id"])]
    statuses_by_spot = spot_statuses(app, lot["spot_ids"])
    assert statuses_by_spot.pop(winner["spot_id"]) == "occupied"
    assert set(statuses_by_spot.values()) == {"available"}


def test_auto_assignment_gives_each_spot_once_across_instances(
    app, instances, make_user, make_lot, make_vehicle
):
    lot = make_lot(spots=6)
    calls = []
    for i in range(14):
        driver = make_user()
        vehicle = make_vehicle(driver, plate=f"KDB {i:03d}B")
        token = login_on(instances[i % 2], driver)
        calls.append(
            ("POST", instances[(i + 1) % 2] + "/api/tickets")
            + ({"vehicle_id": vehicle["id"], "lot_id": lot["id"]}, token)
        )

    results = race(calls)

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 6 + [409] * 8, results
    assert all(body == {"error": "No spots available"} for status, body in results if status == 409)
    given = sorted(body["spot_id"] for status, body in results if status == 201)
    assert given == sorted(lot["spot_ids"])
    tickets = open_tickets(app, lot_id=lot["id"])
    assert sorted(t.spot_id for t in tickets) == given
    assert set(spot_statuses(app, lot["spot_ids"]).values()) == {"occupied"}


def test_a_ticket_is_closed_once_across_instances(app, instances, driver, lot, vehicle):
    token = login_on(instances[1], driver)
    status, booked = http(
        "POST",
        instances[0] + "/api/tickets",
        {"vehicle_id": vehicle["id"], "parking_spot_id": lot["spot_ids"][0]},
        token,
    )
    assert status == 201, booked
    url = "/api/checkout/{}".format(booked["ticket_id"])

    results = race([("PATCH", instances[i % 2] + url, None, token) for i in range(8)])

    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [400] * 7, results
    assert all(
        body == {"error": "Invalid ticket or already checked out"}
        for status, body in results
        if status == 400
    )
    receipt = next(body for status, body in results if status == 200)
    with app.app_context():
        ticket = db.session.get(Ticket, booked["ticket_id"])
        assert ticket.check_out is not None
        assert ticket.check_out.isoformat() == receipt["check_out"]
        assert ticket.amount_due == receipt["amount_due"]
    assert spot_statuses(app, [lot["spot_ids"][0]]) == {lot["spot_ids"][0]: "available"}


def test_a_token_revoked_on_one_instance_is_refused_by_the_other(app, instances, driver):
    a, b = instances
    token = login_on(a, driver)
    status, me = http("GET", b + "/api/me", token=token)
    assert (status, me["id"], me["email"]) == (200, driver["id"], driver["email"])

    status, body = http("POST", a + "/api/logout", {}, token)
    assert (status, body) == (200, {"message": "Logged out"})

    for base in (b, a, b):
        assert http("GET", base + "/api/me", token=token) == (
            401,
            {"error": "Token has been revoked"},
        )
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RevokedToken)) == 1
