"""No N+1 queries: list endpoints run as many SQL statements for 50 rows as for 2.

Each test fills the database directly, counts the statements of one request,
adds 48 more rows and counts again.
"""

from datetime import UTC, datetime, timedelta

import pytest

from models import ParkingLot, ParkingSpot, Ticket, Vehicle, db


def add_lots(app, start, stop, spots_each=3):
    with app.app_context():
        for n in range(start, stop):
            lot = ParkingLot(name=f"Lot {n}", location=f"Street {n}")
            db.session.add(lot)
            db.session.flush()
            db.session.add_all(
                ParkingSpot(lot_id=lot.id, spot_number=f"S{i}") for i in range(spots_each)
            )
        db.session.commit()


def add_spots(app, start, stop):
    """One spot in a lot of its own per n, so every spot has a different lot name."""
    add_lots(app, start, stop, spots_each=1)


def add_vehicles(app, user, start, stop):
    with app.app_context():
        db.session.add_all(
            Vehicle(plate_number=f"KCB {n}", user_id=user["id"]) for n in range(start, stop)
        )
        db.session.commit()


def add_tickets(app, user, start, stop):
    """A closed ticket per n, each with its own vehicle and spot."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with app.app_context():
        for n in range(start, stop):
            lot = ParkingLot(name=f"Lot {n}", location="Somewhere")
            vehicle = Vehicle(plate_number=f"KCB {n}", user_id=user["id"])
            db.session.add_all([lot, vehicle])
            db.session.flush()
            spot = ParkingSpot(lot_id=lot.id, spot_number="S1")
            db.session.add(spot)
            db.session.flush()
            db.session.add(
                Ticket(
                    vehicle_id=vehicle.id,
                    spot_id=spot.id,
                    user_id=user["id"],
                    lot_id=lot.id,
                    check_in=base + timedelta(hours=n),
                    check_out=base + timedelta(hours=n, minutes=30),
                )
            )
        db.session.commit()


def statements_for(client, count_queries, url, headers, expected_rows):
    client.get(url, headers=headers)  # warm up: connection set-up is not the view's cost
    with count_queries() as statements:
        response = client.get(url, headers=headers)
    assert response.status_code == 200
    assert len(response.get_json()) == expected_rows
    return list(statements)


@pytest.mark.parametrize(
    ("url", "fill", "needs_auth"),
    [
        ("/api/parking-lots", lambda app, user, a, b: add_lots(app, a, b), True),
        ("/api/spots", lambda app, user, a, b: add_spots(app, a, b), False),
        ("/api/vehicles", add_vehicles, True),
        ("/api/tickets", add_tickets, True),
    ],
    ids=["parking-lots", "spots", "vehicles", "tickets"],
)
def test_statement_count_does_not_grow_with_rows(
    app, client, driver, auth_headers, count_queries, url, fill, needs_auth
):
    headers = auth_headers(driver) if needs_auth else {}
    fill(app, driver, 0, 2)
    few = statements_for(client, count_queries, url, headers, 2)
    fill(app, driver, 2, 50)
    many = statements_for(client, count_queries, url, headers, 50)

    assert len(many) == len(few), "\n".join(many)
    # Small and bounded: the page, its count, and the token's user checks.
    assert len(few) <= 6, "\n".join(few)


def test_lot_spot_counts_are_right_at_fifty_lots(app, client, driver, auth_headers):
    add_lots(app, 0, 50, spots_each=3)

    lots = client.get("/api/parking-lots", headers=auth_headers(driver)).get_json()

    assert len(lots) == 50
    assert {lot["spots"] for lot in lots} == {3}


def test_spot_lot_names_are_right_at_fifty_spots(app, client):
    add_spots(app, 0, 50)

    spots = client.get("/api/spots").get_json()

    assert [spot["lot"] for spot in spots] == [f"Lot {n}" for n in range(50)]
