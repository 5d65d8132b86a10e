"""Parking lots and spots: GET|POST /api/parking-lots, GET /api/spots."""

import pytest
from sqlalchemy import func, select

from models import ParkingLot, db

LOT_KEYS = ("id", "name", "location", "spots")
SPOT_KEYS = ("id", "spot_number", "status", "lot")


def lots_in_db(app) -> list[ParkingLot]:
    with app.app_context():
        return list(db.session.scalars(select(ParkingLot).order_by(ParkingLot.id)))


def lot_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(ParkingLot))


def pick(row: dict, keys) -> dict:
    return {key: row[key] for key in keys}


# ---------------------------------------------------------------------------
# POST /api/parking-lots
# ---------------------------------------------------------------------------


def test_admin_creates_a_lot(client, app, admin, auth_headers):
    response = client.post(
        "/api/parking-lots",
        json={"name": "Lot B", "location": "Westlands"},
        headers=auth_headers(admin),
    )

    assert response.status_code == 201
    body = response.get_json()
    assert body["message"] == "Parking lot created"
    assert isinstance(body["lot_id"], int)
    [lot] = lots_in_db(app)
    assert (lot.id, lot.name, lot.location) == (body["lot_id"], "Lot B", "Westlands")


def test_driver_cannot_create_a_lot(client, app, driver, auth_headers):
    response = client.post(
        "/api/parking-lots",
        json={"name": "Lot B", "location": "Westlands"},
        headers=auth_headers(driver),
    )

    assert response.status_code == 403
    assert response.get_json() == {"error": "Admin privileges required"}
    assert lot_count(app) == 0


def test_admin_role_is_read_from_the_database(client, app, driver, auth_headers, runner):
    """A token issued before a promotion works as admin; the row decides, not the token."""
    headers = auth_headers(driver)
    assert runner.invoke(args=["promote", driver["email"]]).exit_code == 0

    response = client.post(
        "/api/parking-lots", json={"name": "Lot B", "location": "Westlands"}, headers=headers
    )

    assert response.status_code == 201
    assert lot_count(app) == 1


def test_create_lot_requires_a_token(client, app):
    response = client.post("/api/parking-lots", json={"name": "Lot B", "location": "Westlands"})

    assert response.status_code == 401
    assert response.get_json() == {"error": "Missing Authorization Header"}
    assert lot_count(app) == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "Lot B"},
        {"location": "Westlands"},
        {"name": "", "location": "Westlands"},
        {"name": "Lot B", "location": ""},
        {"name": "   ", "location": "Westlands"},
        {"name": "Lot B", "location": "   "},
        {"name": None, "location": "Westlands"},
    ],
)
def test_create_lot_requires_name_and_location(client, app, admin, auth_headers, body):
    response = client.post("/api/parking-lots", json=body, headers=auth_headers(admin))

    assert response.status_code == 400
    assert response.get_json() == {"error": "Name and location are required"}
    assert lot_count(app) == 0


def test_created_lot_is_listed_with_no_spots(client, admin, auth_headers):
    headers = auth_headers(admin)
    created = client.post(
        "/api/parking-lots", json={"name": "Lot B", "location": "Westlands"}, headers=headers
    ).get_json()

    listed = client.get("/api/parking-lots", headers=headers).get_json()

    assert [pick(row, LOT_KEYS) for row in listed] == [
        {"id": created["lot_id"], "name": "Lot B", "location": "Westlands", "spots": 0}
    ]


# ---------------------------------------------------------------------------
# GET /api/parking-lots
# ---------------------------------------------------------------------------


def test_list_lots_with_spot_counts(client, driver, auth_headers, make_lot):
    first = make_lot(name="Lot A", location="Nairobi CBD", spots=10, prefix="A")
    second = make_lot(name="Lot B", location="Westlands", spots=3, prefix="B")
    empty = make_lot(name="Lot C", location="Karen", spots=0)

    response = client.get("/api/parking-lots", headers=auth_headers(driver))

    assert response.status_code == 200
    assert [pick(row, LOT_KEYS) for row in response.get_json()] == [
        {"id": first["id"], "name": "Lot A", "location": "Nairobi CBD", "spots": 10},
        {"id": second["id"], "name": "Lot B", "location": "Westlands", "spots": 3},
        {"id": empty["id"], "name": "Lot C", "location": "Karen", "spots": 0},
    ]


def test_spot_count_includes_occupied_spots(client, driver, vehicle, lot, auth_headers):
    headers = auth_headers(driver)
    booked = client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "parking_spot_id": lot["spot_ids"][0]},
        headers=headers,
    )
    assert booked.status_code == 201

    [row] = client.get("/api/parking-lots", headers=headers).get_json()

    assert row["spots"] == 10


def test_list_lots_empty(client, driver, auth_headers):
    response = client.get("/api/parking-lots", headers=auth_headers(driver))

    assert response.status_code == 200
    assert response.get_json() == []


def test_list_lots_requires_a_token(client, lot):
    response = client.get("/api/parking-lots")

    assert response.status_code == 401
    assert response.get_json() == {"error": "Missing Authorization Header"}


# ---------------------------------------------------------------------------
# GET /api/spots
# ---------------------------------------------------------------------------


def test_list_spots_is_public(client, make_lot):
    first = make_lot(name="Lot A", spots=2, prefix="A")
    second = make_lot(name="Lot B", spots=1, prefix="B")

    response = client.get("/api/spots")

    assert response.status_code == 200
    assert [pick(row, SPOT_KEYS) for row in response.get_json()] == [
        {"id": first["spot_ids"][0], "spot_number": "A1", "status": "available", "lot": "Lot A"},
        {"id": first["spot_ids"][1], "spot_number": "A2", "status": "available", "lot": "Lot A"},
        {"id": second["spot_ids"][0], "spot_number": "B1", "status": "available", "lot": "Lot B"},
    ]


def test_list_spots_shows_occupied_status(client, driver, vehicle, lot, auth_headers):
    booked = client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "parking_spot_id": lot["spot_ids"][1]},
        headers=auth_headers(driver),
    )
    assert booked.status_code == 201

    statuses = [row["status"] for row in client.get("/api/spots").get_json()]

    assert statuses == ["available", "occupied"] + ["available"] * 8


def test_list_spots_empty(client):
    response = client.get("/api/spots")

    assert response.status_code == 200
    assert response.get_json() == []
