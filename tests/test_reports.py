"""GET /api/parking-lots/<id>/report: per local day of the lot, JSON and CSV.

The lot is in America/New_York: local midnight is 05:00 UTC in winter and
04:00 UTC in summer; 2026-03-08 has 23 hours and 2026-11-01 has 25.
"""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from models import ParkingSpot, Ticket, db

NY = "America/New_York"
COLUMNS = [
    "date",
    "tickets_started",
    "tickets_closed",
    "revenue",
    "average_stay_minutes",
    "paid_cash",
    "paid_card",
    "paid_app",
    "paid_reservation",
    "outstanding",
    "permit_sessions",
    "reservations_made",
    "reservation_revenue",
    "cancellations",
    "refunds",
    "no_shows",
]
NO_RESERVATIONS = {
    "reservations_made": 0,
    "reservation_revenue": 0,
    "cancellations": 0,
    "refunds": 0,
    "no_shows": 0,
}
NO_MONEY = {
    "payments": {"cash": 0, "card": 0, "app": 0, "reservation": 0},
    "permit_sessions": 0,
    **NO_RESERVATIONS,
}


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def add_ticket(app, make_user, make_vehicle):
    """Insert a ticket directly (open tickets mark their spot occupied)."""
    owner = make_user(username="parker")
    cars = iter(range(1, 1000))

    def add(lot, spot_index, check_in, check_out=None, amount=0):
        car = make_vehicle(owner, plate=f"KRP {next(cars)}")
        with app.app_context():
            spot_id = lot["spot_ids"][spot_index]
            duration = None
            if check_out is not None:
                duration = int((check_out - check_in).total_seconds() // 60)
            ticket = Ticket(
                vehicle_id=car["id"],
                spot_id=spot_id,
                user_id=owner["id"],
                lot_id=lot["id"],
                check_in=check_in,
                check_out=check_out,
                amount_due=amount if check_out is not None else None,
                duration_minutes=duration,
                currency="USD",
            )
            db.session.add(ticket)
            if check_out is None:
                db.session.get(ParkingSpot, spot_id).status = "occupied"
            db.session.commit()
            return ticket.id

    return add


@pytest.fixture
def ny_lot(make_lot):
    return make_lot(name="Midtown", spots=5, prefix="M", timezone=NY, currency="USD")


def report(client, headers, lot_id, query):
    response = client.get(f"/api/parking-lots/{lot_id}/report?{query}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response


def day_rows(body):
    return {row["date"]: row for row in body["days"]}


def test_days_follow_the_lots_local_midnight(
    client, admin, auth_headers, ny_lot, make_lot, add_ticket
):
    # 04:59:59 UTC on the 15th is 23:59:59 on the 14th in New York.
    add_ticket(ny_lot, 0, utc(2026, 1, 15, 4, 59, 59), utc(2026, 1, 15, 5, 30), amount=1000)
    add_ticket(ny_lot, 1, utc(2026, 1, 15, 5, 0), utc(2026, 1, 16, 4, 59, 59), amount=5000)
    add_ticket(ny_lot, 2, utc(2026, 1, 16, 5, 0))  # still parked
    elsewhere = make_lot(name="Other", spots=1, prefix="O")
    add_ticket(elsewhere, 0, utc(2026, 1, 15, 12, 0), utc(2026, 1, 15, 13, 0), amount=999)

    body = report(
        client, auth_headers(admin), ny_lot["id"], "from=2026-01-14&to=2026-01-16"
    ).get_json()
    assert (body["lot_id"], body["lot"], body["timezone"], body["currency"]) == (
        ny_lot["id"],
        "Midtown",
        NY,
        "USD",
    )
    assert (body["from"], body["to"]) == ("2026-01-14", "2026-01-16")
    assert body["days"] == [
        {
            "date": "2026-01-14",
            "tickets_started": 1,
            "tickets_closed": 0,
            "revenue": 0,
            "average_stay_minutes": None,
            "outstanding": 0,
            **NO_MONEY,
        },
        {
            "date": "2026-01-15",
            "tickets_started": 1,
            "tickets_closed": 2,
            "revenue": 6000,
            "average_stay_minutes": 734.5,  # (30 + 1439) / 2
            "outstanding": 6000,  # checked out, never paid
            **NO_MONEY,
        },
        {
            "date": "2026-01-16",
            "tickets_started": 1,
            "tickets_closed": 0,
            "revenue": 0,
            "average_stay_minutes": None,
            "outstanding": 0,
            **NO_MONEY,
        },
    ]
    assert body["totals"] == {
        "tickets_started": 3,
        "tickets_closed": 2,
        "revenue": 6000,
        "outstanding": 6000,
        **NO_MONEY,
    }
    assert body["occupancy"] == {"total": 5, "occupied": 1, "available": 4, "out_of_service": 0}


def test_spring_forward_day_has_23_hours(client, admin, auth_headers, ny_lot, add_ticket):
    # 2026-03-08 local runs from 05:00 UTC (EST) to 04:00 UTC the next day (EDT).
    twenty = timedelta(minutes=20)
    for index, start in enumerate(
        [
            utc(2026, 3, 8, 4, 59),  # Mar 7 23:59 EST
            utc(2026, 3, 8, 5, 0),  # Mar 8 00:00 EST
            utc(2026, 3, 9, 3, 59),  # Mar 8 23:59 EDT
            utc(2026, 3, 9, 4, 30),  # Mar 9 00:30 EDT (a fixed -5 offset says Mar 8)
        ]
    ):
        add_ticket(ny_lot, index, start, start + twenty, amount=100 * (index + 1))

    days = day_rows(
        report(
            client, auth_headers(admin), ny_lot["id"], "from=2026-03-07&to=2026-03-09"
        ).get_json()
    )
    assert [(d["tickets_started"], d["tickets_closed"]) for d in days.values()] == [
        (1, 0),
        (2, 2),
        (1, 2),
    ]
    assert (days["2026-03-08"]["revenue"], days["2026-03-09"]["revenue"]) == (100 + 200, 300 + 400)
    assert days["2026-03-08"]["average_stay_minutes"] == 20.0


def test_fall_back_day_has_25_hours(client, admin, auth_headers, ny_lot, add_ticket):
    # 2026-11-01 local runs from 04:00 UTC (EDT) to 05:00 UTC the next day (EST).
    twenty = timedelta(minutes=20)
    for index, start in enumerate(
        [
            utc(2026, 11, 1, 3, 59),  # Oct 31 23:59 EDT
            utc(2026, 11, 1, 4, 0),  # Nov 1 00:00 EDT
            utc(2026, 11, 2, 4, 30),  # Nov 1 23:30 EST (a fixed -4 offset says Nov 2)
            utc(2026, 11, 2, 5, 0),  # Nov 2 00:00 EST
        ]
    ):
        add_ticket(ny_lot, index, start, start + twenty, amount=10)

    days = day_rows(
        report(
            client, auth_headers(admin), ny_lot["id"], "from=2026-10-31&to=2026-11-02"
        ).get_json()
    )
    assert [(d["tickets_started"], d["tickets_closed"], d["revenue"]) for d in days.values()] == [
        (1, 0, 0),
        (2, 3, 30),
        (1, 1, 10),
    ]


def test_csv_has_a_header_and_the_same_rows(client, admin, auth_headers, ny_lot, add_ticket):
    add_ticket(ny_lot, 0, utc(2026, 1, 15, 4, 59, 59), utc(2026, 1, 15, 5, 30), amount=1000)
    add_ticket(ny_lot, 1, utc(2026, 1, 15, 5, 0), utc(2026, 1, 16, 4, 59, 59), amount=5000)
    headers = auth_headers(admin)
    query = "from=2026-01-14&to=2026-01-16"
    as_json = report(client, headers, ny_lot["id"], query).get_json()
    response = report(client, headers, ny_lot["id"], query + "&format=csv")
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="lot-{ny_lot["id"]}-2026-01-14-2026-01-16.csv"'
    )
    text = response.get_data(as_text=True)
    lines = text.splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert len(lines) == 4
    rows = list(csv.DictReader(io.StringIO(text)))
    flat = [
        {**day, **{f"paid_{m}": amount for m, amount in day.pop("payments").items()}}
        for day in as_json["days"]
    ]
    expected = [{key: "" if row[key] is None else str(row[key]) for key in COLUMNS} for row in flat]
    assert rows == expected
    assert rows[1] == {
        "date": "2026-01-15",
        "tickets_started": "1",
        "tickets_closed": "2",
        "revenue": "6000",
        "average_stay_minutes": "734.5",
        "paid_cash": "0",
        "paid_card": "0",
        "paid_app": "0",
        "paid_reservation": "0",
        "outstanding": "6000",
        "permit_sessions": "0",
        **{name: "0" for name in NO_RESERVATIONS},
    }


def test_report_of_an_archived_lot_keeps_its_history(
    client, admin, auth_headers, ny_lot, add_ticket
):
    add_ticket(ny_lot, 0, utc(2026, 1, 15, 12, 0), utc(2026, 1, 15, 13, 0), amount=700)
    headers = auth_headers(admin)
    assert client.delete(f"/api/parking-lots/{ny_lot['id']}", headers=headers).status_code == 200
    body = report(client, headers, ny_lot["id"], "from=2026-01-15&to=2026-01-15").get_json()
    assert body["days"][0]["revenue"] == 700


def test_a_366_day_report_is_allowed(client, admin, auth_headers, ny_lot):
    body = report(
        client, auth_headers(admin), ny_lot["id"], "from=2024-01-01&to=2024-12-31"
    ).get_json()
    assert len(body["days"]) == 366
    assert body["days"][59]["date"] == "2024-02-29"
    assert body["totals"] == {
        "tickets_started": 0,
        "tickets_closed": 0,
        "revenue": 0,
        "outstanding": 0,
        **NO_MONEY,
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("to=2026-01-02", "from is required (YYYY-MM-DD)"),
        ("from=2026-01-02", "to is required (YYYY-MM-DD)"),
        ("from=&to=2026-01-02", "from is required (YYYY-MM-DD)"),
        ("from=2026-13-01&to=2026-12-31", "from must be a date in the form YYYY-MM-DD"),
        ("from=2026-02-30&to=2026-03-01", "from must be a date in the form YYYY-MM-DD"),
        ("from=20260101&to=2026-01-02", "from must be a date in the form YYYY-MM-DD"),
        ("from=2026-W01-1&to=2026-01-31", "from must be a date in the form YYYY-MM-DD"),
        ("from=2026-01-01&to=tomorrow", "to must be a date in the form YYYY-MM-DD"),
        ("from=2026-01-02&to=2026-01-01", "to must not be before from"),
        ("from=2025-01-01&to=2026-01-02", "A report covers at most 366 days"),
        ("from=2026-01-01&to=2026-01-02&format=xml", "format must be one of: json, csv"),
    ],
)
def test_report_validation(client, admin, auth_headers, ny_lot, query, message):
    response = client.get(
        f"/api/parking-lots/{ny_lot['id']}/report?{query}", headers=auth_headers(admin)
    )
    assert response.status_code == 400
    assert response.get_json() == {"error": message}


def test_report_is_admin_only(client, driver, auth_headers, ny_lot):
    response = client.get(
        f"/api/parking-lots/{ny_lot['id']}/report?from=2026-01-01&to=2026-01-02",
        headers=auth_headers(driver),
    )
    assert response.status_code == 403
    assert response.get_json() == {"error": "Admin privileges required"}


def test_report_of_unknown_lot_is_404(client, admin, auth_headers):
    response = client.get(
        "/api/parking-lots/999/report?from=2026-01-01&to=2026-01-02", headers=auth_headers(admin)
    )
    assert response.status_code == 404
    assert response.get_json() == {"error": "Parking lot not found"}


def test_report_runs_a_constant_number_of_statements(
    client, admin, auth_headers, ny_lot, add_ticket, count_queries
):
    for day in range(30):
        start = utc(2026, 1, 1, 15, 0) + timedelta(days=day)
        add_ticket(ny_lot, day % 4, start, start + timedelta(hours=1), amount=100)
    headers = auth_headers(admin)
    lot_id = ny_lot["id"]
    with count_queries() as one_day:
        body = report(client, headers, lot_id, "from=2026-01-01&to=2026-01-01").get_json()
    assert body["totals"]["tickets_started"] == 1
    with count_queries() as thirty_days:
        body = report(client, headers, lot_id, "from=2026-01-01&to=2026-01-30").get_json()
    assert body["totals"]["tickets_started"] == 30
    assert body["totals"]["revenue"] == 3000
    assert len(one_day) == len(thirty_days)
    with count_queries() as as_csv:
        report(client, headers, lot_id, "from=2026-01-01&to=2026-01-30&format=csv")
    assert len(as_csv) <= len(thirty_days)
