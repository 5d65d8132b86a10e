"""Tickets: POST /api/tickets, GET /api/tickets, PATCH /api/checkout/<ticket_id>."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from models import ParkingSpot, Ticket, db

INVALID = {"error": "Invalid ticket or already checked out"}


def book(client, headers, vehicle_id, spot_id):
    return client.post(
        "/api/tickets", json={"vehicle_id": vehicle_id, "parking_spot_id": spot_id}, headers=headers
    )


def tickets_in_db(app) -> list[Ticket]:
    with app.app_context():
        return list(db.session.scalars(select(Ticket).order_by(Ticket.id)))


def ticket_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Ticket))


def spot_status(app, spot_id) -> str:
    with app.app_context():
        return db.session.get(ParkingSpot, spot_id).status


def api_spot_status(client, spot_id) -> str:
    spots = client.get("/api/spots", query_string={"per_page": 1000}).get_json()
    return next(spot["status"] for spot in spots if spot["id"] == spot_id)


def assert_spots_agree_with_open_tickets(app):
    with app.app_context():
        open_spots = set(
            db.session.scalars(select(Ticket.spot_id).where(Ticket.check_out.is_(None)))
        )
        for spot in db.session.scalars(select(ParkingSpot)):
            expected = "occupied" if spot.id in open_spots else "available"
            assert spot.status == expected, (spot.id, spot.status)


def assert_utc_iso(value: str) -> datetime:
    assert value.endswith("+00:00"), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset().total_seconds() == 0
    return parsed


# ---------------------------------------------------------------------------
# The seed document's whole flow
# ---------------------------------------------------------------------------


def test_register_book_checkout_flow(client, app, lot):
    body = {"username": "testuser", "email": "test@example.com", "password": "password123"}
    registered = client.post("/api/register", json=body)
    assert registered.status_code == 201
    headers = {"Authorization": f"Bearer {registered.get_json()['token']}"}
    vehicle = client.post("/api/vehicles", json={"plate_number": "KCB 123A"}, headers=headers)
    assert vehicle.status_code == 201
    spot_id = lot["spot_ids"][0]

    booked = book(client, headers, vehicle.get_json()["id"], spot_id)
    assert booked.status_code == 201
    assert booked.get_json()["message"] == "Spot booked"
    assert api_spot_status(client, spot_id) == "occupied"

    ticket_id = booked.get_json()["ticket_id"]
    out = client.patch(f"/api/checkout/{ticket_id}", headers=headers)
    assert out.status_code == 200
    assert out.get_json()["message"] == "Checked out"
    assert out.get_json()["ticket_id"] == ticket_id
    assert api_spot_status(client, spot_id) == "available"
    [ticket] = tickets_in_db(app)
    assert ticket.check_out is not None


# ---------------------------------------------------------------------------
# POST /api/tickets
# ---------------------------------------------------------------------------


def test_book_a_spot(client, app, driver, vehicle, lot, auth_headers):
    spot_id = lot["spot_ids"][0]
    before = datetime.now(UTC)
    response = book(client, auth_headers(driver), vehicle["id"], spot_id)

    assert response.status_code == 201
    body = response.get_json()
    assert body["message"] == "Spot booked"
    assert isinstance(body["ticket_id"], int)
    [ticket] = tickets_in_db(app)
    assert ticket.id == body["ticket_id"]
    assert ticket.vehicle_id == vehicle["id"]
    assert ticket.spot_id == spot_id
    assert ticket.user_id == driver["id"]
    assert ticket.lot_id == lot["id"]
    assert ticket.check_out is None
    assert ticket.check_in.tzinfo is not None
    assert before - timedelta(seconds=1) <= ticket.check_in <= datetime.now(UTC)
    assert spot_status(app, spot_id) == "occupied"
    assert api_spot_status(client, spot_id) == "occupied"
    # Other spots are untouched.
    assert spot_status(app, lot["spot_ids"][1]) == "available"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"vehicle_id": 1},
        {"parking_spot_id": 1},
        {"vehicle_id": None, "parking_spot_id": 1},
        {"vehicle_id": 1, "parking_spot_id": None},
        {"vehicle_id": 0, "parking_spot_id": 1},
        {"vehicle_id": 1, "parking_spot_id": 0},
    ],
)
def test_book_requires_vehicle_and_spot(client, app, driver, auth_headers, body):
    response = client.post("/api/tickets", json=body, headers=auth_headers(driver))

    assert response.status_code == 400
    assert response.get_json() == {"error": "Vehicle ID and parking spot ID are required"}
    assert ticket_count(app) == 0


def test_book_unknown_spot(client, app, driver, vehicle, auth_headers):
    response = book(client, auth_headers(driver), vehicle["id"], 999_999)

    assert response.status_code == 400
    assert response.get_json() == {"error": "Spot unavailable"}
    assert ticket_count(app) == 0


def test_book_occupied_spot(client, app, driver, other_driver, lot, auth_headers, make_vehicle):
    spot_id = lot["spot_ids"][0]
    mine = make_vehicle(driver, plate="MINE 1")
    theirs = make_vehicle(other_driver, plate="THEIRS 1")
    assert book(client, auth_headers(other_driver), theirs["id"], spot_id).status_code == 201

    response = book(client, auth_headers(driver), mine["id"], spot_id)

    assert response.status_code == 400
    assert response.get_json() == {"error": "Spot unavailable"}
    [ticket] = tickets_in_db(app)
    assert ticket.vehicle_id == theirs["id"]
    assert spot_status(app, spot_id) == "occupied"


def test_book_unknown_vehicle(client, app, driver, lot, auth_headers):
    spot_id = lot["spot_ids"][0]
    response = book(client, auth_headers(driver), 999_999, spot_id)

    assert response.status_code == 400
    assert response.get_json() == {"error": "Vehicle not found"}
    assert ticket_count(app) == 0
    assert spot_status(app, spot_id) == "available"


def test_book_with_another_drivers_vehicle(
    client, app, driver, other_driver, lot, auth_headers, make_vehicle
):
    theirs = make_vehicle(other_driver, plate="THEIRS 1")
    spot_id = lot["spot_ids"][0]

    response = book(client, auth_headers(driver), theirs["id"], spot_id)

    assert response.status_code == 400
    assert response.get_json() == {"error": "Vehicle not found"}
    assert ticket_count(app) == 0
    assert spot_status(app, spot_id) == "available"


def test_book_a_vehicle_that_is_already_parked(client, app, driver, vehicle, lot, auth_headers):
    headers = auth_headers(driver)
    first, second = lot["spot_ids"][:2]
    assert book(client, headers, vehicle["id"], first).status_code == 201

    response = book(client, headers, vehicle["id"], second)

    assert response.status_code == 409
    assert response.get_json() == {"error": "Vehicle already parked"}
    assert [t.spot_id for t in tickets_in_db(app)] == [first]
    assert spot_status(app, second) == "available"
    assert_spots_agree_with_open_tickets(app)


def test_vehicle_can_park_again_after_checkout(client, app, driver, vehicle, lot, auth_headers):
    headers = auth_headers(driver)
    first, second = lot["spot_ids"][:2]
    ticket_id = book(client, headers, vehicle["id"], first).get_json()["ticket_id"]
    assert client.patch(f"/api/checkout/{ticket_id}", headers=headers).status_code == 200

    again = book(client, headers, vehicle["id"], first)
    elsewhere_blocked = book(client, headers, vehicle["id"], second)

    assert again.status_code == 201
    assert elsewhere_blocked.status_code == 409
    assert ticket_count(app) == 2
    assert_spots_agree_with_open_tickets(app)


def test_book_requires_a_token(client, app, vehicle, lot):
    response = client.post(
        "/api/tickets", json={"vehicle_id": vehicle["id"], "parking_spot_id": lot["spot_ids"][0]}
    )

    assert response.status_code == 401
    assert response.get_json() == {"error": "Missing Authorization Header"}
    assert ticket_count(app) == 0


# ---------------------------------------------------------------------------
# GET /api/tickets
# ---------------------------------------------------------------------------


def test_list_tickets_newest_first(client, app, driver, lot, auth_headers, make_vehicle, clock):
    headers = auth_headers(driver)
    first_vehicle = make_vehicle(driver, plate="ONE 1")
    second_vehicle = make_vehicle(driver, plate="TWO 2")
    first = book(client, headers, first_vehicle["id"], lot["spot_ids"][0]).get_json()["ticket_id"]
    clock.advance(minutes=30)
    client.patch(f"/api/checkout/{first}", headers=headers)
    clock.advance(minutes=5)
    second = book(client, headers, second_vehicle["id"], lot["spot_ids"][1]).get_json()["ticket_id"]

    response = client.get("/api/tickets", headers=headers)

    assert response.status_code == 200
    body = response.get_json()
    assert [t["id"] for t in body] == [second, first]
    for ticket in body:
        assert set(ticket) >= {"id", "vehicle_id", "spot_id", "check_in", "check_out"}
    newest, oldest = body
    assert newest["vehicle_id"] == second_vehicle["id"]
    assert newest["spot_id"] == lot["spot_ids"][1]
    assert newest["check_out"] is None
    assert assert_utc_iso(newest["check_in"]) == datetime(2026, 1, 15, 8, 35, tzinfo=UTC)
    assert oldest["vehicle_id"] == first_vehicle["id"]
    assert assert_utc_iso(oldest["check_in"]) == datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
    assert assert_utc_iso(oldest["check_out"]) == datetime(2026, 1, 15, 8, 30, tzinfo=UTC)


def test_list_tickets_shows_only_own_tickets(
    client, driver, other_driver, lot, auth_headers, make_vehicle
):
    mine = make_vehicle(driver, plate="MINE 1")
    theirs = make_vehicle(other_driver, plate="THEIRS 1")
    my_ticket = book(client, auth_headers(driver), mine["id"], lot["spot_ids"][0]).get_json()
    their_ticket = book(
        client, auth_headers(other_driver), theirs["id"], lot["spot_ids"][1]
    ).get_json()

    mine_listed = client.get("/api/tickets", headers=auth_headers(driver)).get_json()
    theirs_listed = client.get("/api/tickets", headers=auth_headers(other_driver)).get_json()

    assert [t["id"] for t in mine_listed] == [my_ticket["ticket_id"]]
    assert [t["id"] for t in theirs_listed] == [their_ticket["ticket_id"]]


def test_admin_list_tickets_shows_own_tickets_by_default(
    client, driver, admin, vehicle, lot, auth_headers
):
    book(client, auth_headers(driver), vehicle["id"], lot["spot_ids"][0])

    response = client.get("/api/tickets", headers=auth_headers(admin))

    assert response.status_code == 200
    assert response.get_json() == []


def test_list_tickets_empty(client, driver, auth_headers):
    response = client.get("/api/tickets", headers=auth_headers(driver))

    assert response.status_code == 200
    assert response.get_json() == []


def test_list_tickets_requires_a_token(client):
    response = client.get("/api/tickets")

    assert response.status_code == 401
    assert response.get_json() == {"error": "Missing Authorization Header"}


def test_timestamps_are_stored_timezone_aware_utc(client, app, driver, vehicle, lot, auth_headers):
    headers = auth_headers(driver)
    ticket_id = book(client, headers, vehicle["id"], lot["spot_ids"][0]).get_json()["ticket_id"]
    client.patch(f"/api/checkout/{ticket_id}", headers=headers)

    [ticket] = tickets_in_db(app)
    assert ticket.check_in.utcoffset().total_seconds() == 0
    assert ticket.check_out.utcoffset().total_seconds() == 0
    assert ticket.check_in <= ticket.check_out
    [listed] = client.get("/api/tickets", headers=headers).get_json()
    assert assert_utc_iso(listed["check_in"]) == ticket.check_in
    assert assert_utc_iso(listed["check_out"]) == ticket.check_out


# ---------------------------------------------------------------------------
# PATCH /api/checkout/<ticket_id>
# ---------------------------------------------------------------------------


@pytest.fixture
def parked(client, driver, vehicle, lot, auth_headers):
    """The driver's vehicle parked on the lot's first spot: the open ticket's id."""
    response = book(client, auth_headers(driver), vehicle["id"], lot["spot_ids"][0])
    assert response.status_code == 201
    return response.get_json()["ticket_id"]


def test_checkout(client, app, driver, lot, parked, auth_headers):
    response = client.patch(f"/api/checkout/{parked}", headers=auth_headers(driver))

    assert response.status_code == 200
    body = response.get_json()
    assert body["message"] == "Checked out"
    assert body["ticket_id"] == parked
    [ticket] = tickets_in_db(app)
    assert ticket.check_out is not None
    assert ticket.check_out >= ticket.check_in
    assert spot_status(app, lot["spot_ids"][0]) == "available"
    assert api_spot_status(client, lot["spot_ids"][0]) == "available"


def test_checkout_unknown_ticket(client, driver, auth_headers):
    response = client.patch("/api/checkout/999999", headers=auth_headers(driver))

    assert response.status_code == 400
    assert response.get_json() == INVALID


def test_checkout_twice(client, app, driver, lot, parked, auth_headers):
    headers = auth_headers(driver)
    assert client.patch(f"/api/checkout/{parked}", headers=headers).status_code == 200
    [closed] = tickets_in_db(app)

    response = client.patch(f"/api/checkout/{parked}", headers=headers)

    assert response.status_code == 400
    assert response.get_json() == INVALID
    [ticket] = tickets_in_db(app)
    assert ticket.check_out == closed.check_out
    assert spot_status(app, lot["spot_ids"][0]) == "available"


def test_checkout_another_drivers_ticket(client, app, other_driver, lot, parked, auth_headers):
    response = client.patch(f"/api/checkout/{parked}", headers=auth_headers(other_driver))

    assert response.status_code == 403
    assert response.get_json() == {"error": "You can only check out your own tickets"}
    [ticket] = tickets_in_db(app)
    assert ticket.check_out is None
    assert spot_status(app, lot["spot_ids"][0]) == "occupied"


def test_admin_may_check_out_any_ticket(client, app, admin, lot, parked, auth_headers):
    response = client.patch(f"/api/checkout/{parked}", headers=auth_headers(admin))

    assert response.status_code == 200
    assert response.get_json()["message"] == "Checked out"
    assert response.get_json()["ticket_id"] == parked
    [ticket] = tickets_in_db(app)
    assert ticket.check_out is not None
    assert spot_status(app, lot["spot_ids"][0]) == "available"


def test_checkout_requires_a_token(client, app, parked):
    response = client.patch(f"/api/checkout/{parked}")

    assert response.status_code == 401
    assert response.get_json() == {"error": "Missing Authorization Header"}
    assert tickets_in_db(app)[0].check_out is None


def test_spot_status_follows_tickets(client, app, driver, lot, auth_headers, make_vehicle):
    headers = auth_headers(driver)
    cars = [make_vehicle(driver, plate=f"CAR {n}") for n in range(3)]
    tickets = [
        book(client, headers, car["id"], spot_id).get_json()["ticket_id"]
        for car, spot_id in zip(cars, lot["spot_ids"], strict=False)
    ]
    assert_spots_agree_with_open_tickets(app)
    client.patch(f"/api/checkout/{tickets[1]}", headers=headers)
    assert_spots_agree_with_open_tickets(app)
    statuses = {s["id"]: s["status"] for s in client.get("/api/spots").get_json()}
    assert [statuses[spot_id] for spot_id in lot["spot_ids"][:3]] == [
        "occupied",
        "available",
        "occupied",
    ]
