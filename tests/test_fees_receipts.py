"""Tariffs frozen on tickets, quotes, receipts at checkout, GET /api/tickets/<id>.

Time is controlled with the `clock` fixture (starts 2026-01-15 08:00 UTC).
"""

import pytest

from models import ParkingSpot, Ticket, db

RATE = 10000  # KES 100.00 per hour


def book(client, headers, vehicle_id, spot_id):
    response = client.post(
        "/api/tickets", json={"vehicle_id": vehicle_id, "parking_spot_id": spot_id}, headers=headers
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["ticket_id"]


def checkout(client, headers, ticket_id):
    response = client.patch(f"/api/checkout/{ticket_id}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def ticket_row(app, ticket_id):
    with app.app_context():
        return db.session.get(Ticket, ticket_id)


# ---------------------------------------------------------------------------
# The tariff is frozen at check-in
# ---------------------------------------------------------------------------


def test_price_change_never_reaches_a_parked_driver(
    app, client, clock, admin, driver, make_lot, make_vehicle, auth_headers
):
    lot = make_lot(spots=2, hourly_rate=RATE)
    headers = auth_headers(driver)
    ticket_id = book(client, headers, make_vehicle(driver)["id"], lot["spot_ids"][0])

    clock.advance(minutes=30)
    raised = client.patch(
        f"/api/parking-lots/{lot['id']}",
        json={"hourly_rate": 50000, "daily_max": 1000},
        headers=auth_headers(admin),
    )
    assert raised.status_code == 200
    assert raised.get_json()["tariff"]["hourly_rate"] == 50000

    clock.advance(minutes=60)  # 90 minutes parked: two started hours
    owed = client.get(f"/api/tickets/{ticket_id}", headers=headers).get_json()
    assert owed["amount_due"] == 2 * RATE
    assert owed["tariff"] == {
        "hourly_rate": RATE,
        "billing_increment_minutes": 60,
        "grace_minutes": 0,
        "daily_max": None,
    }
    receipt = checkout(client, headers, ticket_id)
    assert receipt["amount_due"] == 2 * RATE
    row = ticket_row(app, ticket_id)
    assert (row.hourly_rate, row.daily_max, row.amount_due) == (RATE, None, 2 * RATE)

    # A ticket opened after the change pays the new price (capped by the new daily_max).
    other = make_vehicle(driver, plate="KDA 1B")
    new_ticket = book(client, headers, other["id"], lot["spot_ids"][1])
    clock.advance(minutes=90)
    assert checkout(client, headers, new_ticket)["amount_due"] == 1000
    assert ticket_row(app, new_ticket).hourly_rate == 50000


def test_booking_response_shows_the_frozen_tariff(
    client, clock, driver, make_lot, vehicle, auth_headers
):
    lot = make_lot(hourly_rate=RATE, billing_increment_minutes=15, grace_minutes=5, daily_max=90000)
    response = client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "parking_spot_id": lot["spot_ids"][0]},
        headers=auth_headers(driver),
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["check_in"] == "2026-01-15T08:00:00+00:00"
    assert body["currency"] == "KES"
    assert body["tariff"] == {
        "hourly_rate": RATE,
        "billing_increment_minutes": 15,
        "grace_minutes": 5,
        "daily_max": 90000,
    }


# ---------------------------------------------------------------------------
# GET /api/parking-lots/<id>/quote
# ---------------------------------------------------------------------------


def test_quote_for_a_planned_stay(client, driver, make_lot, auth_headers):
    lot = make_lot(hourly_rate=RATE, billing_increment_minutes=30, currency="USD")
    response = client.get(
        f"/api/parking-lots/{lot['id']}/quote?minutes=90", headers=auth_headers(driver)
    )
    assert response.status_code == 200
    body = response.get_json()
    assert {k: body[k] for k in ("minutes", "amount", "currency")} == {
        "minutes": 90,
        "amount": 15000,
        "currency": "USD",
    }
    assert body["breakdown"] == [
        {"period": "remainder", "minutes": 90, "increments": 3, "capped": False, "amount": 15000}
    ]


def test_quote_over_days_with_a_cap(client, driver, make_lot, auth_headers):
    lot = make_lot(hourly_rate=RATE, daily_max=150000)
    response = client.get(
        f"/api/parking-lots/{lot['id']}/quote?minutes={2 * 1440 + 61}", headers=auth_headers(driver)
    )
    body = response.get_json()
    assert body["amount"] == 2 * 150000 + 2 * RATE
    assert body["breakdown"][0]["days"] == 2
    assert body["breakdown"][0]["capped"] is True


def test_quote_inside_grace_is_free(client, driver, make_lot, auth_headers):
    lot = make_lot(hourly_rate=RATE, grace_minutes=10)
    headers = auth_headers(driver)
    assert (
        client.get(f"/api/parking-lots/{lot['id']}/quote?minutes=10", headers=headers).get_json()[
            "amount"
        ]
        == 0
    )
    assert (
        client.get(f"/api/parking-lots/{lot['id']}/quote?minutes=11", headers=headers).get_json()[
            "amount"
        ]
        == RATE
    )
    assert (
        client.get(f"/api/parking-lots/{lot['id']}/quote?minutes=0", headers=headers).get_json()[
            "amount"
        ]
        == 0
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "minutes is required"),
        ("?minutes=", "minutes is required"),
        ("?minutes=abc", "minutes must be an integer"),
        ("?minutes=1.5", "minutes must be an integer"),
        ("?minutes=-1", "minutes must be between 0 and 527040"),
        ("?minutes=527041", "minutes must be between 0 and 527040"),
    ],
)
def test_quote_validates_minutes(client, driver, lot, auth_headers, query, message):
    response = client.get(
        f"/api/parking-lots/{lot['id']}/quote{query}", headers=auth_headers(driver)
    )
    assert response.status_code == 400
    assert response.get_json() == {"error": message}


def test_quote_needs_a_token_and_a_lot(client, driver, auth_headers, lot):
    anonymous = client.get(f"/api/parking-lots/{lot['id']}/quote?minutes=60")
    assert anonymous.status_code == 401
    assert anonymous.get_json() == {"error": "Missing Authorization Header"}
    unknown = client.get("/api/parking-lots/999/quote?minutes=60", headers=auth_headers(driver))
    assert unknown.status_code == 404
    assert unknown.get_json() == {"error": "Parking lot not found"}


# ---------------------------------------------------------------------------
# PATCH /api/checkout/<id>: the receipt
# ---------------------------------------------------------------------------


def test_checkout_returns_a_receipt(app, client, clock, driver, make_lot, vehicle, auth_headers):
    lot = make_lot(name="Lot R", hourly_rate=RATE, prefix="R")
    headers = auth_headers(driver)
    ticket_id = book(client, headers, vehicle["id"], lot["spot_ids"][2])
    clock.advance(hours=2, minutes=30)
    receipt = checkout(client, headers, ticket_id)
    assert {
        k: receipt[k]
        for k in (
            "message",
            "ticket_id",
            "check_in",
            "check_out",
            "duration_minutes",
            "amount_due",
            "currency",
            "lot",
            "spot_number",
        )
    } == {
        "message": "Checked out",
        "ticket_id": ticket_id,
        "check_in": "2026-01-15T08:00:00+00:00",
        "check_out": "2026-01-15T10:30:00+00:00",
        "duration_minutes": 150,
        "amount_due": 3 * RATE,
        "currency": "KES",
        "lot": "Lot R",
        "spot_number": "R3",
    }
    assert isinstance(receipt["amount_due"], int)
    with app.app_context():
        row = db.session.get(Ticket, ticket_id)
        assert (row.amount_due, row.duration_minutes) == (3 * RATE, 150)
        assert row.check_out.isoformat() == "2026-01-15T10:30:00+00:00"
        assert db.session.get(ParkingSpot, lot["spot_ids"][2]).status == "available"


def test_checkout_exactly_at_grace_is_free(
    app, client, clock, driver, make_lot, vehicle, auth_headers
):
    lot = make_lot(hourly_rate=RATE, grace_minutes=10)
    headers = auth_headers(driver)
    ticket_id = book(client, headers, vehicle["id"], lot["spot_ids"][0])
    clock.advance(minutes=10)
    receipt = checkout(client, headers, ticket_id)
    assert (receipt["amount_due"], receipt["duration_minutes"]) == (0, 10)
    assert ticket_row(app, ticket_id).amount_due == 0


def test_checkout_one_second_past_grace_pays(
    app, client, clock, driver, make_lot, vehicle, auth_headers
):
    lot = make_lot(hourly_rate=RATE, grace_minutes=10)
    headers = auth_headers(driver)
    ticket_id = book(client, headers, vehicle["id"], lot["spot_ids"][0])
    clock.advance(minutes=10, seconds=1)
    assert checkout(client, headers, ticket_id)["amount_due"] == RATE


def test_checkout_one_second_past_an_increment(
    app, client, clock, driver, make_lot, vehicle, auth_headers
):
    lot = make_lot(hourly_rate=RATE, billing_increment_minutes=15)
    headers = auth_headers(driver)
    ticket_id = book(client, headers, vehicle["id"], lot["spot_ids"][0])
    clock.advance(minutes=15, seconds=1)
    receipt = checkout(client, headers, ticket_id)
    assert receipt["amount_due"] == 2 * RATE // 4
    assert receipt["duration_minutes"] == 16  # started minutes, as the breakdown bills them
    assert ticket_row(app, ticket_id).amount_due == 5000


def test_checkout_exactly_24_hours_and_24_hours_plus_a_minute(
    client, clock, driver, make_lot, make_vehicle, auth_headers
):
    lot = make_lot(hourly_rate=RATE, daily_max=150000)
    headers = auth_headers(driver)
    first = book(client, headers, make_vehicle(driver)["id"], lot["spot_ids"][0])
    second = book(client, headers, make_vehicle(driver, plate="KDB 2")["id"], lot["spot_ids"][1])
    clock.advance(hours=24)
    exact = checkout(client, headers, first)
    assert (exact["amount_due"], exact["duration_minutes"]) == (150000, 1440)
    clock.advance(minutes=1)
    assert checkout(client, headers, second)["amount_due"] == 150000 + RATE


def test_checkout_after_thirty_days(client, clock, driver, make_lot, vehicle, auth_headers):
    lot = make_lot(hourly_rate=RATE, daily_max=150000)
    headers = auth_headers(driver)
    ticket_id = book(client, headers, vehicle["id"], lot["spot_ids"][0])
    clock.advance(days=30)
    receipt = checkout(client, headers, ticket_id)
    assert (receipt["amount_due"], receipt["duration_minutes"]) == (30 * 150000, 30 * 1440)


# ---------------------------------------------------------------------------
# GET /api/tickets/<id>
# ---------------------------------------------------------------------------


def test_open_ticket_shows_amount_owed_so_far(
    client, clock, driver, make_lot, vehicle, auth_headers
):
    lot = make_lot(hourly_rate=RATE)
    headers = auth_headers(driver)
    ticket_id = book(client, headers, vehicle["id"], lot["spot_ids"][0])

    def current():
        response = client.get(f"/api/tickets/{ticket_id}", headers=headers)
        assert response.status_code == 200
        return response.get_json()

    start = current()
    assert (start["status"], start["check_out"], start["amount_due"]) == ("open", None, 0)
    clock.advance(minutes=61)
    later = current()
    assert later["amount_due"] == 2 * RATE
    assert later["duration_minutes"] == 61
    assert {
        k: later[k] for k in ("id", "vehicle_id", "spot_id", "lot_id", "lot", "spot_number")
    } == {
        "id": ticket_id,
        "vehicle_id": vehicle["id"],
        "spot_id": lot["spot_ids"][0],
        "lot_id": lot["id"],
        "lot": "Lot A",
        "spot_number": "A1",
    }
    assert later["currency"] == "KES"
    assert later["check_in"] == "2026-01-15T08:00:00+00:00"


def test_closed_ticket_keeps_its_final_amount(
    client, clock, driver, make_lot, vehicle, auth_headers
):
    lot = make_lot(hourly_rate=RATE)
    headers = auth_headers(driver)
    ticket_id = book(client, headers, vehicle["id"], lot["spot_ids"][0])
    clock.advance(minutes=45)
    checkout(client, headers, ticket_id)
    clock.advance(hours=5)
    body = client.get(f"/api/tickets/{ticket_id}", headers=headers).get_json()
    assert (body["status"], body["amount_due"], body["duration_minutes"]) == ("closed", RATE, 45)
    assert body["check_out"] == "2026-01-15T08:45:00+00:00"


def test_ticket_is_visible_to_owner_and_admin_only(
    client, clock, driver, other_driver, admin, lot, vehicle, auth_headers
):
    ticket_id = book(client, auth_headers(driver), vehicle["id"], lot["spot_ids"][0])
    stranger = client.get(f"/api/tickets/{ticket_id}", headers=auth_headers(other_driver))
    assert stranger.status_code == 404
    assert stranger.get_json() == {"error": "Ticket not found"}
    boss = client.get(f"/api/tickets/{ticket_id}", headers=auth_headers(admin))
    assert boss.status_code == 200
    assert boss.get_json()["user_id"] == driver["id"]


def test_unknown_ticket_is_404_and_needs_a_token(client, driver, auth_headers):
    unknown = client.get("/api/tickets/999", headers=auth_headers(driver))
    assert unknown.status_code == 404
    assert unknown.get_json() == {"error": "Ticket not found"}
    anonymous = client.get("/api/tickets/1")
    assert anonymous.status_code == 401
    assert anonymous.get_json() == {"error": "Missing Authorization Header"}
