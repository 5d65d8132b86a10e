"""Operator endpoints for lots: create with spots/tariff, list, detail, edit,
archive, and adding spots (POST /api/parking-lots/<id>/spots)."""

import pytest
from sqlalchemy import func, select

from models import ParkingLot, ParkingSpot, Ticket, db

LOT = {"name": "Lot B", "location": "Westlands"}


def count(app, model, *where):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def spot_numbers(app, lot_id):
    with app.app_context():
        return db.session.scalars(
            select(ParkingSpot.spot_number).where(ParkingSpot.lot_id == lot_id)
        ).all()


def create_lot(client, headers, **fields):
    return client.post("/api/parking-lots", json={**LOT, **fields}, headers=headers)


def book(client, headers, vehicle_id, spot_id):
    response = client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle_id, "parking_spot_id": spot_id},
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["ticket_id"]


# ---------------------------------------------------------------------------
# POST /api/parking-lots
# ---------------------------------------------------------------------------


def test_create_lot_with_spots_tariff_timezone_and_currency(app, client, admin, auth_headers):
    response = create_lot(
        client,
        auth_headers(admin),
        spot_count=3,
        spot_prefix="B",
        timezone="Africa/Nairobi",
        currency="usd",
        hourly_rate=250,
        billing_increment_minutes=15,
        grace_minutes=10,
        daily_max=2000,
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["message"] == "Parking lot created"
    lot_id = body["lot_id"]
    assert body["lot"] == {
        "id": lot_id,
        "name": "Lot B",
        "location": "Westlands",
        "spots": 3,
        "available_spots": 3,
        "timezone": "Africa/Nairobi",
        "currency": "USD",
        "tariff": {
            "hourly_rate": 250,
            "billing_increment_minutes": 15,
            "grace_minutes": 10,
            "daily_max": 2000,
        },
        "exit_grace_minutes": 15,
        "reservable_spots": 0,
        "reservations": {
            "max_days": 30,
            "horizon_days": 90,
            "cancel_free_minutes": 60,
            "late_cancel_fee": None,
            "early_minutes": 15,
            "no_show_minutes": 30,
        },
    }
    with app.app_context():
        lot = db.session.get(ParkingLot, lot_id)
        assert (lot.timezone, lot.currency, lot.hourly_rate, lot.daily_max) == (
            "Africa/Nairobi",
            "USD",
            250,
            2000,
        )
        spots = db.session.scalars(
            select(ParkingSpot).where(ParkingSpot.lot_id == lot_id).order_by(ParkingSpot.id)
        ).all()
        assert [(s.spot_number, s.status, s.kind) for s in spots] == [
            ("B1", "available", "standard"),
            ("B2", "available", "standard"),
            ("B3", "available", "standard"),
        ]


def test_create_lot_defaults(app, client, admin, auth_headers):
    response = create_lot(client, auth_headers(admin))
    assert response.status_code == 201
    lot = response.get_json()["lot"]
    assert lot["spots"] == 0
    assert lot["timezone"] == "UTC"
    assert lot["currency"] == app.config["DEFAULT_CURRENCY"] == "KES"
    assert lot["tariff"] == {
        "hourly_rate": 0,
        "billing_increment_minutes": 60,
        "grace_minutes": 0,
        "daily_max": None,
    }
    assert count(app, ParkingSpot) == 0


def test_create_lot_spot_count_bounds(app, client, admin, auth_headers):
    headers = auth_headers(admin)
    zero = create_lot(client, headers, spot_count=0)
    assert zero.status_code == 201
    assert count(app, ParkingSpot, ParkingSpot.lot_id == zero.get_json()["lot_id"]) == 0

    full = create_lot(client, headers, spot_count=2000, spot_prefix="P-")
    assert full.status_code == 201
    assert full.get_json()["lot"]["spots"] == 2000
    numbers = spot_numbers(app, full.get_json()["lot_id"])
    assert len(numbers) == 2000
    assert set(numbers) == {f"P-{n}" for n in range(1, 2001)}

    lots_before = count(app, ParkingLot)
    too_many = create_lot(client, headers, spot_count=2001)
    assert too_many.status_code == 400
    assert too_many.get_json() == {"error": "spot_count must be between 0 and 2000"}
    assert count(app, ParkingLot) == lots_before
    assert count(app, ParkingSpot) == 2000


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"spot_count": -1}, "spot_count must be between 0 and 2000"),
        ({"spot_count": "5"}, "spot_count must be an integer"),
        ({"spot_count": True}, "spot_count must be an integer"),
        ({"spot_count": 2.5}, "spot_count must be an integer"),
        ({"spot_prefix": 7, "spot_count": 1}, "spot_prefix must be a string"),
        ({"spot_prefix": "X" * 17, "spot_count": 1}, "spot_prefix must be at most 16 characters"),
        ({"kind": "bus", "spot_count": 1}, None),
    ],
)
def test_create_lot_refuses_bad_spot_fields(app, client, admin, auth_headers, fields, message):
    response = create_lot(client, auth_headers(admin), **fields)
    assert response.status_code == 400
    if message:
        assert response.get_json() == {"error": message}
    else:
        assert response.get_json()["error"].startswith("kind must be one of:")
    assert count(app, ParkingLot) == 0


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "utc", "America", "../etc/passwd", "Etc/"])
def test_create_lot_refuses_a_bad_timezone(app, client, admin, auth_headers, zone):
    response = create_lot(client, auth_headers(admin), timezone=zone)
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "timezone must be an IANA time zone name, e.g. Africa/Nairobi"
    }
    assert count(app, ParkingLot) == 0


@pytest.mark.parametrize("currency", ["XYZ", "KE", "KESS", "€"])
def test_create_lot_refuses_a_bad_currency(app, client, admin, auth_headers, currency):
    response = create_lot(client, auth_headers(admin), currency=currency)
    assert response.status_code == 400
    assert response.get_json()["error"] in {
        "currency must be an ISO 4217 code, e.g. KES",
        "currency must be at most 3 characters",
    }
    assert count(app, ParkingLot) == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hourly_rate": -1}, "hourly_rate must be between 0 and 10000000"),
        ({"hourly_rate": 10_000_001}, "hourly_rate must be between 0 and 10000000"),
        ({"hourly_rate": "100"}, "hourly_rate must be an integer"),
        ({"hourly_rate": 1.5}, "hourly_rate must be an integer"),
        ({"hourly_rate": None}, "hourly_rate is required"),
        ({"billing_increment_minutes": 0}, "billing_increment_minutes must be between 1 and 1440"),
        ({"grace_minutes": -5}, "grace_minutes must be between 0 and 1440"),
        ({"grace_minutes": False}, "grace_minutes must be an integer"),
        ({"daily_max": -1}, "daily_max must be between 0 and 240000000"),
        ({"daily_max": "lots"}, "daily_max must be an integer"),
    ],
)
def test_create_lot_validates_the_tariff(app, client, admin, auth_headers, fields, message):
    response = create_lot(client, auth_headers(admin), **fields)
    assert response.status_code == 400
    assert response.get_json() == {"error": message}
    assert count(app, ParkingLot) == 0


def test_create_lot_keeps_the_seed_messages(app, client, admin, driver, auth_headers):
    missing = client.post("/api/parking-lots", json={"name": "X"}, headers=auth_headers(admin))
    assert missing.status_code == 400
    assert missing.get_json() == {"error": "Name and location are required"}
    forbidden = create_lot(client, auth_headers(driver), spot_count=5)
    assert forbidden.status_code == 403
    assert forbidden.get_json() == {"error": "Admin privileges required"}
    assert count(app, ParkingLot) == 0
    assert count(app, ParkingSpot) == 0


# ---------------------------------------------------------------------------
# GET /api/parking-lots and /api/parking-lots/<id>
# ---------------------------------------------------------------------------


def test_list_lots_adds_available_spots_and_tariff(
    app, client, driver, make_lot, make_vehicle, auth_headers
):
    lot = make_lot(spots=3, hourly_rate=5000, grace_minutes=5)
    make_lot(name="Empty", spots=0)
    headers = auth_headers(driver)
    book(client, headers, make_vehicle(driver)["id"], lot["spot_ids"][0])
    with app.app_context():
        db.session.get(ParkingSpot, lot["spot_ids"][1]).status = "out_of_service"
        db.session.commit()

    response = client.get("/api/parking-lots", headers=headers)
    assert response.status_code == 200
    first, second = response.get_json()
    assert first["id"] == lot["id"]
    assert (first["name"], first["location"], first["spots"]) == ("Lot A", "Nairobi CBD", 3)
    assert first["available_spots"] == 1
    assert first["tariff"] == {
        "hourly_rate": 5000,
        "billing_increment_minutes": 60,
        "grace_minutes": 5,
        "daily_max": None,
    }
    assert (second["name"], second["spots"], second["available_spots"]) == ("Empty", 0, 0)
    assert response.headers["X-Total-Count"] == "2"


def test_get_lot_counts_by_status_and_kind(
    app, client, driver, make_lot, make_vehicle, auth_headers
):
    lot = make_lot(spots=4)
    ids = lot["spot_ids"]
    with app.app_context():
        db.session.get(ParkingSpot, ids[2]).kind = "ev"
        db.session.get(ParkingSpot, ids[3]).kind = "ev"
        db.session.get(ParkingSpot, ids[3]).status = "out_of_service"
        db.session.commit()
    headers = auth_headers(driver)
    book(client, headers, make_vehicle(driver)["id"], ids[0])

    response = client.get(f"/api/parking-lots/{lot['id']}", headers=headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == lot["id"]
    assert (body["spots"], body["available_spots"]) == (4, 2)
    assert body["counts"] == {"total": 4, "available": 2, "occupied": 1, "out_of_service": 1}
    assert body["kinds"] == {
        "standard": {"total": 2, "available": 1, "occupied": 1, "out_of_service": 0},
        "ev": {"total": 2, "available": 1, "occupied": 0, "out_of_service": 1},
    }


def test_get_lot_unknown_is_404(client, driver, auth_headers):
    response = client.get("/api/parking-lots/999", headers=auth_headers(driver))
    assert response.status_code == 404
    assert response.get_json() == {"error": "Parking lot not found"}


def test_get_lot_needs_a_token(client, lot):
    response = client.get(f"/api/parking-lots/{lot['id']}")
    assert response.status_code == 401
    assert response.get_json() == {"error": "Missing Authorization Header"}


# ---------------------------------------------------------------------------
# PATCH /api/parking-lots/<id>
# ---------------------------------------------------------------------------


def test_patch_lot_edits_fields(app, client, admin, lot, auth_headers):
    response = client.patch(
        f"/api/parking-lots/{lot['id']}",
        json={
            "name": "Lot A (north)",
            "location": "Upper Hill",
            "timezone": "America/New_York",
            "currency": "USD",
            "hourly_rate": 300,
            "billing_increment_minutes": 30,
            "grace_minutes": 15,
            "daily_max": 1800,
        },
        headers=auth_headers(admin),
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["name"], body["location"], body["timezone"], body["currency"]) == (
        "Lot A (north)",
        "Upper Hill",
        "America/New_York",
        "USD",
    )
    assert body["tariff"] == {
        "hourly_rate": 300,
        "billing_increment_minutes": 30,
        "grace_minutes": 15,
        "daily_max": 1800,
    }
    assert (body["spots"], body["available_spots"]) == (10, 10)
    with app.app_context():
        row = db.session.get(ParkingLot, lot["id"])
        assert (row.name, row.timezone, row.hourly_rate, row.daily_max) == (
            "Lot A (north)",
            "America/New_York",
            300,
            1800,
        )


def test_patch_lot_can_remove_the_daily_max(app, client, admin, make_lot, auth_headers):
    lot = make_lot(daily_max=500)
    response = client.patch(
        f"/api/parking-lots/{lot['id']}", json={"daily_max": None}, headers=auth_headers(admin)
    )
    assert response.status_code == 200
    assert response.get_json()["tariff"]["daily_max"] is None
    with app.app_context():
        assert db.session.get(ParkingLot, lot["id"]).daily_max is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "Name and location are required"),
        ({"location": None}, "Name and location are required"),
        (
            {"timezone": "Nowhere/City"},
            "timezone must be an IANA time zone name, e.g. Africa/Nairobi",
        ),
        ({"currency": "ABC"}, "currency must be an ISO 4217 code, e.g. KES"),
        ({"hourly_rate": -3}, "hourly_rate must be between 0 and 10000000"),
    ],
)
def test_patch_lot_refuses_bad_values_and_changes_nothing(
    app, client, admin, lot, auth_headers, fields, message
):
    response = client.patch(
        f"/api/parking-lots/{lot['id']}",
        json={"grace_minutes": 30, **fields},
        headers=auth_headers(admin),
    )
    assert response.status_code == 400
    assert response.get_json() == {"error": message}
    with app.app_context():
        row = db.session.get(ParkingLot, lot["id"])
        assert (row.name, row.location, row.timezone, row.currency, row.grace_minutes) == (
            "Lot A",
            "Nairobi CBD",
            "UTC",
            "KES",
            0,
        )


def test_patch_lot_is_admin_only(app, client, driver, lot, auth_headers):
    response = client.patch(
        f"/api/parking-lots/{lot['id']}", json={"name": "Mine"}, headers=auth_headers(driver)
    )
    assert response.status_code == 403
    assert response.get_json() == {"error": "Admin privileges required"}
    with app.app_context():
        assert db.session.get(ParkingLot, lot["id"]).name == "Lot A"


def test_patch_unknown_lot_is_404(client, admin, auth_headers):
    response = client.patch(
        "/api/parking-lots/999", json={"name": "X"}, headers=auth_headers(admin)
    )
    assert response.status_code == 404
    assert response.get_json() == {"error": "Parking lot not found"}


def test_patch_lot_currency_is_fixed_once_it_has_tickets(
    app, client, admin, driver, lot, vehicle, auth_headers
):
    book(client, auth_headers(driver), vehicle["id"], lot["spot_ids"][0])
    response = client.patch(
        f"/api/parking-lots/{lot['id']}", json={"currency": "USD"}, headers=auth_headers(admin)
    )
    assert response.status_code == 409
    assert response.get_json() == {"error": "Currency cannot change once the lot has tickets"}
    with app.app_context():
        assert db.session.get(ParkingLot, lot["id"]).currency == "KES"


# ---------------------------------------------------------------------------
# DELETE /api/parking-lots/<id> (archive)
# ---------------------------------------------------------------------------


def test_archive_refused_while_a_ticket_is_open(
    app, client, admin, driver, lot, vehicle, auth_headers
):
    book(client, auth_headers(driver), vehicle["id"], lot["spot_ids"][0])
    response = client.delete(f"/api/parking-lots/{lot['id']}", headers=auth_headers(admin))
    assert response.status_code == 409
    assert response.get_json() == {"error": "Parking lot has open tickets; check them out first"}
    with app.app_context():
        assert db.session.get(ParkingLot, lot["id"]).archived_at is None
    # Nothing was half-done: the free spots are still bookable.
    assert count(app, ParkingSpot, ParkingSpot.status == "available") == 9
    assert count(app, ParkingSpot, ParkingSpot.status == "out_of_service") == 0


def test_archive_hides_the_lot_but_keeps_its_history(
    app, client, admin, driver, make_lot, make_vehicle, auth_headers
):
    lot = make_lot(spots=3)
    other = make_lot(name="Lot Z", spots=2, prefix="Z")
    headers = auth_headers(driver)
    car = make_vehicle(driver)
    ticket_id = book(client, headers, car["id"], lot["spot_ids"][0])
    assert client.patch(f"/api/checkout/{ticket_id}", headers=headers).status_code == 200

    response = client.delete(f"/api/parking-lots/{lot['id']}", headers=auth_headers(admin))
    assert response.status_code == 200
    assert response.get_json() == {"message": "Parking lot archived", "lot_id": lot["id"]}
    with app.app_context():
        assert db.session.get(ParkingLot, lot["id"]).archived_at is not None
        assert count(app, Ticket) == 1  # history kept

    lots = client.get("/api/parking-lots", headers=headers)
    assert [row["id"] for row in lots.get_json()] == [other["id"]]
    assert lots.headers["X-Total-Count"] == "1"
    detail = client.get(f"/api/parking-lots/{lot['id']}", headers=headers)
    assert detail.status_code == 404
    assert detail.get_json() == {"error": "Parking lot not found"}

    spots = client.get("/api/spots")
    assert {row["lot_id"] for row in spots.get_json()} == {other["id"]}
    assert spots.headers["X-Total-Count"] == "2"
    assert client.get(f"/api/spots/{lot['spot_ids'][1]}").status_code == 404
    filtered = client.get(f"/api/spots?lot_id={lot['id']}")
    assert filtered.get_json() == []

    by_spot = client.post(
        "/api/tickets",
        json={"vehicle_id": car["id"], "parking_spot_id": lot["spot_ids"][1]},
        headers=headers,
    )
    assert by_spot.status_code == 400
    assert by_spot.get_json() == {"error": "Spot unavailable"}
    by_lot = client.post(
        "/api/tickets", json={"vehicle_id": car["id"], "lot_id": lot["id"]}, headers=headers
    )
    assert by_lot.status_code == 404
    assert by_lot.get_json() == {"error": "Parking lot not found"}
    assert count(app, Ticket) == 1

    history = client.get("/api/tickets", headers=headers).get_json()
    assert [(t["id"], t["lot"], t["spot_number"]) for t in history] == [(ticket_id, "Lot A", "A1")]
    one = client.get(f"/api/tickets/{ticket_id}", headers=headers)
    assert one.status_code == 200
    assert (one.get_json()["lot_id"], one.get_json()["status"]) == (lot["id"], "closed")

    again = client.delete(f"/api/parking-lots/{lot['id']}", headers=auth_headers(admin))
    assert again.status_code == 404
    assert again.get_json() == {"error": "Parking lot not found"}
    add = client.post(
        f"/api/parking-lots/{lot['id']}/spots",
        json={"spot_number": "A9"},
        headers=auth_headers(admin),
    )
    assert add.status_code == 404


def test_archive_is_admin_only(app, client, driver, lot, auth_headers):
    response = client.delete(f"/api/parking-lots/{lot['id']}", headers=auth_headers(driver))
    assert response.status_code == 403
    assert response.get_json() == {"error": "Admin privileges required"}
    with app.app_context():
        assert db.session.get(ParkingLot, lot["id"]).archived_at is None


# ---------------------------------------------------------------------------
# POST /api/parking-lots/<id>/spots
# ---------------------------------------------------------------------------


def test_add_one_spot_with_a_kind(app, client, admin, lot, auth_headers):
    response = client.post(
        f"/api/parking-lots/{lot['id']}/spots",
        json={"spot_number": "EV1", "kind": "ev"},
        headers=auth_headers(admin),
    )
    assert response.status_code == 201
    [spot] = response.get_json()
    assert {k: spot[k] for k in ("spot_number", "status", "lot", "lot_id", "kind")} == {
        "spot_number": "EV1",
        "status": "available",
        "lot": "Lot A",
        "lot_id": lot["id"],
        "kind": "ev",
    }
    with app.app_context():
        row = db.session.get(ParkingSpot, spot["id"])
        assert (row.lot_id, row.spot_number, row.kind) == (lot["id"], "EV1", "ev")


def test_add_one_spot_defaults_to_standard(client, admin, lot, auth_headers):
    response = client.post(
        f"/api/parking-lots/{lot['id']}/spots",
        json={"spot_number": "B1"},
        headers=auth_headers(admin),
    )
    assert response.status_code == 201
    assert response.get_json()[0]["kind"] == "standard"


def test_add_a_batch_of_spots(app, client, admin, lot, auth_headers):
    response = client.post(
        f"/api/parking-lots/{lot['id']}/spots",
        json={"count": 3, "prefix": "M", "kind": "motorcycle"},
        headers=auth_headers(admin),
    )
    assert response.status_code == 201
    body = response.get_json()
    assert [(s["spot_number"], s["kind"], s["status"]) for s in body] == [
        ("M1", "motorcycle", "available"),
        ("M2", "motorcycle", "available"),
        ("M3", "motorcycle", "available"),
    ]
    assert count(app, ParkingSpot, ParkingSpot.lot_id == lot["id"]) == 13
    assert count(app, ParkingSpot, ParkingSpot.kind == "motorcycle") == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Give spot_number, or count (and prefix) for a batch"),
        ({"count": 0, "prefix": "C"}, "count must be between 1 and 2000"),
        ({"count": 2001, "prefix": "C"}, "count must be between 1 and 2000"),
        ({"count": "3"}, "count must be an integer"),
        ({"spot_number": 12}, "spot_number must be a string"),
        ({"spot_number": "S" * 33}, "spot_number must be at most 32 characters"),
        ({"spot_number": "B1", "kind": "bus"}, None),
    ],
)
def test_add_spots_validation(app, client, admin, lot, auth_headers, body, message):
    response = client.post(
        f"/api/parking-lots/{lot['id']}/spots", json=body, headers=auth_headers(admin)
    )
    assert response.status_code == 400
    if message:
        assert response.get_json() == {"error": message}
    else:
        assert response.get_json()["error"].startswith("kind must be one of:")
    assert count(app, ParkingSpot) == 10


def test_add_spots_is_admin_only_and_needs_a_lot(app, client, admin, driver, lot, auth_headers):
    forbidden = client.post(
        f"/api/parking-lots/{lot['id']}/spots",
        json={"spot_number": "B1"},
        headers=auth_headers(driver),
    )
    assert forbidden.status_code == 403
    assert forbidden.get_json() == {"error": "Admin privileges required"}
    unknown = client.post(
        "/api/parking-lots/999/spots", json={"spot_number": "B1"}, headers=auth_headers(admin)
    )
    assert unknown.status_code == 404
    assert unknown.get_json() == {"error": "Parking lot not found"}
    assert count(app, ParkingSpot) == 10


def test_duplicate_spot_number_is_409_and_creates_nothing(app, client, admin, lot, auth_headers):
    response = client.post(
        f"/api/parking-lots/{lot['id']}/spots",
        json={"spot_number": "A3"},
        headers=auth_headers(admin),
    )
    assert response.status_code == 409
    assert response.get_json() == {"error": "Spot number already exists in this lot"}
    assert count(app, ParkingSpot) == 10
    assert spot_numbers(app, lot["id"]).count("A3") == 1


def test_batch_with_a_duplicate_creates_nothing(app, client, admin, lot, auth_headers):
    # A1..A12 collides with the existing A1..A10: not even A11 and A12 are created.
    response = client.post(
        f"/api/parking-lots/{lot['id']}/spots",
        json={"count": 12, "prefix": "A"},
        headers=auth_headers(admin),
    )
    assert response.status_code == 409
    assert response.get_json() == {"error": "Spot number already exists in this lot"}
    assert count(app, ParkingSpot) == 10
    assert "A11" not in spot_numbers(app, lot["id"])


def test_same_spot_number_in_another_lot_is_fine(client, admin, make_lot, auth_headers):
    make_lot(spots=2)
    other = make_lot(name="Lot B", spots=0)
    response = client.post(
        f"/api/parking-lots/{other['id']}/spots",
        json={"spot_number": "A1"},
        headers=auth_headers(admin),
    )
    assert response.status_code == 201
