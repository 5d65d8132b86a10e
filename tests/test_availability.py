"""GET /api/availability: the live feed per active lot, cacheable, any origin."""

import threading
import time
from datetime import datetime

from conftest import http, postgres_only
from sqlalchemy import text

from models import db


def feed(client, **headers):
    response = client.get("/api/availability", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response


def entry(client, lot_id):
    return next(item for item in feed(client).get_json() if item["lot_id"] == lot_id)


def test_each_active_lot_with_its_counts_and_status(app, client, make_lot, admin, auth_headers):
    open_lot = make_lot(name="Open", spots=3, prefix="O")
    full = make_lot(name="Full", spots=2, prefix="F")
    closed = make_lot(name="Closed", spots=2, prefix="C")
    empty = make_lot(name="Empty", spots=0, prefix="E")
    archived = make_lot(name="Gone", spots=1, prefix="G")
    with app.app_context():
        db.session.execute(
            text(f"UPDATE parking_spots SET status = 'occupied' WHERE lot_id = {full['id']}")
        )
        db.session.execute(
            text(
                f"UPDATE parking_spots SET status = 'out_of_service' WHERE lot_id = {closed['id']}"
            )
        )
        db.session.commit()
    client.delete(f"/api/parking-lots/{archived['id']}", headers=auth_headers(admin))
    items = feed(client).get_json()
    assert [
        (i["name"], i["total"], i["available"], i["reservable_available"], i["status"])
        for i in items
    ] == [
        ("Open", 3, 3, 0, "SPACES_AVAILABLE"),
        ("Full", 2, 0, 0, "FULL"),
        ("Closed", 2, 0, 0, "CLOSED"),
        ("Empty", 0, 0, 0, "CLOSED"),
    ]
    assert [i["lot_id"] for i in items] == [open_lot["id"], full["id"], closed["id"], empty["id"]]
    for item in items:
        assert datetime.fromisoformat(item["updated_at"]).utcoffset().total_seconds() == 0


def test_updated_at_moves_when_the_counts_change(app, client, lot, driver, vehicle, auth_headers):
    before = entry(client, lot["id"])
    time.sleep(0.01)
    booked = client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "parking_spot_id": lot["spot_ids"][0]},
        headers=auth_headers(driver),
    )
    assert booked.status_code == 201
    after = entry(client, lot["id"])
    assert after["available"] == before["available"] - 1
    assert datetime.fromisoformat(after["updated_at"]) > datetime.fromisoformat(
        before["updated_at"]
    )


def test_one_query_whatever_the_number_of_lots(app, client, make_lot, count_queries):
    for n in range(5):
        make_lot(name=f"Lot {n}", spots=3, prefix=f"L{n}-")
    with count_queries() as statements:
        feed(client)
    assert len(statements) == 1, statements


def test_etag_and_304_and_public_caching(app, client, lot, driver, vehicle, auth_headers):
    first = feed(client)
    assert first.headers["Cache-Control"] == "public, max-age=5"
    etag = first.headers["ETag"]
    unchanged = client.get("/api/availability", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.get_data() == b""
    assert unchanged.headers["ETag"] == etag
    assert unchanged.headers["Cache-Control"] == "public, max-age=5"
    client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "parking_spot_id": lot["spot_ids"][0]},
        headers=auth_headers(driver),
    )
    changed = client.get("/api/availability", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    # Every other JSON answer stays uncacheable.
    assert client.get("/api/spots").headers["Cache-Control"] == "no-store"


def test_any_origin_may_read_it_but_not_the_rest_of_the_api(client, lot):
    origin = {"Origin": "https://signage.example"}
    assert feed(client, **origin).headers["Access-Control-Allow-Origin"] == "*"
    other = client.get("/api/spots", headers=origin)
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = client.options(
        "/api/availability",
        headers={**origin, "Access-Control-Request-Method": "GET"},
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"


@postgres_only
def test_counts_stay_within_bounds_while_cars_come_and_go(
    app, live_server, make_lot, make_user, make_vehicle, login
):
    """Eight drivers book and check out at one small lot in a loop while a
    reader polls the feed: every reading is within [0, total]."""
    small = make_lot(name="Busy", spots=3, prefix="B")
    drivers = []
    for n in range(8):
        user = make_user(username=f"busy{n}")
        drivers.append((login(user)["token"], make_vehicle(user, plate=f"KBZ {n}A")["id"]))
    stop = threading.Event()
    readings, problems = [], []

    def come_and_go(token, vehicle_id):
        for _ in range(6):  # bounded
            status, body = http(
                "POST",
                f"{live_server}/api/tickets",
                {"vehicle_id": vehicle_id, "lot_id": small["id"]},
                token,
            )
            if status == 201:
                done, _ = http(
                    "PATCH", f"{live_server}/api/checkout/{body['ticket_id']}", token=token
                )
                if done != 200:
                    problems.append(("checkout", done))
            elif status != 409:
                problems.append(("book", status, body))

    def read():
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            status, body = http("GET", f"{live_server}/api/availability")
            if status != 200:
                problems.append(("feed", status))
                continue
            readings.append(next(i for i in body if i["lot_id"] == small["id"]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    workers = [threading.Thread(target=come_and_go, args=d, daemon=True) for d in drivers]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    stop.set()
    reader.join(30)
    assert not problems, problems[:5]
    assert len(readings) > 10
    assert all(0 <= r["available"] <= r["total"] == 3 for r in readings), readings
    assert {r["status"] for r in readings} <= {"FULL", "SPACES_AVAILABLE"}
    assert any(r["available"] < 3 for r in readings)
    final = http("GET", f"{live_server}/api/availability")[1]
    assert next(i for i in final if i["lot_id"] == small["id"])["available"] == 3


def test_the_feed_narrows_to_one_lot(client, make_lot):
    first, second = make_lot(name="North", spots=2), make_lot(name="South", spots=3)
    answer = client.get(f"/api/availability?lot_id={second['id']}")
    assert answer.status_code == 200
    assert [(e["lot_id"], e["total"]) for e in answer.get_json()] == [(second["id"], 3)]
    assert answer.headers["Cache-Control"] == "public, max-age=5" and answer.headers["ETag"]
    assert client.get("/api/availability?lot_id=9999").get_json() == []
    refused = client.get("/api/availability?lot_id=north")
    assert (refused.status_code, refused.get_json()) == (
        400,
        {"error": "lot_id must be an integer"},
    )
    assert {e["lot_id"] for e in client.get("/api/availability").get_json()} == {
        first["id"],
        second["id"],
    }
