"""parking_lots.spots_total / spots_available, kept by triggers (migration 0003).

The lot list reads them instead of counting spots, so they must follow every
way a spot changes: through the API, straight SQL, and concurrent bookings.
(The `app` fixture also checks them after every test of the suite.)
"""

from conftest import http, lot_counter_mismatches, postgres_only, run_at_once
from sqlalchemy import select, text

from models import ParkingLot, db


def counters(app, lot_id):
    with app.app_context():
        row = db.session.execute(
            select(ParkingLot.spots_total, ParkingLot.spots_available).where(
                ParkingLot.id == lot_id
            )
        ).one()
        return tuple(row)


def listed(client, headers, lot_id):
    body = client.get("/api/parking-lots", headers=headers).get_json()
    row = next(row for row in body if row["id"] == lot_id)
    return row["spots"], row["available_spots"]


def test_counters_follow_every_api_change(app, client, admin, driver, vehicle, auth_headers):
    boss, own = auth_headers(admin), auth_headers(driver)
    created = client.post(
        "/api/parking-lots",
        json={"name": "Counted", "location": "Westlands", "spot_count": 4},
        headers=boss,
    ).get_json()
    lot_id = created["lot_id"]
    assert counters(app, lot_id) == (4, 4)
    assert listed(client, own, lot_id) == (4, 4)

    added = client.post(
        f"/api/parking-lots/{lot_id}/spots", json={"count": 2, "prefix": "B"}, headers=boss
    )
    assert added.status_code == 201, added.get_json()
    assert counters(app, lot_id) == (6, 6)

    spots = client.get(f"/api/spots?lot_id={lot_id}").get_json()
    first, second = spots[0]["id"], spots[1]["id"]
    booked = client.post(
        "/api/tickets", json={"vehicle_id": vehicle["id"], "parking_spot_id": first}, headers=own
    )
    assert booked.status_code == 201
    assert counters(app, lot_id) == (6, 5)
    assert listed(client, own, lot_id) == (6, 5)

    out = client.patch(f"/api/spots/{second}", json={"status": "out_of_service"}, headers=boss)
    assert out.status_code == 200, out.get_json()
    assert counters(app, lot_id) == (6, 4)

    ticket_id = booked.get_json()["ticket_id"]
    assert client.patch(f"/api/checkout/{ticket_id}", headers=own).status_code == 200
    assert counters(app, lot_id) == (6, 5)

    auto = client.post(
        "/api/tickets", json={"vehicle_id": vehicle["id"], "lot_id": lot_id}, headers=own
    )
    assert auto.status_code == 201
    assert counters(app, lot_id) == (6, 4)
    ticket_id = auto.get_json()["ticket_id"]
    assert client.patch(f"/api/checkout/{ticket_id}", headers=own).status_code == 200

    back = client.patch(f"/api/spots/{second}", json={"status": "available"}, headers=boss)
    assert back.status_code == 200
    assert counters(app, lot_id) == (6, 6)

    # Archiving takes every free spot out of service.
    assert client.delete(f"/api/parking-lots/{lot_id}", headers=boss).status_code == 200
    assert counters(app, lot_id) == (6, 0)


def test_refused_changes_leave_the_counters_alone(app, client, admin, lot, auth_headers):
    boss = auth_headers(admin)
    duplicate = client.post(
        f"/api/parking-lots/{lot['id']}/spots", json={"count": 3, "prefix": "A"}, headers=boss
    )
    assert duplicate.status_code == 409  # A1..A3 exist: nothing is created
    assert counters(app, lot["id"]) == (10, 10)


def test_counters_follow_plain_sql_too(app, make_lot):
    """The triggers live in the database: writes that bypass the app count as well."""
    lot = make_lot(spots=3)
    other = make_lot(name="Lot B", spots=1, prefix="B")
    first, second, third = lot["spot_ids"]
    statements = [
        ("UPDATE parking_spots SET status = 'occupied' WHERE id = :id", {"id": first}, (3, 2)),
        # occupied -> out of service: still not available, no change
        (
            "UPDATE parking_spots SET status = 'out_of_service' WHERE id = :id",
            {"id": first},
            (3, 2),
        ),
        ("UPDATE parking_spots SET spot_number = 'X9' WHERE id = :id", {"id": second}, (3, 2)),
        ("DELETE FROM parking_spots WHERE id = :id", {"id": third}, (2, 1)),
        (
            "INSERT INTO parking_spots (lot_id, spot_number, status, kind) "
            "VALUES (:lot, 'A7', 'available', 'ev')",
            {"lot": lot["id"]},
            (3, 2),
        ),
        (
            "UPDATE parking_spots SET lot_id = :lot WHERE id = :id",
            {"lot": other["id"], "id": second},
            (2, 1),
        ),
    ]
    for statement, params, expected in statements:
        with app.app_context(), db.engine.begin() as conn:
            conn.execute(text(statement), params)
        assert counters(app, lot["id"]) == expected, statement
    assert counters(app, other["id"]) == (2, 2)
    with app.app_context():
        assert lot_counter_mismatches() == []


def test_a_rolled_back_change_is_not_counted(app, make_lot):
    lot = make_lot(spots=2)
    with app.app_context():
        with db.engine.connect() as conn:
            transaction = conn.begin()
            conn.execute(
                text("UPDATE parking_spots SET status = 'occupied' WHERE lot_id = :lot"),
                {"lot": lot["id"]},
            )
            transaction.rollback()
    assert counters(app, lot["id"]) == (2, 2)


@postgres_only
def test_counters_stay_exact_under_concurrent_arrivals_and_departures(
    app, live_server, make_user, make_vehicle, make_lot, login
):
    """16 drivers arrive at once at a lot with 8 free spots (auto-assigned), then
    the 8 who got a spot leave at once while 8 more arrive: no deadlock, no
    error, and the counters equal the spots' statuses after each wave."""
    lot = make_lot(spots=8)
    drivers = []
    for n in range(16):
        user = make_user(username=f"racer{n}")
        car = make_vehicle(user, plate=f"KCR {n:03d}")
        drivers.append((login(user)["token"], car["id"]))

    def arrive(token, vehicle_id):
        return lambda: http(
            "POST",
            f"{live_server}/api/tickets",
            {"vehicle_id": vehicle_id, "lot_id": lot["id"]},
            token,
        )

    first = run_at_once([arrive(token, car) for token, car in drivers])
    statuses = sorted(status for status, _ in first)
    assert statuses == [201] * 8 + [409] * 8, first
    assert all(body == {"error": "No spots available"} for status, body in first if status == 409)
    assert counters(app, lot["id"]) == (8, 0)

    parked = [
        (token, body["ticket_id"])
        for (token, _), (status, body) in zip(drivers, first, strict=True)
        if status == 201
    ]
    waiting = [
        (token, car)
        for (token, car), (status, _) in zip(drivers, first, strict=True)
        if status == 409
    ]
    leave = [
        (
            lambda token=token, ticket=ticket: http(
                "PATCH", f"{live_server}/api/checkout/{ticket}", None, token
            )
        )
        for token, ticket in parked
    ]
    second = run_at_once(leave + [arrive(token, car) for token, car in waiting])
    assert all(status == 200 for status, _ in second[:8]), second[:8]
    assert all(status in (201, 409) for status, _ in second[8:]), second[8:]
    booked = sum(status == 201 for status, _ in second[8:])
    assert counters(app, lot["id"]) == (8, 8 - booked)
    with app.app_context():
        assert lot_counter_mismatches() == []


def test_lot_list_pages_count_in_one_statement(
    app, client, driver, make_lot, auth_headers, count_queries
):
    """The lot list's page carries its total (count(*) OVER ()): a full page
    needs no second statement, and a page past the end still knows the total."""
    for n in range(5):
        make_lot(name=f"Lot {n}", spots=n, prefix=f"L{n}-")
    headers = auth_headers(driver)
    with count_queries() as statements:
        full = client.get("/api/parking-lots?per_page=2&page=2", headers=headers)
    assert full.status_code == 200
    assert [row["name"] for row in full.get_json()] == ["Lot 2", "Lot 3"]
    assert [row["spots"] for row in full.get_json()] == [2, 3]
    assert full.headers["X-Total-Count"] == "5"
    assert 'per_page=2&page=3>; rel="next"' in full.headers["Link"]
    assert len(statements) == 2  # the token check and the page
    beyond = client.get("/api/parking-lots?per_page=2&page=9", headers=headers)
    assert beyond.get_json() == []
    assert beyond.headers["X-Total-Count"] == "5"
    assert 'per_page=2&page=3>; rel="last"' in beyond.headers["Link"]
