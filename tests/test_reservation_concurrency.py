"""Reservations under real concurrency (PostgreSQL): requests released
together over HTTP, and the exclusion constraints proven on their own.

SQLite serialises writers, so it cannot show a race; there the same rule is
checked in the writing transaction (tests/test_reservations.py).
"""

from datetime import UTC, datetime, timedelta

import pytest
from conftest import http, postgres_only, run_at_once
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from models import ParkingSpot, Reservation, Ticket, db

pytestmark = postgres_only

RATE = 6_000


def reservable_lot(app, make_lot, spots, reservable, **fields):
    made = make_lot(spots=spots, hourly_rate=RATE, **fields)
    with app.app_context():
        db.session.execute(
            update(ParkingSpot)
            .where(ParkingSpot.id.in_(made["spot_ids"][spots - reservable :]))
            .values(reservable=True)
        )
        db.session.commit()
    return made


def drivers_with_cars(make_user, make_vehicle, login, n):
    """n drivers, each with one car and an access token."""
    people = []
    for i in range(n):
        user = make_user(username=f"racer{i}", email=f"racer{i}@example.com")
        car = make_vehicle(user, plate=f"KRC {i:03d}R")
        people.append((login(user)["token"], car["id"]))
    return people


def no_overlaps(app) -> list:
    """Pairs of active reservations of one spot whose windows overlap."""
    with app.app_context():
        return db.session.execute(
            text(
                "SELECT a.id, b.id FROM reservations a JOIN reservations b "
                "ON a.spot_id = b.spot_id AND a.id < b.id "
                "AND a.start_at < b.end_at AND b.start_at < a.end_at "
                "WHERE a.status IN ('confirmed', 'checked_in') "
                "AND b.status IN ('confirmed', 'checked_in')"
            )
        ).all()


def test_twenty_drivers_racing_for_five_reservable_spots(
    app, clock, live_server, make_lot, make_user, make_vehicle, login
):
    lot = reservable_lot(app, make_lot, spots=8, reservable=5)
    people = drivers_with_cars(make_user, make_vehicle, login, 20)
    url = f"{live_server}/api/reservations"
    start = datetime(2026, 1, 16, 10, 0, tzinfo=UTC)
    calls = [
        # Overlapping windows: each starts a few minutes after the previous one.
        lambda token=token, car=car, i=i: http(
            "POST",
            url,
            {
                "lot_id": lot["id"],
                "vehicle_id": car,
                "start": (start + timedelta(minutes=i)).isoformat(),
                "end": (start + timedelta(hours=3)).isoformat(),
            },
            token,
        )
        for i, (token, car) in enumerate(people)
    ]
    results = run_at_once(calls)
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 5 + [409] * 15, results
    assert {body["error"] for status, body in results if status == 409} == {
        "No reservable spots for this window"
    }
    spots = {body["spot_id"] for status, body in results if status == 201}
    assert spots == set(lot["spot_ids"][3:])
    assert no_overlaps(app) == []


def test_twenty_back_to_back_hours_on_one_spot_all_succeed(
    app, clock, live_server, make_lot, make_user, make_vehicle, login
):
    lot = reservable_lot(app, make_lot, spots=1, reservable=1)
    people = drivers_with_cars(make_user, make_vehicle, login, 20)
    url = f"{live_server}/api/reservations"
    start = datetime(2026, 1, 16, 0, 0, tzinfo=UTC)
    calls = [
        lambda token=token, car=car, i=i: http(
            "POST",
            url,
            {
                "lot_id": lot["id"],
                "vehicle_id": car,
                "start": (start + timedelta(hours=i)).isoformat(),
                "end": (start + timedelta(hours=i + 1)).isoformat(),
            },
            token,
        )
        for i, (token, car) in enumerate(people)
    ]
    results = run_at_once(calls)
    assert [status for status, _ in results] == [201] * 20, results
    assert no_overlaps(app) == []


def test_a_reservation_and_a_walk_in_racing_for_the_last_spot_never_share_it(
    app, clock, live_server, make_lot, make_user, make_vehicle, login
):
    """The reserved spot is taken by an overstayer, so the check-in falls back
    to the lot's last free spot, which a walk-in asks for at the same instant."""
    for trial in range(5):
        lot = reservable_lot(app, make_lot, spots=2, reservable=1, name=f"Race {trial}")
        walk_in_spot, reserved_spot = lot["spot_ids"]
        holder, walker, overstayer = (
            make_user(username=f"{who}{trial}", email=f"{who}{trial}@example.com")
            for who in ("holder", "walker", "over")
        )
        holder_car = make_vehicle(holder, plate=f"KHL {trial:03d}H")
        walker_car = make_vehicle(walker, plate=f"KWL {trial:03d}W")
        over_car = make_vehicle(overstayer, plate=f"KOV {trial:03d}O")
        holder_token, walker_token = login(holder)["token"], login(walker)["token"]
        over_token = login(overstayer)["token"]
        base = datetime(2026, 1, 16 + trial, 8, 0, tzinfo=UTC)
        clock.now = base - timedelta(hours=1)
        # The overstayer's own reservation of the spot, 08:00-10:00, checked in.
        _, over_res = http(
            "POST",
            f"{live_server}/api/reservations",
            {
                "lot_id": lot["id"],
                "vehicle_id": over_car["id"],
                "start": base.isoformat(),
                "end": (base + timedelta(hours=2)).isoformat(),
            },
            over_token,
        )
        _, held = http(
            "POST",
            f"{live_server}/api/reservations",
            {
                "lot_id": lot["id"],
                "vehicle_id": holder_car["id"],
                "start": (base + timedelta(hours=2)).isoformat(),
                "end": (base + timedelta(hours=4)).isoformat(),
            },
            holder_token,
        )
        clock.now = base
        status, _ = http(
            "POST", f"{live_server}/api/reservations/{over_res['id']}/check-in", None, over_token
        )
        assert status == 201
        clock.now = base + timedelta(hours=2)  # the overstayer is still there
        check_in_url = f"{live_server}/api/reservations/{held['id']}/check-in"
        walk_in = {"vehicle_id": walker_car["id"], "lot_id": lot["id"]}
        results = run_at_once(
            [
                lambda url=check_in_url, token=holder_token: http("POST", url, None, token),
                lambda body=walk_in, token=walker_token: http(
                    "POST", f"{live_server}/api/tickets", body, token
                ),
            ]
        )
        (check_in_status, check_in), (walk_status, walk) = results
        assert sorted([check_in_status, walk_status]) == [201, 409], results
        winner = check_in if check_in_status == 201 else walk
        assert winner["spot_id"] == walk_in_spot
        loser_error = (walk if walk_status == 409 else check_in)["error"]
        assert loser_error in ("No spots available", "No spot available for this reservation")
        with app.app_context():
            open_spots = db.session.scalars(
                select(Ticket.spot_id).where(Ticket.lot_id == lot["id"], Ticket.check_out.is_(None))
            ).all()
        assert sorted(open_spots) == sorted([walk_in_spot, reserved_spot])


def test_the_database_refuses_overlapping_active_reservations(
    app, clock, make_lot, make_user, make_vehicle
):
    """The exclusion constraints hold whatever the app does: one spot, one
    vehicle; half-open windows; cancelled and no-show reservations hold nothing."""
    lot = reservable_lot(app, make_lot, spots=1, reservable=1)
    user = make_user()
    car, other_car = make_vehicle(user), make_vehicle(user)
    base = datetime(2026, 1, 16, 10, 0, tzinfo=UTC)

    def add(vehicle_id, start_hour, end_hour, status="confirmed"):
        with app.app_context():
            start = base + timedelta(hours=start_hour)
            db.session.add(
                Reservation(
                    lot_id=lot["id"],
                    spot_id=lot["spot_ids"][0],
                    vehicle_id=vehicle_id,
                    user_id=user["id"],
                    plate_key="X",
                    kind="standard",
                    start_at=start,
                    end_at=base + timedelta(hours=end_hour),
                    status=status,
                    amount=0,
                    currency="KES",
                    hourly_rate=0,
                    billing_increment_minutes=60,
                    grace_minutes=0,
                    exit_grace_minutes=15,
                    early_minutes=15,
                    cancel_free_until=start,
                    late_cancel_fee=0,
                    no_show_at=start,
                    created_day=start.date(),
                    start_day=start.date(),
                )
            )
            db.session.commit()

    add(car["id"], 0, 2)
    add(other_car["id"], 2, 4)  # back to back: fine
    add(other_car["id"], 1, 3, status="cancelled")  # not active: fine
    for vehicle_id in (other_car["id"], car["id"]):
        with pytest.raises(IntegrityError, match="ex_reservations_"):
            add(vehicle_id, 1, 3)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Reservation)) == 3
