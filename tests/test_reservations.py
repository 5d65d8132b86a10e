"""Reservations: availability, booking with a price guard, no double booking,
cancel and no-show policy, check-in (app and gate), billing of a reserved
stay, relocation when the reserved spot is taken, and the report's days.

The clock fixture starts at 2026-01-15 08:00 UTC.
"""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from models import Event, ParkingSpot, Payment, Reservation, Ticket, db

RATE = 12_000  # minor units per hour
TOMORROW_10 = "2026-01-16T10:00:00+00:00"
TOMORROW_12 = "2026-01-16T12:00:00+00:00"
TOMORROW_14 = "2026-01-16T14:00:00+00:00"


@pytest.fixture
def rlot(app, make_lot):
    """A lot with A1-A2 for walk-ins and A3-A4 reservable, 120.00/h, 15 min grace."""

    def create(spots=4, reservable=2, **fields):
        fields.setdefault("hourly_rate", RATE)
        fields.setdefault("grace_minutes", 15)
        made = make_lot(spots=spots, **fields)
        with app.app_context():
            for spot_id in made["spot_ids"][spots - reservable :]:
                db.session.get(ParkingSpot, spot_id).reservable = True
            db.session.commit()
        made["walk_in"] = made["spot_ids"][: spots - reservable]
        made["reservable"] = made["spot_ids"][spots - reservable :]
        return made

    return create


@pytest.fixture
def booker(client, clock, driver, auth_headers, vehicle):
    headers = auth_headers(driver)

    def book(lot_id, start=TOMORROW_10, end=TOMORROW_12, vehicle_id=None, headers=headers, **more):
        body = {
            "lot_id": lot_id,
            "vehicle_id": vehicle_id or vehicle["id"],
            "start": start,
            "end": end,
            **more,
        }
        return client.post("/api/reservations", json=body, headers=headers)

    book.headers = headers
    return book


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


# ---------------------------------------------------------------------------
# Availability and booking
# ---------------------------------------------------------------------------


def availability_url(lot_id, start, end) -> str:
    def quoted(value):
        return value.replace("+", "%2B")

    return f"/api/parking-lots/{lot_id}/availability?start={quoted(start)}&end={quoted(end)}"


def test_availability_counts_free_reservable_spots_and_prices_the_window(
    client, clock, rlot, booker
):
    lot = rlot()
    url = availability_url(lot["id"], TOMORROW_10, TOMORROW_12)
    answer = client.get(url)
    assert answer.status_code == 200
    assert answer.get_json() == {
        "start": "2026-01-16T10:00:00+00:00",
        "end": "2026-01-16T12:00:00+00:00",
        "kind": "standard",
        "reservable_total": 2,
        "available": 2,
        "amount": 2 * RATE,
        "currency": "KES",
    }
    assert booker(lot["id"]).status_code == 201
    assert client.get(url).get_json()["available"] == 1
    # Back to back with the booked window: both spots are free for it.
    later = availability_url(lot["id"], TOMORROW_12, TOMORROW_14)
    assert client.get(later).get_json()["available"] == 2
    ev = client.get(url + "&kind=ev").get_json()
    assert (ev["kind"], ev["reservable_total"], ev["available"]) == ("ev", 0, 0)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "start and end are required"),
        ("start=2026-01-16T10:00:00&end=2026-01-16T12:00:00Z", "start must carry a UTC offset"),
        ("start=2026-01-16T12:00:00Z&end=2026-01-16T10:00:00Z", "end must be after start"),
        ("start=tomorrow&end=2026-01-16T10:00:00Z", "start must be an ISO 8601"),
        ("start=2026-01-16T10:00:00Z&end=2026-01-16T12:00:00Z&kind=bus", "kind must be one of"),
    ],
)
def test_availability_refuses_bad_windows(client, rlot, query, message):
    lot = rlot()
    answer = client.get(f"/api/parking-lots/{lot['id']}/availability?{query}")
    assert answer.status_code == 400
    assert answer.get_json()["error"].startswith(message)


def test_availability_of_an_unknown_lot_is_404(client):
    answer = client.get(
        "/api/parking-lots/999/availability?start=2026-01-16T10:00Z&end=2026-01-16T11:00Z"
    )
    assert answer.status_code == 404
    assert answer.get_json() == {"error": "Parking lot not found"}


def test_a_booking_is_confirmed_priced_frozen_and_paid(app, clock, rlot, booker, vehicle, driver):
    lot = rlot()
    answer = booker(lot["id"], start="2026-01-16T13:00:00+03:00", end="2026-01-16T15:30:00+03:00")
    assert answer.status_code == 201
    body = answer.get_json()
    # The offset carried in the request is respected: 13:00+03:00 is 10:00 UTC.
    assert body["start"] == "2026-01-16T10:00:00+00:00"
    assert body["end"] == "2026-01-16T12:30:00+00:00"
    assert body["status"] == "confirmed"
    assert body["amount"] == 3 * RATE  # 2.5 hours: three started hours, no grace period
    assert body["spot_id"] in lot["reservable"]
    assert body["cancel_free_until"] == "2026-01-16T09:00:00+00:00"
    assert body["check_in_from"] == "2026-01-16T09:45:00+00:00"
    assert body["no_show_at"] == "2026-01-16T10:30:00+00:00"
    assert body["plate_number"] == vehicle["plate_number"]
    assert body["user_id"] == driver["id"]
    with app.app_context():
        payment = db.session.scalar(select(Payment))
        assert (payment.reservation_id, payment.ticket_id) == (body["id"], None)
        assert (payment.amount, payment.method) == (3 * RATE, "reservation")
        # The tariff is frozen: a later price change does not touch it.
        reservation = db.session.get(Reservation, body["id"])
        assert reservation.hourly_rate == RATE


def test_a_changed_price_is_409_with_the_price_and_books_nothing(app, clock, rlot, booker):
    lot = rlot()
    answer = booker(lot["id"], expected_amount=RATE)
    assert answer.status_code == 409
    assert answer.get_json() == {"error": "Price changed", "amount": 2 * RATE}
    assert count(app, Reservation) == 0
    assert count(app, Payment) == 0
    assert booker(lot["id"], expected_amount=2 * RATE).status_code == 201


def test_a_full_window_is_409_and_back_to_back_windows_are_fine(
    client, clock, rlot, booker, make_vehicle, driver
):
    lot = rlot(spots=2, reservable=1)
    first = booker(lot["id"])
    assert first.status_code == 201
    other = make_vehicle(driver)
    overlapping = booker(
        lot["id"], start="2026-01-16T11:59:00Z", end=TOMORROW_14, vehicle_id=other["id"]
    )
    assert overlapping.status_code == 409
    assert overlapping.get_json() == {"error": "No reservable spots for this window"}
    after = booker(lot["id"], start=TOMORROW_12, end=TOMORROW_14, vehicle_id=other["id"])
    before = booker(
        lot["id"],
        start="2026-01-16T08:00:00Z",
        end=TOMORROW_10,
        vehicle_id=make_vehicle(driver)["id"],
    )
    assert (after.status_code, before.status_code) == (201, 201)
    assert (
        after.get_json()["spot_id"] == first.get_json()["spot_id"] == before.get_json()["spot_id"]
    )


def test_one_vehicle_cannot_hold_overlapping_reservations(clock, rlot, booker):
    lot, other_lot = rlot(), rlot(name="Lot B")
    assert booker(lot["id"]).status_code == 201
    answer = booker(other_lot["id"], start="2026-01-16T11:00:00Z", end=TOMORROW_14)
    assert answer.status_code == 409
    assert answer.get_json() == {"error": "Vehicle already has a reservation for this window"}
    assert booker(other_lot["id"], start=TOMORROW_12, end=TOMORROW_14).status_code == 201


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-01-16T10:00:00", TOMORROW_12, "start must carry a UTC offset"),
        (TOMORROW_12, TOMORROW_10, "end must be after start"),
        (TOMORROW_10, TOMORROW_10, "end must be after start"),
        ("2026-01-15T07:58:00Z", TOMORROW_10, "start must not be in the past"),
        (TOMORROW_10, "2026-02-15T10:00:01Z", "A reservation lasts at most 30 days"),
        ("2026-04-16T08:00:01Z", "2026-04-16T10:00:00Z", "start must be at most 90 days ahead"),
    ],
)
def test_window_rules(app, clock, rlot, booker, start, end, message):
    lot = rlot()
    answer = booker(lot["id"], start=start, end=end)
    assert answer.status_code == 400
    assert answer.get_json()["error"].startswith(message)
    assert count(app, Reservation) == 0


def test_a_start_within_the_minute_tolerance_is_accepted(clock, rlot, booker):
    lot = rlot()
    answer = booker(lot["id"], start="2026-01-15T07:59:30Z", end="2026-01-15T09:00:00Z")
    assert answer.status_code == 201


def test_the_window_limits_are_lot_settings(client, clock, rlot, booker, admin, auth_headers):
    lot = rlot()
    patched = client.patch(
        f"/api/parking-lots/{lot['id']}",
        json={"reservation_max_days": 1, "reservation_horizon_days": 0},
        headers=auth_headers(admin),
    )
    assert patched.status_code == 200
    assert patched.get_json()["reservations"]["max_days"] == 1
    answer = booker(lot["id"], start="2026-01-15T09:00:00Z", end="2026-01-16T09:00:01Z")
    assert answer.get_json() == {"error": "A reservation lasts at most 1 days"}
    answer = booker(lot["id"])
    assert answer.get_json() == {"error": "start must be at most 0 days ahead"}


def test_missing_fields_and_foreign_vehicles_and_archived_lots(
    client, clock, rlot, booker, make_vehicle, other_driver, admin, auth_headers
):
    lot = rlot()
    answer = client.post("/api/reservations", json={"lot_id": lot["id"]}, headers=booker.headers)
    assert answer.status_code == 400
    assert answer.get_json() == {"error": "lot_id, vehicle_id, start and end are required"}
    theirs = make_vehicle(other_driver)
    answer = booker(lot["id"], vehicle_id=theirs["id"])
    assert (answer.status_code, answer.get_json()) == (400, {"error": "Vehicle not found"})
    client.delete(f"/api/parking-lots/{lot['id']}", headers=auth_headers(admin))
    answer = booker(lot["id"])
    assert (answer.status_code, answer.get_json()) == (404, {"error": "Parking lot not found"})


def test_walk_ins_never_get_a_reservable_spot(
    client, clock, rlot, make_vehicle, driver, auth_headers, admin
):
    lot = rlot(spots=2, reservable=1)
    headers = auth_headers(driver)
    first, second = make_vehicle(driver), make_vehicle(driver)
    chosen = client.post(
        "/api/tickets",
        json={"vehicle_id": first["id"], "parking_spot_id": lot["reservable"][0]},
        headers=headers,
    )
    assert (chosen.status_code, chosen.get_json()) == (400, {"error": "Spot unavailable"})
    assigned = client.post(
        "/api/tickets", json={"vehicle_id": first["id"], "lot_id": lot["id"]}, headers=headers
    )
    assert assigned.status_code == 201
    assert assigned.get_json()["spot_id"] == lot["walk_in"][0]
    full = client.post(
        "/api/tickets", json={"vehicle_id": second["id"], "lot_id": lot["id"]}, headers=headers
    )
    assert (full.status_code, full.get_json()) == (409, {"error": "No spots available"})
    gate = client.post(
        f"/api/parking-lots/{lot['id']}/entries",
        json={"plate_number": "KDA 001X"},
        headers=auth_headers(admin),
    )
    assert (gate.status_code, gate.get_json()) == (409, {"error": "No spots available"})


def test_lots_show_reservable_counts_and_spots_their_flag(client, clock, admin, auth_headers):
    headers = auth_headers(admin)
    created = client.post(
        "/api/parking-lots",
        json={
            "name": "Lot R",
            "location": "CBD",
            "spot_count": 5,
            "spot_prefix": "R",
            "reservable_count": 2,
        },
        headers=headers,
    )
    assert created.status_code == 201
    lot_id = created.get_json()["lot_id"]
    counts = ("spots", "available_spots", "reservable_spots")
    assert [created.get_json()["lot"][k] for k in counts] == [5, 3, 2]
    detail = client.get(f"/api/parking-lots/{lot_id}", headers=headers).get_json()
    assert [detail[k] for k in counts] == [5, 3, 2]
    listed = client.get("/api/parking-lots", headers=headers).get_json()
    assert [[lot[k] for k in counts] for lot in listed] == [[5, 3, 2]]
    spots = client.get(f"/api/spots?lot_id={lot_id}").get_json()
    assert [(s["spot_number"], s["reservable"]) for s in spots] == [
        ("R1", False),
        ("R2", False),
        ("R3", False),
        ("R4", True),
        ("R5", True),
    ]
    batch = client.post(
        f"/api/parking-lots/{lot_id}/spots",
        json={"count": 2, "prefix": "V", "reservable": True},
        headers=headers,
    )
    assert [s["reservable"] for s in batch.get_json()] == [True, True]
    too_many = client.post(
        "/api/parking-lots",
        json={"name": "Lot S", "location": "CBD", "spot_count": 1, "reservable_count": 2},
        headers=headers,
    )
    assert too_many.get_json() == {"error": "reservable_count must not exceed spot_count"}


def test_a_spot_with_active_reservations_stays_reservable(
    client, clock, rlot, booker, admin, auth_headers
):
    lot = rlot(spots=1, reservable=1)
    assert booker(lot["id"]).status_code == 201
    headers = auth_headers(admin)
    spot = lot["reservable"][0]
    answer = client.patch(f"/api/spots/{spot}", json={"reservable": False}, headers=headers)
    assert (answer.status_code, answer.get_json()) == (
        409,
        {"error": "Spot has active reservations"},
    )
    assert (
        client.patch(f"/api/spots/{spot}", json={"reservable": "no"}, headers=headers).status_code
        == 400
    )


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def test_lists_and_details_are_the_owners_or_an_admins(
    client, clock, rlot, booker, make_vehicle, other_driver, auth_headers, admin
):
    lot = rlot()
    mine = booker(lot["id"]).get_json()
    theirs_headers = auth_headers(other_driver)
    theirs = booker(
        lot["id"], vehicle_id=make_vehicle(other_driver)["id"], headers=theirs_headers
    ).get_json()
    listed = client.get("/api/reservations", headers=booker.headers)
    assert [r["id"] for r in listed.get_json()] == [mine["id"]]
    assert listed.headers["X-Total-Count"] == "1"
    assert (
        client.get(f"/api/reservations/{theirs['id']}", headers=booker.headers).status_code == 404
    )
    assert client.get(f"/api/reservations/{mine['id']}", headers=booker.headers).get_json() == mine
    refused = client.get("/api/reservations?all=true", headers=booker.headers)
    assert (refused.status_code, refused.get_json()) == (
        403,
        {"error": "Admin privileges required"},
    )
    everyone = client.get("/api/reservations?all=true", headers=auth_headers(admin)).get_json()
    assert {r["id"] for r in everyone} == {mine["id"], theirs["id"]}
    window = client.get(
        "/api/reservations?all=true&from=2026-01-16T12:00:00Z", headers=auth_headers(admin)
    ).get_json()
    assert window == []
    assert client.get("/api/reservations?status=cancelled", headers=booker.headers).get_json() == []


# ---------------------------------------------------------------------------
# Cancelling
# ---------------------------------------------------------------------------


def test_a_free_cancellation_refunds_everything(app, client, clock, rlot, booker):
    lot = rlot()
    booked = booker(lot["id"]).get_json()
    clock.now = datetime(2026, 1, 16, 8, 59, tzinfo=UTC)  # cancel_free_until is 09:00
    answer = client.post(f"/api/reservations/{booked['id']}/cancel", headers=booker.headers)
    assert answer.status_code == 200
    body = answer.get_json()
    assert (body["message"], body["status"], body["refund"]) == (
        "Reservation cancelled",
        "cancelled",
        2 * RATE,
    )
    with app.app_context():
        amounts = db.session.scalars(select(Payment.amount).order_by(Payment.id)).all()
    assert amounts == [2 * RATE, -2 * RATE]
    again = client.post(f"/api/reservations/{booked['id']}/cancel", headers=booker.headers)
    assert (again.status_code, again.get_json()) == (409, {"error": "Reservation is cancelled"})
    # The window is free again.
    assert booker(lot["id"]).status_code == 201


def test_a_late_cancellation_keeps_the_fee(app, client, clock, rlot, booker, admin, auth_headers):
    lot = rlot(late_cancel_fee=5_000)
    booked = booker(lot["id"]).get_json()
    assert booked["late_cancel_fee"] == 5_000
    clock.now = datetime(2026, 1, 16, 9, 30, tzinfo=UTC)
    answer = client.post(f"/api/reservations/{booked['id']}/cancel", headers=auth_headers(admin))
    assert answer.get_json()["refund"] == 2 * RATE - 5_000


def test_a_late_cancellation_by_default_refunds_nothing(app, client, clock, rlot, booker):
    lot = rlot()
    booked = booker(lot["id"]).get_json()
    clock.now = datetime(2026, 1, 16, 9, 0, tzinfo=UTC)
    answer = client.post(f"/api/reservations/{booked['id']}/cancel", headers=booker.headers)
    assert answer.get_json()["refund"] == 0
    assert count(app, Payment) == 1


def test_a_started_reservation_cannot_be_cancelled(
    client, clock, rlot, booker, other_driver, auth_headers
):
    lot = rlot()
    booked = booker(lot["id"]).get_json()
    stranger = client.post(
        f"/api/reservations/{booked['id']}/cancel", headers=auth_headers(other_driver)
    )
    assert stranger.status_code == 404
    clock.now = datetime(2026, 1, 16, 10, 0, tzinfo=UTC)
    answer = client.post(f"/api/reservations/{booked['id']}/cancel", headers=booker.headers)
    assert (answer.status_code, answer.get_json()) == (
        409,
        {"error": "Reservation already started"},
    )


# ---------------------------------------------------------------------------
# Check-in and billing
# ---------------------------------------------------------------------------


def test_check_in_is_allowed_only_in_its_window(client, clock, rlot, booker):
    lot = rlot()
    booked = booker(lot["id"]).get_json()
    clock.now = datetime(2026, 1, 16, 9, 44, tzinfo=UTC)
    early = client.post(f"/api/reservations/{booked['id']}/check-in", headers=booker.headers)
    assert early.status_code == 409
    assert early.get_json() == {
        "error": "Check-in is allowed from 2026-01-16T09:45:00+00:00 "
        "until 2026-01-16T10:30:00+00:00",
        "check_in_from": "2026-01-16T09:45:00+00:00",
        "check_in_until": "2026-01-16T10:30:00+00:00",
    }


def test_a_reserved_stay_within_its_window_owes_nothing_at_the_exit(
    app, client, clock, rlot, booker
):
    lot = rlot()
    booked = booker(lot["id"]).get_json()
    clock.now = datetime(2026, 1, 16, 9, 50, tzinfo=UTC)
    answer = client.post(f"/api/reservations/{booked['id']}/check-in", headers=booker.headers)
    assert answer.status_code == 201
    body = answer.get_json()
    assert body["spot_id"] == booked["spot_id"]
    assert body["reservation"]["status"] == "checked_in"
    assert body["reservation"]["ticket_id"] == body["ticket_id"]
    clock.now = datetime(2026, 1, 16, 11, 59, tzinfo=UTC)
    receipt = client.patch(f"/api/checkout/{body['ticket_id']}", headers=booker.headers).get_json()
    assert (receipt["amount_due"], receipt["balance"]) == (0, 0)
    assert receipt["breakdown"] == [
        {"period": "early", "minutes": 10, "amount": 0},
        {"period": "reservation", "minutes": 119, "amount": 0, "prepaid": 2 * RATE},
    ]
    detail = client.get(f"/api/reservations/{booked['id']}", headers=booker.headers).get_json()
    assert detail["status"] == "completed"
    with app.app_context():
        assert db.session.get(Ticket, body["ticket_id"]).reservation_id == booked["id"]


def test_an_overstay_is_billed_from_the_windows_end_without_grace(client, clock, rlot, booker):
    lot = rlot()  # 15 minutes of grace for walk-ins
    booked = booker(lot["id"]).get_json()
    clock.now = datetime(2026, 1, 16, 10, 5, tzinfo=UTC)
    ticket_id = client.post(
        f"/api/reservations/{booked['id']}/check-in", headers=booker.headers
    ).get_json()["ticket_id"]
    clock.now = datetime(2026, 1, 16, 12, 10, tzinfo=UTC)
    receipt = client.patch(f"/api/checkout/{ticket_id}", headers=booker.headers).get_json()
    assert receipt["amount_due"] == RATE  # 10 minutes past the end: one started hour
    assert receipt["breakdown"] == [
        {"period": "reservation", "minutes": 115, "amount": 0, "prepaid": 2 * RATE},
        {"period": "remainder", "minutes": 10, "increments": 1, "capped": False, "amount": RATE},
    ]


def test_a_gate_entry_checks_the_plates_reservation_in(
    app, client, clock, rlot, booker, vehicle, admin, auth_headers
):
    lot = rlot()
    booked = booker(lot["id"]).get_json()
    clock.now = datetime(2026, 1, 16, 10, 10, tzinfo=UTC)
    entry = client.post(
        f"/api/parking-lots/{lot['id']}/entries",
        json={"plate_number": vehicle["plate_number"].lower().replace(" ", "")},
        headers=auth_headers(admin),
    )
    assert entry.status_code == 201
    assert entry.get_json()["spot_id"] == booked["spot_id"]
    assert entry.get_json()["reservation_id"] == booked["id"]
    detail = client.get(f"/api/reservations/{booked['id']}", headers=booker.headers).get_json()
    assert (detail["status"], detail["ticket_id"]) == ("checked_in", entry.get_json()["ticket_id"])


def test_a_plate_without_a_due_reservation_enters_as_a_walk_in(
    client, clock, rlot, booker, vehicle, admin, auth_headers
):
    lot = rlot()
    booker(lot["id"])
    entry = client.post(
        f"/api/parking-lots/{lot['id']}/entries",
        json={"plate_number": vehicle["plate_number"]},
        headers=auth_headers(admin),
    )
    assert entry.status_code == 201  # a day early: an ordinary stay on a walk-in spot
    assert entry.get_json()["spot_id"] in lot["walk_in"]
    assert entry.get_json()["reservation_id"] is None


def test_an_overstayer_on_the_reserved_spot_moves_the_reservation(
    app, client, clock, rlot, booker, make_vehicle, driver, admin, auth_headers
):
    lot = rlot(spots=3, reservable=2)  # A1 walk-in; A2, A3 reservable
    early = booker(lot["id"], start="2026-01-16T08:00:00Z", end=TOMORROW_10).get_json()
    late_car = make_vehicle(driver)
    late = booker(lot["id"], vehicle_id=late_car["id"]).get_json()
    assert early["spot_id"] == late["spot_id"] == lot["reservable"][0]
    clock.now = datetime(2026, 1, 16, 8, 0, tzinfo=UTC)
    client.post(f"/api/reservations/{early['id']}/check-in", headers=booker.headers)
    clock.now = datetime(2026, 1, 16, 10, 0, tzinfo=UTC)  # the first car overstays
    answer = client.post(f"/api/reservations/{late['id']}/check-in", headers=booker.headers)
    assert answer.status_code == 201
    assert answer.get_json()["spot_id"] == lot["reservable"][1]
    assert answer.get_json()["reservation"]["spot_id"] == lot["reservable"][1]


def test_relocation_falls_back_to_any_free_spot_of_the_kind_then_409(
    app, client, clock, rlot, booker, make_vehicle, driver, auth_headers, other_driver
):
    lot = rlot(spots=2, reservable=1)  # A1 walk-in, A2 reservable
    first = booker(lot["id"], start="2026-01-16T08:00:00Z", end=TOMORROW_10).get_json()
    second_car, third_car = make_vehicle(driver), make_vehicle(driver)
    second = booker(lot["id"], vehicle_id=second_car["id"]).get_json()
    third = booker(
        lot["id"], start=TOMORROW_12, end=TOMORROW_14, vehicle_id=third_car["id"]
    ).get_json()
    clock.now = datetime(2026, 1, 16, 8, 0, tzinfo=UTC)
    client.post(f"/api/reservations/{first['id']}/check-in", headers=booker.headers)
    clock.now = datetime(2026, 1, 16, 10, 0, tzinfo=UTC)
    moved = client.post(f"/api/reservations/{second['id']}/check-in", headers=booker.headers)
    assert moved.status_code == 201
    assert moved.get_json()["spot_id"] == lot["walk_in"][0]
    # Both spots taken now: the third reservation (12:00) cannot be honoured.
    clock.now = datetime(2026, 1, 16, 12, 0, tzinfo=UTC)
    client.patch(f"/api/checkout/{moved.get_json()['ticket_id']}", headers=booker.headers)
    walk_in = make_vehicle(other_driver)
    client.post(
        "/api/tickets",
        json={"vehicle_id": walk_in["id"], "lot_id": lot["id"]},
        headers=auth_headers(other_driver),
    )
    refused = client.post(f"/api/reservations/{third['id']}/check-in", headers=booker.headers)
    assert (refused.status_code, refused.get_json()) == (
        409,
        {"error": "No spot available for this reservation"},
    )
    detail = client.get(f"/api/reservations/{third['id']}", headers=booker.headers).get_json()
    assert detail["status"] == "confirmed"  # nothing changed


# ---------------------------------------------------------------------------
# No-shows
# ---------------------------------------------------------------------------


def test_a_no_show_frees_the_window_without_a_job(
    app, client, clock, rlot, booker, make_vehicle, driver, runner
):
    lot = rlot(spots=1, reservable=1)
    booked = booker(lot["id"]).get_json()
    clock.now = datetime(2026, 1, 16, 10, 30, tzinfo=UTC)  # start + 30 minutes
    detail = client.get(f"/api/reservations/{booked['id']}", headers=booker.headers).get_json()
    assert detail["status"] == "no_show"
    url = availability_url(lot["id"], "2026-01-16T10:30:00Z", TOMORROW_12)
    assert client.get(url).get_json()["available"] == 1
    refused = client.post(f"/api/reservations/{booked['id']}/check-in", headers=booker.headers)
    assert (refused.status_code, refused.get_json()) == (409, {"error": "Reservation is a no-show"})
    # Another car books the rest of the window: the booking records the no-show.
    other = booker(
        lot["id"],
        start="2026-01-16T10:30:00Z",
        end=TOMORROW_12,
        vehicle_id=make_vehicle(driver)["id"],
    )
    assert other.status_code == 201
    with app.app_context():
        assert db.session.get(Reservation, booked["id"]).status == "no_show"
    assert count(app, Payment, Payment.amount < 0) == 0  # not refunded


def test_expire_reservations_records_no_shows(app, clock, rlot, booker, runner):
    lot = rlot()
    booked = booker(lot["id"]).get_json()
    clock.now = datetime(2026, 1, 16, 10, 29, tzinfo=UTC)
    assert "Marked 0 " in runner.invoke(args=["expire-reservations"]).output
    clock.now = datetime(2026, 1, 16, 10, 30, tzinfo=UTC)
    assert "Marked 1 " in runner.invoke(args=["expire-reservations"]).output
    with app.app_context():
        assert db.session.get(Reservation, booked["id"]).status == "no_show"


# ---------------------------------------------------------------------------
# Time zones, DST and the report
# ---------------------------------------------------------------------------


def test_a_window_across_a_dst_change_is_priced_on_real_hours(client, clock, rlot, booker):
    lot = rlot(timezone="Europe/Berlin")
    clock.now = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    # 01:00 to 04:00 local on 29 March 2026 is two real hours (02:00 does not exist).
    answer = booker(lot["id"], start="2026-03-29T01:00:00+01:00", end="2026-03-29T04:00:00+02:00")
    assert answer.status_code == 201
    body = answer.get_json()
    assert body["amount"] == 2 * RATE
    assert (body["start_local"], body["end_local"]) == (
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T04:00:00+02:00",
    )


def test_the_report_counts_reservations_on_the_lots_local_days(
    app, client, clock, rlot, booker, make_vehicle, driver, admin, auth_headers
):
    lot = rlot(timezone="Africa/Nairobi")  # UTC+3
    clock.now = datetime(2026, 1, 15, 20, 30, tzinfo=UTC)  # 23:30 local, 15 January
    kept = booker(lot["id"]).get_json()
    clock.now = datetime(2026, 1, 15, 21, 30, tzinfo=UTC)  # 00:30 local, 16 January
    cancelled = booker(lot["id"], vehicle_id=make_vehicle(driver)["id"]).get_json()
    client.post(f"/api/reservations/{cancelled['id']}/cancel", headers=booker.headers)
    clock.now = datetime(2026, 1, 16, 11, 0, tzinfo=UTC)  # the kept one is a no-show by now
    report = client.get(
        f"/api/parking-lots/{lot['id']}/report?from=2026-01-15&to=2026-01-16",
        headers=auth_headers(admin),
    ).get_json()
    picked = [
        {
            k: day[k]
            for k in (
                "date",
                "reservations_made",
                "reservation_revenue",
                "cancellations",
                "refunds",
                "no_shows",
            )
        }
        for day in report["days"]
    ]
    assert picked == [
        {
            "date": "2026-01-15",
            "reservations_made": 1,
            "reservation_revenue": 2 * RATE,
            "cancellations": 0,
            "refunds": 0,
            "no_shows": 0,
        },
        {
            "date": "2026-01-16",
            "reservations_made": 1,
            "reservation_revenue": 2 * RATE,
            "cancellations": 1,
            "refunds": 2 * RATE,
            "no_shows": 1,
        },
    ]
    assert report["totals"]["reservations_made"] == 2
    assert report["days"][0]["payments"]["reservation"] == 2 * RATE
    assert report["days"][1]["payments"]["reservation"] == 0  # paid, then refunded
    assert kept["status"] == "confirmed"
    csv = client.get(
        f"/api/parking-lots/{lot['id']}/report?from=2026-01-15&to=2026-01-16&format=csv",
        headers=auth_headers(admin),
    ).get_data(as_text=True)
    assert csv.splitlines()[0].endswith(
        "reservations_made,reservation_revenue,cancellations,refunds,no_shows"
    )


def test_exact_datetimes_round_trip(clock, rlot, booker):
    lot = rlot()
    start = datetime(2026, 1, 16, 10, 0, 0, 123456, tzinfo=UTC)
    answer = booker(
        lot["id"], start=start.isoformat(), end=(start + timedelta(hours=1)).isoformat()
    )
    assert answer.get_json()["start"] == start.isoformat()


def test_bookings_cancellations_and_no_shows_are_events(app, client, clock, rlot, booker, runner):
    lot = rlot()
    kept = booker(lot["id"]).get_json()
    dropped = booker(lot["id"], start=TOMORROW_12, end=TOMORROW_14).get_json()
    client.post(f"/api/reservations/{dropped['id']}/cancel", headers=booker.headers)
    clock.now = datetime(2026, 1, 16, 10, 30, tzinfo=UTC)
    runner.invoke(args=["expire-reservations"])
    with app.app_context():
        events = db.session.execute(select(Event.type, Event.data).order_by(Event.id)).all()
    reservation_events = [
        (t, d["id"], d["status"]) for t, d in events if t.startswith("reservation")
    ]
    assert reservation_events == [
        ("reservation.created", kept["id"], "confirmed"),
        ("reservation.created", dropped["id"], "confirmed"),
        ("reservation.cancelled", dropped["id"], "cancelled"),
        ("reservation.no_show", kept["id"], "no_show"),
    ]


def test_a_lot_with_upcoming_reservations_cannot_be_archived(
    client, clock, rlot, booker, admin, auth_headers
):
    lot = rlot()
    booked = booker(lot["id"]).get_json()
    headers = auth_headers(admin)
    refused = client.delete(f"/api/parking-lots/{lot['id']}", headers=headers)
    assert refused.status_code == 409
    assert refused.get_json() == {
        "error": "Parking lot has upcoming reservations; cancel them first"
    }
    client.post(f"/api/reservations/{booked['id']}/cancel", headers=headers)
    assert client.delete(f"/api/parking-lots/{lot['id']}", headers=headers).status_code == 200


def test_a_reserved_stays_ticket_events_show_the_ticket_as_listed(app, client, clock, rlot, booker):
    lot = rlot()
    booked = booker(lot["id"]).get_json()
    clock.now = datetime(2026, 1, 16, 9, 50, tzinfo=UTC)
    ticket_id = client.post(
        f"/api/reservations/{booked['id']}/check-in", headers=booker.headers
    ).get_json()["ticket_id"]
    opened = client.get("/api/tickets", headers=booker.headers).get_json()[0]
    clock.now = datetime(2026, 1, 16, 12, 30, tzinfo=UTC)
    client.patch(f"/api/checkout/{ticket_id}", headers=booker.headers)
    closed = client.get("/api/tickets", headers=booker.headers).get_json()[0]
    assert (opened["reservation_id"], closed["amount_due"]) == (booked["id"], RATE)
    with app.app_context():
        events = db.session.execute(select(Event.type, Event.data).order_by(Event.id)).all()
    assert [(t, d) for t, d in events if t.startswith("ticket.")] == [
        ("ticket.opened", opened),
        ("ticket.closed", closed),
    ]


def test_the_availability_feed_separates_walk_in_and_reservable_spots(
    client, clock, rlot, booker, make_vehicle, driver, auth_headers
):
    lot = rlot(spots=3, reservable=2)  # A1 for walk-ins; A2, A3 reservable

    def feed():
        return next(
            e for e in client.get("/api/availability").get_json() if e["lot_id"] == lot["id"]
        )

    assert (feed()["available"], feed()["reservable_available"], feed()["status"]) == (
        1,
        2,
        "SPACES_AVAILABLE",
    )
    booked = booker(lot["id"], start="2026-01-15T08:00:00Z", end="2026-01-15T10:00:00Z").get_json()
    assert feed()["reservable_available"] == 1  # held now, though nobody is there yet
    walk_in = make_vehicle(driver)
    client.post(
        "/api/tickets",
        json={"vehicle_id": walk_in["id"], "lot_id": lot["id"]},
        headers=auth_headers(driver),
    )
    assert (feed()["available"], feed()["status"]) == (0, "FULL")
    clock.now = datetime(2026, 1, 15, 8, 30, tzinfo=UTC)  # a no-show: the spot is free again
    assert (feed()["available"], feed()["reservable_available"]) == (0, 2)
    assert booked["status"] == "confirmed"
