"""The gate: staff and devices, sessions by plate, payments, permits, checks.

Every rule of the gate issue with its message, and the database state after.
Concurrency (two entries, two exits, ten payments, two gates at a nearly
full lot) is in tests/test_gate_concurrency.py.
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from conftest import postgres_only
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from models import AuditEntry, Device, ParkingSpot, Payment, Ticket, User, Vehicle, db

RATE = 12_000  # KES 120.00 an hour


@dataclass
class Gate:
    lot: int
    other: int
    spots: list
    admin: dict
    attendant: dict
    attendant_id: int
    stranger: dict
    device: dict
    device_id: int
    other_device: dict
    revoked: dict
    wrong: dict


def device_headers(key: str) -> dict:
    return {"Authorization": f"Device {key}"}


@pytest.fixture
def gate(app, client, clock, admin, make_user, make_lot, auth_headers):
    lot = make_lot(name="Gate lot", spots=3, prefix="G", hourly_rate=RATE, grace_minutes=10)
    other = make_lot(name="Other lot", spots=2, prefix="O", hourly_rate=RATE)
    admin_h = auth_headers(admin)
    attendant = make_user(username="attendant", role="attendant")
    stranger = make_user(username="stranger", role="attendant")
    for lot_id, user in ((lot["id"], attendant), (other["id"], stranger)):
        response = client.put(f"/api/parking-lots/{lot_id}/staff/{user['id']}", headers=admin_h)
        assert response.status_code == 200, response.get_json()

    def new_device(lot_id, name):
        response = client.post(
            f"/api/parking-lots/{lot_id}/devices", json={"name": name}, headers=admin_h
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    device = new_device(lot["id"], "North barrier")
    other_device = new_device(other["id"], "Other barrier")
    revoked = new_device(lot["id"], "Old camera")
    gone = client.delete(f"/api/parking-lots/{lot['id']}/devices/{revoked['id']}", headers=admin_h)
    assert gone.status_code == 200
    return Gate(
        lot=lot["id"],
        other=other["id"],
        spots=lot["spot_ids"],
        admin=admin_h,
        attendant=auth_headers(attendant),
        attendant_id=attendant["id"],
        stranger=auth_headers(stranger),
        device=device_headers(device["key"]),
        device_id=device["id"],
        other_device=device_headers(other_device["key"]),
        revoked=device_headers(revoked["key"]),
        wrong=device_headers("dk_" + "x" * 43),
    )


def enter(client, gate, plate, headers=None, **extra):
    return client.post(
        f"/api/parking-lots/{gate.lot}/entries",
        json={"plate_number": plate, **extra},
        headers=headers or gate.device,
    )


def leave(client, gate, plate, headers=None):
    return client.post(
        f"/api/parking-lots/{gate.lot}/exits",
        json={"plate_number": plate},
        headers=headers or gate.device,
    )


def pay(client, ticket_id, headers, amount, method="cash", **extra):
    return client.post(
        f"/api/tickets/{ticket_id}/payments",
        json={"amount": amount, "method": method, **extra},
        headers=headers,
    )


def ticket(app, ticket_id) -> Ticket:
    with app.app_context():
        return db.session.get(Ticket, ticket_id)


def audit_actions(app) -> list[tuple]:
    with app.app_context():
        return db.session.execute(
            select(
                AuditEntry.action, AuditEntry.actor_type, AuditEntry.lot_id, AuditEntry.amount
            ).order_by(AuditEntry.id)
        ).all()


# ===========================================================================
# Roles, staff and devices
# ===========================================================================


def test_promote_gives_a_staff_role(app, runner, driver):
    result = runner.invoke(args=["promote", driver["email"], "--role", "attendant"])

    assert result.exit_code == 0, result.output
    assert "now an attendant" in result.output
    with app.app_context():
        assert db.session.get(User, driver["id"]).role == "attendant"
    assert runner.invoke(args=["promote", driver["email"], "--role", "king"]).exit_code != 0


def test_admins_list_users_by_role_with_paging(client, gate, driver):
    response = client.get("/api/users?role=attendant", headers=gate.admin)

    assert response.status_code == 200
    assert [u["username"] for u in response.get_json()] == ["attendant", "stranger"]
    assert response.headers["X-Total-Count"] == "2"
    everyone = client.get("/api/users?per_page=2", headers=gate.admin)
    assert len(everyone.get_json()) == 2 and everyone.headers["X-Total-Count"] == "4"
    assert client.get("/api/users?role=pilot", headers=gate.admin).status_code == 400


def test_an_admin_changes_a_role_and_it_is_audited(app, client, gate, driver):
    response = client.patch(
        f"/api/users/{driver['id']}", json={"role": "attendant"}, headers=gate.admin
    )

    assert response.status_code == 200
    assert response.get_json()["role"] == "attendant"
    with app.app_context():
        assert db.session.get(User, driver["id"]).role == "attendant"
    assert ("user.role", "user", None, None) in audit_actions(app)
    assert client.patch(f"/api/users/{driver['id']}", json={}, headers=gate.admin).get_json() == {
        "error": "role is required"
    }
    missing = client.patch("/api/users/9999", json={"role": "driver"}, headers=gate.admin)
    assert (missing.status_code, missing.get_json()) == (404, {"error": "User not found"})


def test_the_last_admin_cannot_be_demoted(app, client, gate, admin, make_user, auth_headers):
    response = client.patch(
        f"/api/users/{admin['id']}", json={"role": "driver"}, headers=gate.admin
    )

    assert response.status_code == 409
    assert response.get_json() == {"error": "Cannot demote the last admin"}
    with app.app_context():
        assert db.session.get(User, admin["id"]).role == "admin"
    second = make_user(username="second", role="admin")
    demoted = client.patch(
        f"/api/users/{admin['id']}", json={"role": "driver"}, headers=auth_headers(second)
    )
    assert demoted.status_code == 200


def test_staff_assignments_are_listed_and_undone(app, client, gate, driver):
    staff = client.get(f"/api/parking-lots/{gate.lot}/staff", headers=gate.admin)
    assert [m["username"] for m in staff.get_json()] == ["attendant"]
    again = client.put(
        f"/api/parking-lots/{gate.lot}/staff/{gate.attendant_id}", headers=gate.admin
    )
    assert again.status_code == 200  # assigning twice is harmless
    not_staff = client.put(f"/api/parking-lots/{gate.lot}/staff/{driver['id']}", headers=gate.admin)
    assert (not_staff.status_code, not_staff.get_json()) == (
        409,
        {"error": "Only attendants can be assigned to a lot"},
    )

    removed = client.delete(
        f"/api/parking-lots/{gate.lot}/staff/{gate.attendant_id}", headers=gate.admin
    )

    assert removed.status_code == 200
    assert client.get(f"/api/parking-lots/{gate.lot}/staff", headers=gate.admin).get_json() == []
    refused = enter(client, gate, "KAA 100A", headers=gate.attendant)
    assert (refused.status_code, refused.get_json()) == (403, {"error": "Not assigned to this lot"})
    twice = client.delete(
        f"/api/parking-lots/{gate.lot}/staff/{gate.attendant_id}", headers=gate.admin
    )
    assert twice.get_json() == {"error": "Attendant not assigned to this lot"}


def test_device_keys_are_shown_once_and_stored_as_a_hash(app, client, gate):
    listed = client.get(f"/api/parking-lots/{gate.lot}/devices", headers=gate.admin).get_json()

    assert [d["name"] for d in listed] == ["North barrier", "Old camera"]
    assert all("key" not in d for d in listed)
    assert listed[1]["revoked_at"] is not None
    key = gate.device["Authorization"].removeprefix("Device ")
    with app.app_context():
        device = db.session.get(Device, gate.device_id)
        assert device.key_hash == hashlib.sha256(key.encode()).hexdigest()
        stored = db.session.execute(text("SELECT * FROM devices")).all()
    assert not any(key in str(row) for row in stored)


def test_a_device_may_use_only_its_own_lots_gate(client, gate, lot):
    # Its own lot's gate: yes.
    assert enter(client, gate, "KAB 100A").status_code == 201
    # Another lot's gate: no.
    other = client.post(
        f"/api/parking-lots/{gate.other}/entries",
        json={"plate_number": "KAB 101A"},
        headers=gate.device,
    )
    assert (other.status_code, other.get_json()) == (403, {"error": "Not assigned to this lot"})
    # Anything else, public routes and bearer routes included: 403.
    for method, path in (
        ("GET", "/api/spots"),
        ("GET", "/api/me"),
        ("GET", f"/api/parking-lots/{gate.lot}"),
        ("POST", "/api/parking-lots"),
        ("GET", "/api/users"),
        ("GET", f"/api/parking-lots/{gate.lot}/devices"),
        ("GET", "/api/test-db"),
    ):
        response = client.open(path, method=method, json={}, headers=gate.device)
        assert response.status_code == 403, (path, response.get_json())
        assert response.get_json() == {
            "error": "Devices may only use the gate endpoints of their lot"
        }


def test_revoked_and_wrong_keys_are_401_everywhere(client, gate):
    for headers, message in (
        (gate.revoked, "Device key has been revoked"),
        (gate.wrong, "Invalid device key"),
    ):
        for method, path in (
            ("POST", f"/api/parking-lots/{gate.lot}/entries"),
            ("GET", f"/api/parking-lots/{gate.lot}/check?plate=KAA1"),
            ("GET", "/api/spots"),
            ("GET", "/api/me"),
        ):
            response = client.open(
                path, method=method, json={"plate_number": "KAA 1"}, headers=headers
            )
            assert (response.status_code, response.get_json()) == (401, {"error": message}), path


# ===========================================================================
# Sessions by plate: entries
# ===========================================================================


def test_an_unregistered_plate_gets_an_unowned_ticket(app, client, gate, clock):
    response = enter(client, gate, "kdd-123d")

    assert response.status_code == 201
    body = response.get_json()
    assert body["plate_number"] == "KDD-123D"  # as first seen, normalised
    assert body["user_id"] is None and body["spot_number"] == "G1"
    assert body["check_in"] == "2026-01-15T08:00:00+00:00"
    assert body["tariff"]["hourly_rate"] == RATE
    row = ticket(app, body["ticket_id"])
    assert row.user_id is None and row.plate_key == "KDD123D" and row.check_out is None
    with app.app_context():
        vehicle = db.session.get(Vehicle, row.vehicle_id)
        assert vehicle.user_id is None and vehicle.plate_number == "KDD-123D"
        assert db.session.get(ParkingSpot, gate.spots[0]).status == "occupied"
    assert audit_actions(app)[-1] == ("entry", "device", gate.lot, None)


def test_a_plate_one_driver_registered_is_that_drivers_ticket(
    app, client, gate, driver, make_vehicle, auth_headers
):
    make_vehicle(driver, plate="KCB 123A")

    response = enter(client, gate, "kcb123a", headers=gate.attendant)

    assert response.status_code == 201
    body = response.get_json()
    assert body["user_id"] == driver["id"] and body["plate_number"] == "KCB 123A"
    mine = client.get("/api/tickets", headers=auth_headers(driver)).get_json()
    assert [t["id"] for t in mine] == [body["ticket_id"]]
    # ...and the driver can check out in the app as before.
    out = client.patch(f"/api/checkout/{body['ticket_id']}", headers=auth_headers(driver))
    assert out.status_code == 200


def test_a_plate_several_accounts_claim_is_unowned(
    client, gate, driver, other_driver, make_vehicle
):
    make_vehicle(driver, plate="KCC 555C")
    make_vehicle(other_driver, plate="KCC-555C")

    body = enter(client, gate, "KCC 555C").get_json()

    assert body["user_id"] is None


def test_one_open_session_per_car_whichever_way_in(
    client, gate, driver, make_vehicle, auth_headers
):
    car = make_vehicle(driver, plate="KCD 777D")
    assert enter(client, gate, "KCD 777D").status_code == 201

    twice = enter(client, gate, "kcd-777d")
    app_booking = client.post(
        "/api/tickets",
        json={"vehicle_id": car["id"], "parking_spot_id": gate.spots[2]},
        headers=auth_headers(driver),
    )
    other_lot = client.post(
        f"/api/parking-lots/{gate.other}/entries",
        json={"plate_number": "KCD777D"},
        headers=gate.other_device,
    )

    for response in (twice, app_booking, other_lot):
        assert (response.status_code, response.get_json()) == (
            409,
            {"error": "Vehicle already parked"},
        )


def test_a_full_lot_is_409_and_a_chosen_spot_is_used(client, gate):
    assert enter(client, gate, "KFA 1", spot_id=gate.spots[2]).get_json()["spot_number"] == "G3"
    assert enter(client, gate, "KFA 2").status_code == 201
    assert enter(client, gate, "KFA 3").status_code == 201

    full = enter(client, gate, "KFA 4")

    assert (full.status_code, full.get_json()) == (409, {"error": "No spots available"})
    taken = enter(client, gate, "KFA 5", spot_id=gate.spots[0])
    assert (taken.status_code, taken.get_json()) == (400, {"error": "Spot unavailable"})


def test_an_entry_with_another_lots_spot_or_at_an_archived_lot_is_refused(client, gate, make_lot):
    elsewhere = make_lot(name="Elsewhere", spots=1, prefix="E")["spot_ids"][0]
    assert enter(client, gate, "KFB 1", spot_id=elsewhere).get_json() == {
        "error": "Spot unavailable"
    }
    assert client.delete(f"/api/parking-lots/{gate.lot}", headers=gate.admin).status_code == 200
    archived = enter(client, gate, "KFB 2", headers=gate.admin)
    assert (archived.status_code, archived.get_json()) == (404, {"error": "Parking lot not found"})


# ===========================================================================
# Exits, payments and the balance
# ===========================================================================


def test_an_unpaid_stay_is_402_and_stays_open(app, client, gate, clock):
    ticket_id = enter(client, gate, "KEA 1").get_json()["ticket_id"]
    clock.advance(minutes=90)

    response = leave(client, gate, "KEA 1")

    assert response.status_code == 402
    assert response.get_json() == {
        "error": "Payment required",
        "ticket_id": ticket_id,
        "amount_due": 2 * RATE,
        "amount_paid": 0,
        "balance": 2 * RATE,
        "currency": "KES",
    }
    assert ticket(app, ticket_id).check_out is None


def test_a_stay_within_grace_leaves_free(app, client, gate, clock):
    ticket_id = enter(client, gate, "KEB 1").get_json()["ticket_id"]
    clock.advance(minutes=9)

    response = leave(client, gate, "KEB 1", headers=gate.attendant)

    assert response.status_code == 200
    body = response.get_json()
    assert body["gate"] == "open" and body["balance"] == 0 and body["amount_due"] == 0
    assert body["ticket_id"] == ticket_id and body["plate_number"] == "KEB 1"
    row = ticket(app, ticket_id)
    assert row.check_out == datetime(2026, 1, 15, 8, 9, tzinfo=UTC) and row.amount_due == 0
    with app.app_context():
        assert db.session.get(ParkingSpot, row.spot_id).status == "available"


def test_paying_fixes_the_fee_and_the_exit_grace_follows(app, client, gate, clock):
    ticket_id = enter(client, gate, "KEC 1").get_json()["ticket_id"]
    clock.advance(minutes=50)
    paid = pay(client, ticket_id, gate.device, RATE, method="card", reference="PS-1")
    assert paid.status_code == 201
    assert paid.get_json()["ticket"] == {"amount_due": RATE, "amount_paid": RATE, "balance": 0}
    assert ticket(app, ticket_id).paid_until == datetime(2026, 1, 15, 8, 50, tzinfo=UTC)

    # 14 minutes later, past the hour: still within the lot's 15-minute exit grace.
    clock.advance(minutes=14)
    detail = client.get(f"/api/tickets/{ticket_id}", headers=gate.attendant).get_json()
    assert (detail["amount_due"], detail["balance"]) == (RATE, 0)
    response = leave(client, gate, "KEC 1")

    assert response.status_code == 200
    assert response.get_json()["amount_paid"] == RATE
    assert ticket(app, ticket_id).amount_due == RATE


def test_after_the_exit_grace_the_extra_time_is_owed(client, gate, clock):
    ticket_id = enter(client, gate, "KED 1").get_json()["ticket_id"]
    clock.advance(minutes=50)
    assert pay(client, ticket_id, gate.device, RATE).status_code == 201
    clock.advance(minutes=16)

    response = leave(client, gate, "KED 1")

    assert response.status_code == 402
    assert response.get_json()["balance"] == RATE  # the second hour
    assert pay(client, ticket_id, gate.device, RATE).status_code == 201
    assert leave(client, gate, "KED 1").status_code == 200


def test_an_app_checkout_leaves_its_balance_to_the_gate(
    app, client, gate, clock, driver, make_vehicle, auth_headers
):
    make_vehicle(driver, plate="KEE 1")
    ticket_id = enter(client, gate, "KEE 1").get_json()["ticket_id"]
    clock.advance(minutes=30)
    receipt = client.patch(f"/api/checkout/{ticket_id}", headers=auth_headers(driver)).get_json()
    assert (receipt["amount_due"], receipt["amount_paid"], receipt["balance"]) == (RATE, 0, RATE)

    clock.advance(minutes=2)
    owed = leave(client, gate, "KEE 1")
    assert (owed.status_code, owed.get_json()["balance"]) == (402, RATE)
    assert pay(client, ticket_id, gate.device, RATE).status_code == 201
    response = leave(client, gate, "KEE 1")

    assert response.status_code == 200 and response.get_json()["gate"] == "open"
    clock.advance(minutes=20)  # past the exit grace: the session is over
    assert leave(client, gate, "KEE 1").status_code == 404


def test_an_unknown_plate_is_404_with_the_plates_one_character_away(client, gate):
    for plate in ("KCB 123A", "KCB 128A", "XYZ 999"):
        assert enter(client, gate, plate).status_code == 201

    response = leave(client, gate, "KCB 129A")

    assert response.status_code == 404
    body = response.get_json()
    assert body["error"] == "No open session for this plate"
    assert sorted(c["plate_number"] for c in body["candidates"]) == ["KCB 123A", "KCB 128A"]
    assert set(body["candidates"][0]) == {"ticket_id", "plate_number", "spot_number", "check_in"}


def test_payments_are_checked_against_the_balance(app, client, gate, clock):
    ticket_id = enter(client, gate, "KPA 1").get_json()["ticket_id"]
    clock.advance(minutes=30)

    over = pay(client, ticket_id, gate.attendant, RATE + 1)
    zero = pay(client, ticket_id, gate.attendant, 0)
    no_method = client.post(
        f"/api/tickets/{ticket_id}/payments", json={"amount": 1}, headers=gate.admin
    )
    unknown = pay(client, 99999, gate.admin, 1)

    assert (over.status_code, over.get_json()) == (
        409,
        {"error": "Payment exceeds the balance", "balance": RATE},
    )
    assert (zero.status_code, zero.get_json()) == (400, {"error": "amount must not be 0"})
    assert no_method.get_json() == {"error": "method is required"}
    assert (unknown.status_code, unknown.get_json()) == (404, {"error": "Ticket not found"})
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Payment)) == 0
    partial = pay(client, ticket_id, gate.attendant, 5000)
    assert partial.get_json()["ticket"]["balance"] == RATE - 5000


def test_a_repeated_reference_is_recorded_once_even_after_payment(app, client, gate, clock):
    ticket_id = enter(client, gate, "KPB 1").get_json()["ticket_id"]
    clock.advance(minutes=30)
    first = pay(client, ticket_id, gate.device, RATE, method="app", reference="TX-9")

    again = pay(client, ticket_id, gate.device, RATE, method="app", reference="TX-9")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json() == first.get_json() | {"ticket": again.get_json()["ticket"]}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Payment)) == 1
    assert ticket(app, ticket_id).amount_paid == RATE


def test_refunds_are_an_admins_negative_payment_with_a_reason(app, client, gate, clock):
    ticket_id = enter(client, gate, "KPC 1").get_json()["ticket_id"]
    clock.advance(minutes=30)
    assert pay(client, ticket_id, gate.attendant, RATE).status_code == 201

    by_attendant = pay(client, ticket_id, gate.attendant, -100, reason="sorry")
    no_reason = pay(client, ticket_id, gate.admin, -100)
    too_much = pay(client, ticket_id, gate.admin, -(RATE + 1), reason="oops")
    refund = pay(client, ticket_id, gate.admin, -2000, reason="Barrier stuck")

    assert (by_attendant.status_code, by_attendant.get_json()) == (
        403,
        {"error": "Refunds need an admin"},
    )
    assert no_reason.get_json() == {"error": "reason is required for a refund"}
    assert (too_much.status_code, too_much.get_json()) == (
        409,
        {"error": "Refund exceeds the amount paid", "amount_paid": RATE},
    )
    assert refund.status_code == 201
    assert refund.get_json()["amount"] == -2000 and refund.get_json()["reason"] == "Barrier stuck"
    assert ticket(app, ticket_id).amount_paid == RATE - 2000
    assert [a for a in audit_actions(app) if a[0] in ("payment", "refund")] == [
        ("payment", "user", gate.lot, RATE),
        ("refund", "user", gate.lot, -2000),
    ]


def test_app_payments_come_from_the_backend_not_an_attendant(client, gate, clock):
    ticket_id = enter(client, gate, "KPD 1").get_json()["ticket_id"]
    clock.advance(minutes=30)

    response = pay(client, ticket_id, gate.attendant, 100, method="app")

    assert (response.status_code, response.get_json()) == (
        403,
        {"error": "App payments are recorded by the payment backend"},
    )
    assert pay(client, ticket_id, gate.admin, 100, method="app").status_code == 201


def test_the_ticket_shows_its_payments(client, gate, clock, driver, auth_headers):
    ticket_id = enter(client, gate, "KPE 1").get_json()["ticket_id"]
    clock.advance(minutes=30)
    pay(client, ticket_id, gate.device, 2000, reference="A")
    pay(client, ticket_id, gate.attendant, 3000, method="card")

    detail = client.get(f"/api/tickets/{ticket_id}", headers=gate.attendant).get_json()

    assert [(p["amount"], p["method"], p["actor"]["type"]) for p in detail["payments"]] == [
        (2000, "cash", "device"),
        (3000, "card", "user"),
    ]
    assert (detail["amount_due"], detail["amount_paid"], detail["balance"]) == (RATE, 5000, 7000)
    assert detail["paid_until"] == "2026-01-15T08:30:00+00:00"
    # Another lot's attendant, and a driver who does not own it, see nothing.
    for headers in (gate.stranger, auth_headers(driver)):
        other = client.get(f"/api/tickets/{ticket_id}", headers=headers)
        assert (other.status_code, other.get_json()) == (404, {"error": "Ticket not found"})


# ===========================================================================
# Permits
# ===========================================================================


def permit(client, gate, **fields):
    body = {
        "plate_numbers": ["KSP 100P"],
        "lot_ids": [gate.lot],
        "valid_from": "2026-01-01T00:00:00+03:00",
        "valid_to": "2026-02-01T00:00:00+03:00",
        **fields,
    }
    return client.post("/api/permits", json=body, headers=gate.admin)


def test_permits_need_an_offset_and_a_window(client, gate):
    naive = permit(client, gate, valid_from="2026-01-01T00:00:00")
    backwards = permit(client, gate, valid_to="2025-12-01T00:00:00Z")
    no_plates = permit(client, gate, plate_numbers=[])
    unknown_lot = permit(client, gate, lot_ids=[9999])

    assert (naive.status_code, naive.get_json()) == (
        400,
        {"error": "valid_from must carry a UTC offset, e.g. 2026-01-15T08:00:00+03:00 or Z"},
    )
    assert backwards.get_json() == {"error": "valid_to must be after valid_from"}
    assert no_plates.get_json() == {"error": "plate_numbers must have 1 to 100 items"}
    assert (unknown_lot.status_code, unknown_lot.get_json()) == (
        404,
        {"error": "Parking lot not found"},
    )


def test_permits_are_listed_by_plate_lot_and_activity_and_ended_with_history(client, gate, clock):
    here = permit(client, gate, plate_numbers=["ksp-100p", "KSP 200P"], note="Season")
    everywhere = permit(client, gate, plate_numbers=["KSP 300P"], lot_ids=[])
    future = permit(
        client, gate, valid_from="2026-03-01T00:00:00Z", valid_to="2026-04-01T00:00:00Z"
    )
    assert here.status_code == 201
    body = here.get_json()
    assert body["plate_numbers"] == ["KSP 200P", "KSP-100P"] and body["lot_ids"] == [gate.lot]
    assert body["all_lots"] is False and body["active"] is True
    assert body["valid_from"] == "2025-12-31T21:00:00+00:00"

    def ids(query):
        response = client.get(f"/api/permits?{query}", headers=gate.admin)
        assert response.status_code == 200, response.get_json()
        return [p["id"] for p in response.get_json()]

    assert ids("plate=KSP100P") == [future.get_json()["id"], body["id"]]
    assert ids(f"lot_id={gate.other}") == [everywhere.get_json()["id"]]
    assert ids("active=false") == [future.get_json()["id"]]

    ended = client.delete(f"/api/permits/{body['id']}", headers=gate.admin)

    assert ended.status_code == 200
    assert ended.get_json()["active"] is False
    assert ended.get_json()["ended_at"] == "2026-01-15T08:00:00+00:00"
    assert ended.get_json()["valid_to"] == "2026-01-15T08:00:00+00:00"
    assert body["id"] in ids("active=false")  # history kept
    never = client.delete(f"/api/permits/{future.get_json()['id']}", headers=gate.admin).get_json()
    assert never["valid_to"] == never["valid_from"]  # ended before it began: never applies


def test_a_stay_a_permit_covers_costs_nothing(app, client, gate, clock):
    permit(client, gate, plate_numbers=["KSP 100P"])
    ticket_id = enter(client, gate, "KSP100P").get_json()["ticket_id"]
    clock.advance(hours=5)

    response = leave(client, gate, "KSP 100P")

    assert response.status_code == 200
    body = response.get_json()
    assert body["amount_due"] == 0 and body["gate"] == "open"
    assert body["breakdown"] == [{"period": "permit", "minutes": 300, "amount": 0}]
    assert ticket(app, ticket_id).permit_id is not None


def test_a_permit_ending_during_the_stay_bills_the_rest(client, gate, clock):
    # Ends 2026-01-15T10:00Z; the car came at 08:00 and leaves at 11:30.
    permit(client, gate, valid_to="2026-01-15T10:00:00Z")
    ticket_id = enter(client, gate, "KSP 100P").get_json()["ticket_id"]
    clock.advance(hours=3, minutes=30)

    owed = leave(client, gate, "KSP 100P")

    # 90 minutes after the permit, in 60-minute increments (10 free minutes do not apply past them).
    assert (owed.status_code, owed.get_json()["balance"]) == (402, 2 * RATE)
    assert pay(client, ticket_id, gate.device, 2 * RATE).status_code == 201
    receipt = leave(client, gate, "KSP 100P").get_json()
    assert receipt["breakdown"][0] == {"period": "permit", "minutes": 120, "amount": 0}


# ===========================================================================
# Enforcement checks and the audit log
# ===========================================================================


def check(client, gate, plate, headers=None):
    return client.get(
        f"/api/parking-lots/{gate.lot}/check",
        query_string={"plate": plate},
        headers=headers or gate.device,
    )


def test_enforcement_checks_sessions_and_permits_and_logs_each(app, client, gate, clock):
    enter(client, gate, "KCH 1")
    permit(client, gate, plate_numbers=["KCH 2"])
    clock.advance(minutes=30)

    session = check(client, gate, "kch-1", headers=gate.attendant).get_json()
    season = check(client, gate, "KCH 2").get_json()
    nobody = check(client, gate, "KCH 3").get_json()

    assert session["allowed"] is True and session["reason"] == "session"
    assert session["since"] == "2026-01-15T08:00:00+00:00" and session["balance"] == RATE
    assert season["allowed"] is True and season["reason"] == "permit" and season["permit_id"]
    assert season["until"] == "2026-01-31T21:00:00+00:00" and season["ticket_id"] is None
    assert nobody == {
        "plate_number": "KCH 3",
        "allowed": False,
        "reason": None,
        "ticket_id": None,
        "permit_id": None,
        "since": None,
        "until": None,
        "balance": None,
    }
    checks = [a for a in audit_actions(app) if a[0] == "check"]
    assert checks == [("check", "user", gate.lot, None), ("check", "device", gate.lot, None)] + [
        ("check", "device", gate.lot, None)
    ]
    assert check(client, gate, "").get_json() == {"error": "plate is required"}


def test_the_audit_log_filters_and_cannot_be_changed(app, client, gate, clock):
    enter(client, gate, "KAU 1")
    enter(client, gate, "KAU 2", headers=gate.attendant)
    clock.advance(hours=1)
    check(client, gate, "KAU 1")

    def actions(query=""):
        response = client.get(f"/api/audit{query}", headers=gate.admin)
        assert response.status_code == 200, response.get_json()
        return [(e["action"], e["actor"]["type"]) for e in response.get_json()]

    assert actions(f"?lot_id={gate.lot}")[:3] == [
        ("check", "device"),
        ("entry", "user"),
        ("entry", "device"),
    ]
    assert actions(f"?actor=user:{gate.attendant_id}") == [("entry", "user")]
    assert actions(f"?actor=device:{gate.device_id}&from=2026-01-15T08:30:00Z") == [
        ("check", "device")
    ]
    assert actions("?to=2026-01-15T08:00:00Z") == []  # everything happened at 08:00 or later
    bad = client.get("/api/audit?actor=robot:1", headers=gate.admin)
    assert bad.get_json() == {"error": "actor must be user:<id> or device:<id>"}
    naive = client.get("/api/audit?from=2026-01-15T08:30:00", headers=gate.admin)
    assert naive.status_code == 400
    for method in ("PATCH", "DELETE", "PUT", "POST"):
        assert client.open("/api/audit", method=method, headers=gate.admin).status_code == 405
    entry = client.get("/api/audit", headers=gate.admin).get_json()[0]
    assert set(entry) == {
        "id",
        "at",
        "actor",
        "action",
        "lot_id",
        "ticket_id",
        "amount",
        "plate_number",
        "detail",
    }


@postgres_only
def test_the_database_refuses_to_change_audit_and_payment_rows(app, client, gate, clock):
    ticket_id = enter(client, gate, "KAU 9").get_json()["ticket_id"]
    clock.advance(minutes=30)
    pay(client, ticket_id, gate.device, 100)
    with app.app_context():
        for statement in (
            "UPDATE audit_log SET action = 'x'",
            "DELETE FROM audit_log",
            "UPDATE payments SET amount = 1",
            "DELETE FROM payments",
        ):
            with pytest.raises(DBAPIError, match="append-only"):
                with db.engine.begin() as conn:
                    conn.execute(text(statement))


# ===========================================================================
# Authorization of every gate route
# ===========================================================================


def gate_calls(gate, ticket_id):
    """(method, path, body) of every gate route, at the gate's lot."""
    return [
        ("POST", f"/api/parking-lots/{gate.lot}/entries", {"plate_number": "KZZ 1"}),
        ("POST", f"/api/parking-lots/{gate.lot}/exits", {"plate_number": "KZZ 0"}),
        ("GET", f"/api/parking-lots/{gate.lot}/check?plate=KZZ0", None),
        ("POST", f"/api/tickets/{ticket_id}/payments", {"amount": 1, "method": "cash"}),
    ]


def test_every_gate_route_refuses_whoever_may_not_act_here(
    app, client, gate, clock, driver, auth_headers
):
    ticket_id = enter(client, gate, "KZZ 0").get_json()["ticket_id"]
    clock.advance(minutes=30)
    before = audit_actions(app)
    refusals = [
        (auth_headers(driver), 403, "Attendant or admin role required"),
        (gate.stranger, 403, "Not assigned to this lot"),
        (gate.other_device, 403, "Not assigned to this lot"),
        (gate.revoked, 401, "Device key has been revoked"),
        (gate.wrong, 401, "Invalid device key"),
        ({}, 401, "Missing Authorization Header"),
    ]
    for method, path, body in gate_calls(gate, ticket_id):
        for headers, status, message in refusals:
            response = client.open(path, method=method, json=body, headers=headers)
            assert (response.status_code, response.get_json()) == (status, {"error": message}), (
                path,
                headers,
            )
    assert audit_actions(app) == before
    assert ticket(app, ticket_id).amount_paid == 0
    # And the lot's own staff and device, and an admin, may.
    for headers in (gate.attendant, gate.device, gate.admin):
        for method, path, body in gate_calls(gate, ticket_id)[2:3]:
            assert client.open(path, method=method, json=body, headers=headers).status_code == 200


def test_every_staff_route_refuses_attendants_and_devices(client, gate):
    routes = [
        ("GET", "/api/users"),
        ("PATCH", f"/api/users/{gate.attendant_id}"),
        ("GET", f"/api/parking-lots/{gate.lot}/staff"),
        ("PUT", f"/api/parking-lots/{gate.lot}/staff/{gate.attendant_id}"),
        ("DELETE", f"/api/parking-lots/{gate.lot}/staff/{gate.attendant_id}"),
        ("POST", f"/api/parking-lots/{gate.lot}/devices"),
        ("GET", f"/api/parking-lots/{gate.lot}/devices"),
        ("DELETE", f"/api/parking-lots/{gate.lot}/devices/{gate.device_id}"),
        ("GET", "/api/audit"),
        ("POST", "/api/permits"),
        ("GET", "/api/permits"),
        ("DELETE", "/api/permits/1"),
    ]
    for method, path in routes:
        body = {"role": "driver", "name": "x"}
        attendant = client.open(path, method=method, json=body, headers=gate.attendant)
        device = client.open(path, method=method, json=body, headers=gate.device)
        revoked = client.open(path, method=method, json=body, headers=gate.revoked)
        assert (attendant.status_code, attendant.get_json()) == (
            403,
            {"error": "Admin privileges required"},
        ), path
        assert device.get_json() == {
            "error": "Devices may only use the gate endpoints of their lot"
        }, path
        assert revoked.status_code == 401, path


# ===========================================================================
# The lot report: payments by method, outstanding balances, permit sessions
# ===========================================================================


def test_the_report_adds_payments_by_method_outstanding_and_permit_sessions(
    client, gate, clock, driver, make_vehicle, auth_headers
):
    permit(client, gate, plate_numbers=["KRP 1"])
    make_vehicle(driver, plate="KRP 3")
    paid = enter(client, gate, "KRP 2").get_json()["ticket_id"]
    enter(client, gate, "KRP 1")  # a permit holder
    unpaid = enter(client, gate, "KRP 3").get_json()["ticket_id"]
    clock.advance(minutes=30)
    pay(client, paid, gate.device, 5000, method="card")
    pay(client, paid, gate.attendant, RATE - 5000, method="cash")
    assert leave(client, gate, "KRP 2").status_code == 200
    assert leave(client, gate, "KRP 1").status_code == 200
    client.patch(f"/api/checkout/{unpaid}", headers=auth_headers(driver))  # leaves RATE owed
    pay(client, paid, gate.admin, -1000, method="cash", reason="Late barrier")

    response = client.get(
        f"/api/parking-lots/{gate.lot}/report?from=2026-01-15&to=2026-01-15", headers=gate.admin
    )

    day = response.get_json()["days"][0]
    assert day["payments"] == {"cash": RATE - 5000 - 1000, "card": 5000, "app": 0, "reservation": 0}
    assert (day["tickets_closed"], day["revenue"]) == (3, 2 * RATE)
    assert day["outstanding"] == RATE + 1000  # the app checkout, and the refund
    assert day["permit_sessions"] == 1
    totals = response.get_json()["totals"]
    assert totals["payments"]["card"] == 5000 and totals["permit_sessions"] == 1
