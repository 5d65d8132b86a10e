"""The gate under real concurrency: requests released together over HTTP.

Two simultaneous entries of one plate give one ticket; two simultaneous exits
close it once; ten simultaneous payments of the full balance record one; two
gates auto-assigning at a nearly full lot never give one spot twice.
PostgreSQL only: SQLite serialises writers, so it cannot show a race.
"""

import json
import urllib.error
import urllib.request

from conftest import postgres_only, run_at_once
from sqlalchemy import func, select

from models import AuditEntry, Payment, Ticket, db

pytestmark = postgres_only

RATE = 12_000


def call(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def device(client, admin_headers, lot_id, name) -> dict:
    response = client.post(
        f"/api/parking-lots/{lot_id}/devices", json={"name": name}, headers=admin_headers
    )
    assert response.status_code == 201
    return {"Authorization": f"Device {response.get_json()['key']}"}


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_two_cameras_firing_at_once_open_one_ticket(
    app, client, live_server, admin, auth_headers, make_lot
):
    lot = make_lot(spots=12, hourly_rate=RATE)
    admin_headers = auth_headers(admin)
    north = device(client, admin_headers, lot["id"], "North camera")
    south = device(client, admin_headers, lot["id"], "South camera")
    url = f"{live_server}/api/parking-lots/{lot['id']}/entries"
    for trial in range(10):
        plate = f"KRA {trial:03d}A"
        results = run_at_once(
            [lambda h=h, p=plate: call("POST", url, {"plate_number": p}, h) for h in (north, south)]
        )

        statuses = sorted(status for status, _ in results)
        assert statuses == [201, 409], (trial, results)
        assert {"error": "Vehicle already parked"} in [body for _, body in results]
        assert count(app, Ticket, Ticket.plate_key == plate.replace(" ", "")) == 1


def test_two_exits_at_once_close_the_ticket_once(
    app, client, live_server, admin, auth_headers, make_lot
):
    lot = make_lot(spots=5, hourly_rate=RATE, grace_minutes=60)
    admin_headers = auth_headers(admin)
    gate = device(client, admin_headers, lot["id"], "Gate")
    for trial in range(10):
        plate = f"KRB {trial:03d}B"
        entered = client.post(
            f"/api/parking-lots/{lot['id']}/entries", json={"plate_number": plate}, headers=gate
        )
        ticket_id = entered.get_json()["ticket_id"]
        url = f"{live_server}/api/parking-lots/{lot['id']}/exits"

        results = run_at_once(
            [lambda u=url, p=plate: call("POST", u, {"plate_number": p}, gate)] * 2
        )

        # Both may open the gate (the second sees a session closed moments ago);
        # the ticket is closed once, its spot freed once.
        assert [status for status, _ in results] == [200, 200], (trial, results)
        assert {body["check_out"] for _, body in results} == {results[0][1]["check_out"]}
        with app.app_context():
            ticket = db.session.get(Ticket, ticket_id)
            assert ticket.check_out is not None and ticket.amount_due == 0
    assert count(app, Ticket, Ticket.check_out.is_(None)) == 0


def test_ten_payments_of_the_full_balance_record_one(
    app, client, live_server, admin, auth_headers, make_lot, clock
):
    lot = make_lot(spots=2, hourly_rate=RATE)
    admin_headers = auth_headers(admin)
    gate = device(client, admin_headers, lot["id"], "Pay station")
    ticket_id = client.post(
        f"/api/parking-lots/{lot['id']}/entries", json={"plate_number": "KRC 1"}, headers=gate
    ).get_json()["ticket_id"]
    clock.advance(minutes=90)
    url = f"{live_server}/api/tickets/{ticket_id}/payments"

    results = run_at_once(
        [lambda: call("POST", url, {"amount": 2 * RATE, "method": "card"}, gate)] * 10
    )

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 9, results
    for status, body in results:
        if status == 409:
            assert body == {"error": "Payment exceeds the balance", "balance": 0}
    assert count(app, Payment, Payment.ticket_id == ticket_id) == 1
    with app.app_context():
        assert db.session.get(Ticket, ticket_id).amount_paid == 2 * RATE
    assert count(app, AuditEntry, AuditEntry.action == "payment") == 1


def test_two_gates_at_a_nearly_full_lot_never_give_a_spot_twice(
    app, client, live_server, admin, auth_headers, make_lot
):
    for trial in range(5):
        lot = make_lot(name=f"Nearly full {trial}", spots=4, prefix=f"N{trial}-")
        admin_headers = auth_headers(admin)
        gates = [device(client, admin_headers, lot["id"], f"Gate {n}") for n in range(2)]
        for n in range(2):  # two of four spots taken
            assert (
                client.post(
                    f"/api/parking-lots/{lot['id']}/entries",
                    json={"plate_number": f"KRD {trial}{n}0"},
                    headers=gates[0],
                ).status_code
                == 201
            )
        url = f"{live_server}/api/parking-lots/{lot['id']}/entries"

        results = run_at_once(
            [
                lambda n=n, u=url, t=trial, g=gates: call(
                    "POST", u, {"plate_number": f"KRE {t}{n:02d}"}, g[n % 2]
                )
                for n in range(8)
            ]
        )

        won = [body for status, body in results if status == 201]
        assert len(won) == 2, (trial, results)
        assert len({body["spot_id"] for body in won}) == 2
        for status, body in results:
            if status != 201:
                assert (status, body) == (409, {"error": "No spots available"})
        with app.app_context():
            open_spots = db.session.scalars(
                select(Ticket.spot_id).where(Ticket.lot_id == lot["id"], Ticket.check_out.is_(None))
            ).all()
        assert len(open_spots) == len(set(open_spots)) == 4
