"""POST /api/tickets with {vehicle_id, lot_id, kind?}: the server picks the spot."""

import pytest
from conftest import http, postgres_only, run_at_once
from sqlalchemy import func, select

from models import ParkingSpot, Ticket, db


def set_spot(app, spot_id, **fields):
    with app.app_context():
        spot = db.session.get(ParkingSpot, spot_id)
        for name, value in fields.items():
            setattr(spot, name, value)
        db.session.commit()


def open_tickets(app):
    with app.app_context():
        return db.session.execute(
            select(Ticket.vehicle_id, Ticket.spot_id).where(Ticket.check_out.is_(None))
        ).all()


def test_booking_by_lot_assigns_a_free_spot(app, client, driver, make_lot, vehicle, auth_headers):
    lot = make_lot(spots=3, hourly_rate=5000)
    set_spot(app, lot["spot_ids"][0], status="out_of_service")
    response = client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "lot_id": lot["id"]},
        headers=auth_headers(driver),
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["message"] == "Spot booked"
    assert body["spot_id"] == lot["spot_ids"][1]
    assert body["spot_number"] == "A2"
    assert body["lot"] == "Lot A"
    assert body["lot_id"] == lot["id"]
    assert body["tariff"]["hourly_rate"] == 5000
    with app.app_context():
        ticket = db.session.get(Ticket, body["ticket_id"])
        assert (ticket.spot_id, ticket.vehicle_id, ticket.lot_id, ticket.user_id) == (
            lot["spot_ids"][1],
            vehicle["id"],
            lot["id"],
            driver["id"],
        )
        assert ticket.hourly_rate == 5000
        assert db.session.get(ParkingSpot, lot["spot_ids"][1]).status == "occupied"
    spot = client.get(f"/api/spots/{body['spot_id']}").get_json()
    assert spot["status"] == "occupied"


def test_booking_by_lot_and_kind(app, client, driver, make_lot, vehicle, auth_headers):
    lot = make_lot(spots=4)
    set_spot(app, lot["spot_ids"][2], kind="ev")
    response = client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "lot_id": lot["id"], "kind": "ev"},
        headers=auth_headers(driver),
    )
    assert response.status_code == 201
    assert (response.get_json()["spot_id"], response.get_json()["spot_number"]) == (
        lot["spot_ids"][2],
        "A3",
    )
    assert open_tickets(app) == [(vehicle["id"], lot["spot_ids"][2])]


def test_kind_with_no_free_spot_is_409(app, client, driver, make_lot, vehicle, auth_headers):
    lot = make_lot(spots=3)
    response = client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "lot_id": lot["id"], "kind": "accessible"},
        headers=auth_headers(driver),
    )
    assert response.status_code == 409
    assert response.get_json() == {"error": "No spots available"}
    assert open_tickets(app) == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(ParkingSpot.status != "available")) == 0


def test_full_lot_is_409_no_spots_available(
    app, client, driver, other_driver, make_lot, make_vehicle, auth_headers
):
    lot = make_lot(spots=1)
    first = client.post(
        "/api/tickets",
        json={"vehicle_id": make_vehicle(driver)["id"], "lot_id": lot["id"]},
        headers=auth_headers(driver),
    )
    assert first.status_code == 201
    second = client.post(
        "/api/tickets",
        json={"vehicle_id": make_vehicle(other_driver)["id"], "lot_id": lot["id"]},
        headers=auth_headers(other_driver),
    )
    assert second.status_code == 409
    assert second.get_json() == {"error": "No spots available"}
    assert len(open_tickets(app)) == 1


def test_unknown_or_archived_lot_is_404(
    app, client, admin, driver, make_lot, vehicle, auth_headers
):
    headers = auth_headers(driver)
    unknown = client.post(
        "/api/tickets", json={"vehicle_id": vehicle["id"], "lot_id": 999}, headers=headers
    )
    assert unknown.status_code == 404
    assert unknown.get_json() == {"error": "Parking lot not found"}
    lot = make_lot(spots=2)
    archived = client.delete(f"/api/parking-lots/{lot['id']}", headers=auth_headers(admin))
    assert archived.status_code == 200
    response = client.post(
        "/api/tickets", json={"vehicle_id": vehicle["id"], "lot_id": lot["id"]}, headers=headers
    )
    assert response.status_code == 404
    assert response.get_json() == {"error": "Parking lot not found"}
    assert open_tickets(app) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"lot_id": "1"}, "lot_id must be an integer"),
        ({"lot_id": True}, "lot_id must be an integer"),
        ({"lot_id": -4}, "lot_id must be between 1 and 2147483647"),
        ({"lot_id": 1, "kind": "bus"}, None),
        ({}, "Vehicle ID and parking spot ID are required"),
    ],
)
def test_booking_by_lot_validation(app, client, driver, lot, vehicle, auth_headers, body, message):
    response = client.post(
        "/api/tickets", json={"vehicle_id": vehicle["id"], **body}, headers=auth_headers(driver)
    )
    assert response.status_code == 400
    if message:
        assert response.get_json() == {"error": message}
    else:
        assert response.get_json()["error"].startswith("kind must be one of:")
    assert open_tickets(app) == []


def test_booking_by_lot_checks_the_vehicle(
    app, client, driver, other_driver, lot, make_vehicle, auth_headers
):
    stranger_car = make_vehicle(other_driver)
    response = client.post(
        "/api/tickets",
        json={"vehicle_id": stranger_car["id"], "lot_id": lot["id"]},
        headers=auth_headers(driver),
    )
    assert response.status_code == 400
    assert response.get_json() == {"error": "Vehicle not found"}
    assert open_tickets(app) == []


def test_parked_vehicle_cannot_get_a_second_spot(app, client, driver, lot, vehicle, auth_headers):
    headers = auth_headers(driver)
    body = {"vehicle_id": vehicle["id"], "lot_id": lot["id"]}
    assert client.post("/api/tickets", json=body, headers=headers).status_code == 201
    again = client.post("/api/tickets", json=body, headers=headers)
    assert again.status_code == 409
    assert again.get_json() == {"error": "Vehicle already parked"}
    assert len(open_tickets(app)) == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(ParkingSpot.status == "occupied")) == 1


def test_checked_out_spot_is_assigned_again(client, driver, make_lot, vehicle, auth_headers):
    lot = make_lot(spots=1)
    headers = auth_headers(driver)
    body = {"vehicle_id": vehicle["id"], "lot_id": lot["id"]}
    first = client.post("/api/tickets", json=body, headers=headers).get_json()
    assert client.patch(f"/api/checkout/{first['ticket_id']}", headers=headers).status_code == 200
    second = client.post("/api/tickets", json=body, headers=headers)
    assert second.status_code == 201
    assert second.get_json()["spot_id"] == lot["spot_ids"][0]


@postgres_only
def test_twenty_drivers_race_for_ten_spots(
    app, live_server, make_lot, make_user, make_vehicle, login
):
    lot = make_lot(spots=12)
    # Ten free spots: one out of service, one of another kind that must not be given.
    set_spot(app, lot["spot_ids"][0], status="out_of_service")
    set_spot(app, lot["spot_ids"][1], kind="ev")
    drivers = []
    for n in range(20):
        user = make_user(username=f"racer{n}")
        car = make_vehicle(user, plate=f"KRC {n}")
        drivers.append((login(user)["token"], car["id"]))

    def arrive(token, vehicle_id):
        body = {"vehicle_id": vehicle_id, "lot_id": lot["id"], "kind": "standard"}
        return lambda: http("POST", f"{live_server}/api/tickets", body, token=token)

    results = run_at_once([arrive(token, car) for token, car in drivers])

    statuses = [status for status, _ in results]
    assert all(status < 500 for status in statuses), results
    booked = [body for status, body in results if status == 201]
    refused = [body for status, body in results if status == 409]
    assert len(booked) == 10, results
    assert len(refused) == 10, results
    assert all(body == {"error": "No spots available"} for body in refused)
    free_ids = set(lot["spot_ids"][2:])
    assert {body["spot_id"] for body in booked} == free_ids

    with app.app_context():
        rows = open_tickets(app)
        assert len(rows) == 10
        assert {spot for _, spot in rows} == free_ids
        assert {body["ticket_id"] for body in booked} == set(
            db.session.scalars(select(Ticket.id).where(Ticket.check_out.is_(None)))
        )
        statuses = dict(
            db.session.execute(
                select(ParkingSpot.id, ParkingSpot.status).where(ParkingSpot.lot_id == lot["id"])
            ).all()
        )
    assert {sid for sid, status in statuses.items() if status == "occupied"} == free_ids
    assert statuses[lot["spot_ids"][0]] == "out_of_service"
    assert statuses[lot["spot_ids"][1]] == "available"
