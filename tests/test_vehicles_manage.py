"""PATCH and DELETE /api/vehicles/<id>: owner only; deleting keeps the history."""

import pytest
from sqlalchemy import func, select

from models import Ticket, Vehicle, db


def vehicle_row(app, vehicle_id):
    with app.app_context():
        return db.session.get(Vehicle, vehicle_id)


def book(client, headers, vehicle_id, spot_id):
    response = client.post(
        "/api/tickets", json={"vehicle_id": vehicle_id, "parking_spot_id": spot_id}, headers=headers
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["ticket_id"]


# ---------------------------------------------------------------------------
# PATCH /api/vehicles/<id>
# ---------------------------------------------------------------------------


def test_owner_edits_plate_and_type(app, client, driver, vehicle, auth_headers):
    response = client.patch(
        f"/api/vehicles/{vehicle['id']}",
        json={"plate_number": "  kdd   456b ", "type": "Sedan"},
        headers=auth_headers(driver),
    )
    assert response.status_code == 200
    assert response.get_json() == {
        "id": vehicle["id"],
        "plate_number": "KDD 456B",
        "type": "Sedan",
        "user_id": driver["id"],
    }
    row = vehicle_row(app, vehicle["id"])
    assert (row.plate_number, row.type) == ("KDD 456B", "Sedan")


def test_patch_only_type_keeps_the_plate(app, client, driver, vehicle, auth_headers):
    response = client.patch(
        f"/api/vehicles/{vehicle['id']}", json={"type": "Pickup"}, headers=auth_headers(driver)
    )
    assert response.status_code == 200
    row = vehicle_row(app, vehicle["id"])
    assert (row.plate_number, row.type) == ("KCB 123A", "Pickup")


def test_another_driver_cannot_edit(app, client, other_driver, vehicle, auth_headers):
    response = client.patch(
        f"/api/vehicles/{vehicle['id']}",
        json={"plate_number": "STOLEN 1"},
        headers=auth_headers(other_driver),
    )
    assert response.status_code == 404
    assert response.get_json() == {"error": "Vehicle not found"}
    assert vehicle_row(app, vehicle["id"]).plate_number == "KCB 123A"


def test_patch_unknown_vehicle_is_404(client, driver, auth_headers):
    response = client.patch("/api/vehicles/999", json={"type": "X"}, headers=auth_headers(driver))
    assert response.status_code == 404
    assert response.get_json() == {"error": "Vehicle not found"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"plate_number": ""}, "Plate number is required"),
        ({"plate_number": None}, "Plate number is required"),
        ({"plate_number": 123}, "plate_number must be a string"),
        (
            {"plate_number": "KCB@123"},
            "Plate number may contain only letters, digits, spaces and hyphens",
        ),
        ({"plate_number": "A" * 17}, "plate_number must be at most 16 characters"),
        ({"type": "T" * 33}, "type must be at most 32 characters"),
    ],
)
def test_patch_validation(app, client, driver, vehicle, auth_headers, body, message):
    response = client.patch(
        f"/api/vehicles/{vehicle['id']}", json=body, headers=auth_headers(driver)
    )
    assert response.status_code == 400
    assert response.get_json() == {"error": message}
    row = vehicle_row(app, vehicle["id"])
    assert (row.plate_number, row.type) == ("KCB 123A", "SUV")


def test_duplicate_plate_for_the_same_owner_is_409(app, client, driver, make_vehicle, auth_headers):
    first = make_vehicle(driver, plate="KCA 111A")
    second = make_vehicle(driver, plate="KCA 222B")
    headers = auth_headers(driver)
    response = client.patch(
        f"/api/vehicles/{second['id']}", json={"plate_number": "kca  111a"}, headers=headers
    )
    assert response.status_code == 409
    assert response.get_json() == {"error": "Vehicle already registered"}
    assert vehicle_row(app, second["id"]).plate_number == "KCA 222B"
    created = client.post("/api/vehicles", json={"plate_number": "KCA 111A"}, headers=headers)
    assert created.status_code == 409
    assert created.get_json() == {"error": "Vehicle already registered"}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Vehicle)) == 2
    assert vehicle_row(app, first["id"]).plate_number == "KCA 111A"


def test_same_plate_for_different_owners_is_allowed(client, other_driver, vehicle, auth_headers):
    response = client.post(
        "/api/vehicles",
        json={"plate_number": vehicle["plate_number"]},
        headers=auth_headers(other_driver),
    )
    assert response.status_code == 201


# ---------------------------------------------------------------------------
# DELETE /api/vehicles/<id>
# ---------------------------------------------------------------------------


def test_parked_vehicle_cannot_be_deleted(app, client, driver, lot, vehicle, auth_headers):
    headers = auth_headers(driver)
    book(client, headers, vehicle["id"], lot["spot_ids"][0])
    response = client.delete(f"/api/vehicles/{vehicle['id']}", headers=headers)
    assert response.status_code == 409
    assert response.get_json() == {"error": "Vehicle is parked; check out first"}
    assert vehicle_row(app, vehicle["id"]).deleted_at is None
    assert [v["id"] for v in client.get("/api/vehicles", headers=headers).get_json()] == [
        vehicle["id"]
    ]


def test_delete_hides_the_vehicle_and_keeps_tickets_and_receipts(
    app, client, driver, lot, vehicle, auth_headers
):
    headers = auth_headers(driver)
    ticket_id = book(client, headers, vehicle["id"], lot["spot_ids"][0])
    receipt = client.patch(f"/api/checkout/{ticket_id}", headers=headers).get_json()

    response = client.delete(f"/api/vehicles/{vehicle['id']}", headers=headers)
    assert response.status_code == 200
    assert response.get_json() == {"message": "Vehicle deleted", "vehicle_id": vehicle["id"]}

    row = vehicle_row(app, vehicle["id"])
    assert row is not None and row.deleted_at is not None  # soft delete
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Ticket)) == 1

    listed = client.get("/api/vehicles", headers=headers)
    assert listed.get_json() == []
    assert listed.headers["X-Total-Count"] == "0"
    gone = client.get(f"/api/vehicles/{vehicle['id']}", headers=headers)
    assert gone.status_code == 404
    assert gone.get_json() == {"error": "Vehicle not found"}

    tickets = client.get("/api/tickets", headers=headers).get_json()
    assert [(t["id"], t["vehicle_id"]) for t in tickets] == [(ticket_id, vehicle["id"])]
    one = client.get(f"/api/tickets/{ticket_id}", headers=headers)
    assert one.status_code == 200
    assert one.get_json()["amount_due"] == receipt["amount_due"]
    assert one.get_json()["check_out"] == receipt["check_out"]

    # A deleted vehicle cannot park, be edited or be deleted again.
    rebook = client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "parking_spot_id": lot["spot_ids"][1]},
        headers=headers,
    )
    assert rebook.status_code == 400
    assert rebook.get_json() == {"error": "Vehicle not found"}
    assert (
        client.patch(
            f"/api/vehicles/{vehicle['id']}", json={"type": "X"}, headers=headers
        ).status_code
        == 404
    )
    assert client.delete(f"/api/vehicles/{vehicle['id']}", headers=headers).status_code == 404


def test_deleted_plate_can_be_registered_again(app, client, driver, vehicle, auth_headers):
    headers = auth_headers(driver)
    assert client.delete(f"/api/vehicles/{vehicle['id']}", headers=headers).status_code == 200
    again = client.post("/api/vehicles", json={"plate_number": "KCB 123A"}, headers=headers)
    assert again.status_code == 201
    assert again.get_json()["id"] != vehicle["id"]


def test_another_driver_cannot_delete(app, client, other_driver, vehicle, auth_headers):
    response = client.delete(f"/api/vehicles/{vehicle['id']}", headers=auth_headers(other_driver))
    assert response.status_code == 404
    assert response.get_json() == {"error": "Vehicle not found"}
    assert vehicle_row(app, vehicle["id"]).deleted_at is None


def test_delete_needs_a_token(client, vehicle):
    response = client.delete(f"/api/vehicles/{vehicle['id']}")
    assert response.status_code == 401
    assert response.get_json() == {"error": "Missing Authorization Header"}
