"""Vehicles: GET /api/vehicles and POST /api/vehicles."""

import pytest
from sqlalchemy import func, select

from models import Vehicle, db


def vehicles_in_db(app) -> list[Vehicle]:
    with app.app_context():
        return list(db.session.scalars(select(Vehicle).order_by(Vehicle.id)))


def vehicle_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Vehicle))


# ---------------------------------------------------------------------------
# POST /api/vehicles
# ---------------------------------------------------------------------------


def test_create_vehicle(client, app, driver, auth_headers):
    response = client.post(
        "/api/vehicles",
        json={"plate_number": "KCB 123A", "type": "SUV"},
        headers=auth_headers(driver),
    )

    assert response.status_code == 201
    body = response.get_json()
    assert isinstance(body["id"], int)
    assert body["plate_number"] == "KCB 123A"
    assert body["type"] == "SUV"
    assert body["user_id"] == driver["id"]
    [vehicle] = vehicles_in_db(app)
    assert (vehicle.id, vehicle.plate_number, vehicle.type, vehicle.user_id) == (
        body["id"],
        "KCB 123A",
        "SUV",
        driver["id"],
    )


def test_vehicle_type_is_optional(client, app, driver, auth_headers):
    response = client.post(
        "/api/vehicles", json={"plate_number": "KDA 1"}, headers=auth_headers(driver)
    )

    assert response.status_code == 201
    assert response.get_json()["type"] is None
    assert vehicles_in_db(app)[0].type is None


@pytest.mark.parametrize(
    "body",
    [{}, {"plate_number": ""}, {"plate_number": "   "}, {"plate_number": None}, {"type": "SUV"}],
)
def test_create_vehicle_requires_plate_number(client, app, driver, auth_headers, body):
    response = client.post("/api/vehicles", json=body, headers=auth_headers(driver))

    assert response.status_code == 400
    assert response.get_json() == {"error": "Plate number is required"}
    assert vehicle_count(app) == 0


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("kcb 123a", "KCB 123A"),
        ("  kcb   123a  ", "KCB 123A"),
        ("Kcb\t123a", "KCB 123A"),
        ("kcb-12", "KCB-12"),
    ],
)
def test_plate_is_stored_upper_case_with_whitespace_collapsed(
    client, app, driver, auth_headers, given, stored
):
    response = client.post(
        "/api/vehicles", json={"plate_number": given}, headers=auth_headers(driver)
    )

    assert response.status_code == 201
    assert response.get_json()["plate_number"] == stored
    [vehicle] = vehicles_in_db(app)
    assert vehicle.plate_number == stored


def test_same_plate_twice_for_one_driver_is_refused(client, app, driver, auth_headers):
    headers = auth_headers(driver)
    first = client.post("/api/vehicles", json={"plate_number": "KCB 123A"}, headers=headers)
    again = client.post("/api/vehicles", json={"plate_number": "kcb  123a"}, headers=headers)

    assert first.status_code == 201
    assert again.status_code == 409
    assert again.get_json() == {"error": "Vehicle already registered"}
    assert vehicle_count(app) == 1


@pytest.mark.parametrize("plate", ["KCB/123", "KCB_1", "<script>", "KCB;1"])
def test_plate_with_odd_characters_is_refused(client, app, driver, auth_headers, plate):
    response = client.post(
        "/api/vehicles", json={"plate_number": plate}, headers=auth_headers(driver)
    )

    assert response.status_code == 400
    assert response.get_json() == {
        "error": "Plate number may contain only letters, digits, spaces and hyphens"
    }
    assert vehicle_count(app) == 0


def test_user_id_in_body_is_ignored(client, app, driver, other_driver, auth_headers):
    response = client.post(
        "/api/vehicles",
        json={"plate_number": "KCB 1", "user_id": other_driver["id"]},
        headers=auth_headers(driver),
    )

    assert response.status_code == 201
    assert response.get_json()["user_id"] == driver["id"]
    assert vehicles_in_db(app)[0].user_id == driver["id"]


def test_create_vehicle_requires_a_token(client, app):
    response = client.post("/api/vehicles", json={"plate_number": "KCB 1"})

    assert response.status_code == 401
    assert response.get_json() == {"error": "Missing Authorization Header"}
    assert vehicle_count(app) == 0


# ---------------------------------------------------------------------------
# GET /api/vehicles
# ---------------------------------------------------------------------------


def test_list_vehicles(client, driver, auth_headers, make_vehicle):
    first = make_vehicle(driver, plate="KCB 1", type="SUV")
    second = make_vehicle(driver, plate="KCB 2", type=None)

    response = client.get("/api/vehicles", headers=auth_headers(driver))

    assert response.status_code == 200
    body = response.get_json()
    assert [{key: v[key] for key in ("id", "plate_number", "type", "user_id")} for v in body] == [
        {"id": first["id"], "plate_number": "KCB 1", "type": "SUV", "user_id": driver["id"]},
        {"id": second["id"], "plate_number": "KCB 2", "type": None, "user_id": driver["id"]},
    ]


def test_list_vehicles_empty(client, driver, auth_headers):
    response = client.get("/api/vehicles", headers=auth_headers(driver))

    assert response.status_code == 200
    assert response.get_json() == []


def test_driver_sees_only_own_vehicles(client, driver, other_driver, auth_headers, make_vehicle):
    mine = make_vehicle(driver, plate="MINE 1")
    theirs = make_vehicle(other_driver, plate="THEIRS 1")

    mine_listed = client.get("/api/vehicles", headers=auth_headers(driver)).get_json()
    theirs_listed = client.get("/api/vehicles", headers=auth_headers(other_driver)).get_json()

    assert [v["id"] for v in mine_listed] == [mine["id"]]
    assert [v["id"] for v in theirs_listed] == [theirs["id"]]


def test_vehicle_created_through_api_is_listed(client, driver, auth_headers):
    headers = auth_headers(driver)
    created = client.post("/api/vehicles", json={"plate_number": "kbz 9"}, headers=headers)
    listed = client.get("/api/vehicles", headers=headers)

    assert listed.get_json() == [created.get_json()]


def test_list_vehicles_requires_a_token(client):
    response = client.get("/api/vehicles")

    assert response.status_code == 401
    assert response.get_json() == {"error": "Missing Authorization Header"}
