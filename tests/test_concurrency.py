"""Exclusivity under real concurrency: threads hitting a live server at once.

A barrier releases every client at the same instant; the database (partial
unique indexes and conditional UPDATEs) must let exactly one of them win.
PostgreSQL only: SQLite serialises writers, so it cannot show a race.
"""

from conftest import http, postgres_only, run_at_once
from sqlalchemy import select

from models import ParkingSpot, Ticket, db

pytestmark = postgres_only


def open_tickets(app):
    with app.app_context():
        return list(db.session.scalars(select(Ticket).where(Ticket.check_out.is_(None))))


def assert_spots_agree_with_open_tickets(app):
    with app.app_context():
        occupied = set(db.session.scalars(select(Ticket.spot_id).where(Ticket.check_out.is_(None))))
        for spot in db.session.scalars(select(ParkingSpot)):
            assert spot.status == ("occupied" if spot.id in occupied else "available"), spot.id


def test_twelve_clients_book_the_same_spot(app, live_server, lot, make_user, make_vehicle, login):
    spot_id = lot["spot_ids"][0]
    clients = []
    for n in range(12):
        user = make_user(username=f"racer{n}", email=f"racer{n}@example.com")
        vehicle = make_vehicle(user, plate=f"RACE {n}")
        clients.append((login(user)["token"], vehicle["id"]))

    def booking(token, vehicle_id):
        body = {"vehicle_id": vehicle_id, "parking_spot_id": spot_id}
        return lambda: http("POST", f"{live_server}/api/tickets", body, token)

    results = run_at_once([booking(token, vehicle_id) for token, vehicle_id in clients])

    wins = [body for status, body in results if status == 201]
    losses = [(status, body) for status, body in results if status != 201]
    assert len(wins) == 1, results
    assert wins[0]["message"] == "Spot booked"
    assert losses == [(400, {"error": "Spot unavailable"})] * 11
    [ticket] = open_tickets(app)
    assert ticket.id == wins[0]["ticket_id"]
    assert ticket.spot_id == spot_id
    assert_spots_agree_with_open_tickets(app)


def test_one_vehicle_on_two_spots_at_once(app, live_server, driver, vehicle, lot, login):
    token = login(driver)["token"]

    def booking(spot_id):
        body = {"vehicle_id": vehicle["id"], "parking_spot_id": spot_id}
        return lambda: http("POST", f"{live_server}/api/tickets", body, token)

    results = run_at_once([booking(spot_id) for spot_id in lot["spot_ids"][:2]])

    statuses = sorted(status for status, _ in results)
    assert statuses == [201, 409], results
    assert (409, {"error": "Vehicle already parked"}) in results
    [ticket] = open_tickets(app)
    assert ticket.vehicle_id == vehicle["id"]
    assert_spots_agree_with_open_tickets(app)


def test_one_vehicle_on_many_spots_at_once(app, live_server, driver, vehicle, lot, login):
    token = login(driver)["token"]

    def booking(spot_id):
        body = {"vehicle_id": vehicle["id"], "parking_spot_id": spot_id}
        return lambda: http("POST", f"{live_server}/api/tickets", body, token)

    results = run_at_once([booking(spot_id) for spot_id in lot["spot_ids"][:8]])

    assert [status for status, _ in results].count(201) == 1, results
    assert all(r == (409, {"error": "Vehicle already parked"}) for r in results if r[0] != 201)
    assert len(open_tickets(app)) == 1
    assert_spots_agree_with_open_tickets(app)


def test_eight_concurrent_checkouts_of_one_ticket(app, live_server, driver, vehicle, lot, login):
    token = login(driver)["token"]
    status, booked = http(
        "POST",
        f"{live_server}/api/tickets",
        {"vehicle_id": vehicle["id"], "parking_spot_id": lot["spot_ids"][0]},
        token,
    )
    assert status == 201
    ticket_id = booked["ticket_id"]
    url = f"{live_server}/api/checkout/{ticket_id}"

    results = run_at_once([lambda: http("PATCH", url, token=token)] * 8)

    wins = [body for status, body in results if status == 200]
    assert len(wins) == 1, results
    assert wins[0]["message"] == "Checked out"
    assert wins[0]["ticket_id"] == ticket_id
    assert [r for r in results if r[0] != 200] == [
        (400, {"error": "Invalid ticket or already checked out"})
    ] * 7
    assert open_tickets(app) == []
    with app.app_context():
        ticket = db.session.get(Ticket, ticket_id)
        # Closed once: the stored check-out is the one the single winner reported.
        assert ticket.check_out.isoformat() == wins[0]["check_out"]
    assert_spots_agree_with_open_tickets(app)


def test_concurrent_bookings_of_different_spots_all_succeed(
    app, live_server, lot, make_user, make_vehicle, login
):
    clients = []
    for n in range(8):
        user = make_user(username=f"parker{n}", email=f"parker{n}@example.com")
        vehicle = make_vehicle(user, plate=f"PARK {n}")
        clients.append((login(user)["token"], vehicle["id"], lot["spot_ids"][n]))

    def booking(token, vehicle_id, spot_id):
        body = {"vehicle_id": vehicle_id, "parking_spot_id": spot_id}
        return lambda: http("POST", f"{live_server}/api/tickets", body, token)

    results = run_at_once([booking(*client) for client in clients])

    assert [status for status, _ in results] == [201] * 8, results
    assert len(open_tickets(app)) == 8
    assert_spots_agree_with_open_tickets(app)
