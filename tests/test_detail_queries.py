"""No N+1: every list and detail endpoint of the operator features runs the
same number of SQL statements with a little data and with a lot more."""

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from models import SPOT_KINDS, ParkingSpot, Ticket, db

START = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
def grow(app, make_user, make_vehicle):
    """`grow(lot, spots=, users=, tickets=)`: add spots of every kind and status,
    drivers with vehicles, and closed tickets spread over days, users and spots."""
    serial = count(1)

    def add(lot, spots=0, users=0, tickets=0, open_tickets=0):
        n = next(serial)
        owners = []
        for i in range(max(users, 1)):
            user = make_user(username=f"grow{n}x{i}")
            owners.append((user, make_vehicle(user, plate=f"G{n} {i}")))
        with app.app_context():
            new_spots = [
                ParkingSpot(
                    lot_id=lot["id"],
                    spot_number=f"G{n}-{i}",
                    kind=SPOT_KINDS[i % len(SPOT_KINDS)],
                    status="out_of_service" if i % 5 == 4 else "available",
                )
                for i in range(max(spots, tickets, open_tickets, 1))
            ]
            db.session.add_all(new_spots)
            db.session.flush()
            for i in range(tickets):
                user, car = owners[i % len(owners)]
                check_in = START + timedelta(days=i % 30, minutes=7 * i)
                db.session.add(
                    Ticket(
                        vehicle_id=car["id"],
                        spot_id=new_spots[i].id,
                        user_id=user["id"],
                        lot_id=lot["id"],
                        check_in=check_in,
                        check_out=check_in + timedelta(minutes=45 + i),
                        amount_due=100 * i,
                        duration_minutes=45 + i,
                        hourly_rate=100,
                    )
                )
            for i in range(min(open_tickets, len(owners))):
                user, car = owners[i]
                new_spots[i].status = "occupied"
                db.session.add(
                    Ticket(
                        vehicle_id=car["id"],
                        spot_id=new_spots[i].id,
                        user_id=user["id"],
                        lot_id=lot["id"],
                        check_in=START,
                        hourly_rate=100,
                    )
                )
            db.session.commit()

    return add


@pytest.fixture
def statements(client, count_queries):
    """Run one GET (after a warm-up) and return how many SQL statements it ran."""

    def run(url, headers=None, expect=200):
        client.get(url, headers=headers)
        with count_queries() as recorded:
            response = client.get(url, headers=headers)
        assert response.status_code == expect, response.get_data(as_text=True)
        return len(recorded), response

    return run


def test_lot_detail(statements, admin, auth_headers, make_lot, grow):
    lot = make_lot(spots=2)
    headers = auth_headers(admin)
    small, _ = statements(f"/api/parking-lots/{lot['id']}", headers)
    grow(lot, spots=60, users=6, tickets=30, open_tickets=6)
    large, response = statements(f"/api/parking-lots/{lot['id']}", headers)
    assert response.get_json()["counts"]["total"] == 2 + 60
    assert len(response.get_json()["kinds"]) == len(SPOT_KINDS)
    assert small == large


def test_spot_detail(statements, make_lot, grow):
    lot = make_lot(spots=1)
    small, _ = statements(f"/api/spots/{lot['spot_ids'][0]}")
    grow(lot, spots=80, tickets=20)
    large, response = statements(f"/api/spots/{lot['spot_ids'][0]}")
    assert response.get_json()["spot_number"] == "A1"
    assert small == large


def test_ticket_detail(client, statements, driver, auth_headers, make_lot, vehicle, grow):
    lot = make_lot(spots=2)
    headers = auth_headers(driver)
    booked = client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "parking_spot_id": lot["spot_ids"][0]},
        headers=headers,
    )
    ticket_id = booked.get_json()["ticket_id"]
    small, _ = statements(f"/api/tickets/{ticket_id}", headers)
    grow(lot, spots=40, users=5, tickets=40, open_tickets=5)
    large, response = statements(f"/api/tickets/{ticket_id}", headers)
    assert response.get_json()["id"] == ticket_id
    assert small == large


def test_all_tickets_for_an_admin(statements, admin, auth_headers, make_lot, grow):
    lot = make_lot(spots=1)
    grow(lot, users=1, tickets=2)
    headers = auth_headers(admin)
    small, response = statements("/api/tickets?all=true", headers)
    assert len(response.get_json()) == 2
    grow(lot, users=8, tickets=60, open_tickets=8)
    other_lot = make_lot(name="Lot B", spots=0, prefix="B")
    grow(other_lot, users=3, tickets=10)
    large, response = statements("/api/tickets?all=true", headers)
    assert len(response.get_json()) == 2 + 60 + 8 + 10
    assert len({t["user_id"] for t in response.get_json()}) == 1 + 8 + 3
    assert small == large


def test_own_tickets_with_filters(
    client, statements, driver, auth_headers, make_lot, vehicle, grow
):
    lot = make_lot(spots=3)
    headers = auth_headers(driver)
    client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "parking_spot_id": lot["spot_ids"][0]},
        headers=headers,
    )
    url = f"/api/tickets?active=true&lot_id={lot['id']}&per_page=50"
    small, _ = statements(url, headers)
    grow(lot, users=4, tickets=40, open_tickets=4)
    large, response = statements(url, headers)
    assert len(response.get_json()) == 1
    assert small == large


def test_report(statements, admin, auth_headers, make_lot, grow):
    lot = make_lot(spots=1, timezone="America/New_York")
    headers = auth_headers(admin)
    small, _ = statements(
        f"/api/parking-lots/{lot['id']}/report?from=2026-01-10&to=2026-01-10", headers
    )
    grow(lot, spots=30, users=5, tickets=90, open_tickets=5)
    large, response = statements(
        f"/api/parking-lots/{lot['id']}/report?from=2026-01-01&to=2026-02-28", headers
    )
    assert response.get_json()["totals"]["tickets_closed"] == 90
    assert small == large
    csv_small, _ = statements(
        f"/api/parking-lots/{lot['id']}/report?from=2026-01-10&to=2026-01-10&format=csv", headers
    )
    csv_large, _ = statements(
        f"/api/parking-lots/{lot['id']}/report?from=2026-01-01&to=2026-12-31&format=csv", headers
    )
    assert csv_small == csv_large


def test_lot_list(statements, driver, auth_headers, make_lot, grow):
    headers = auth_headers(driver)
    make_lot(spots=1)
    small, _ = statements("/api/parking-lots", headers)
    for n in range(8):
        grow(make_lot(name=f"Lot {n}", spots=3, prefix=f"L{n}-"), spots=10, tickets=3)
    large, response = statements("/api/parking-lots", headers)
    assert len(response.get_json()) == 9
    assert small == large


def test_spot_list_with_filters(statements, make_lot, grow):
    lot = make_lot(spots=2)
    url = f"/api/spots?lot_id={lot['id']}&status=available&per_page=1000"
    small, _ = statements(url)
    grow(lot, spots=120, tickets=10)
    other = make_lot(name="Lot B", spots=20, prefix="B")
    grow(other, spots=30)
    large, response = statements(url)
    assert len(response.get_json()) > 90
    assert small == large


def test_vehicle_list(statements, make_vehicle, driver, auth_headers):
    headers = auth_headers(driver)
    make_vehicle(driver)
    small, _ = statements("/api/vehicles", headers)
    for n in range(25):
        make_vehicle(driver, plate=f"KVL {n}")
    large, response = statements("/api/vehicles", headers)
    assert len(response.get_json()) == 26
    assert small == large


def test_quote(statements, driver, auth_headers, make_lot, grow):
    lot = make_lot(spots=1, hourly_rate=100)
    headers = auth_headers(driver)
    small, _ = statements(f"/api/parking-lots/{lot['id']}/quote?minutes=60", headers)
    grow(lot, spots=40, tickets=20)
    large, _ = statements(f"/api/parking-lots/{lot['id']}/quote?minutes=44640", headers)
    assert small == large
