"""GET /api/tickets: active, lot_id, paging, and all=true for admins."""

import re

import pytest


def links(response) -> dict[str, str]:
    return {
        rel: url
        for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', response.headers.get("Link", ""))
    }


def book(client, headers, vehicle_id, spot_id):
    response = client.post(
        "/api/tickets", json={"vehicle_id": vehicle_id, "parking_spot_id": spot_id}, headers=headers
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["ticket_id"]


def ids(client, headers, query=""):
    response = client.get(f"/api/tickets{query}", headers=headers)
    assert response.status_code == 200, response.get_json()
    assert int(response.headers["X-Total-Count"]) >= len(response.get_json())
    return [ticket["id"] for ticket in response.get_json()]


@pytest.fixture
def history(client, clock, driver, other_driver, make_lot, make_vehicle, auth_headers):
    """Driver: closed ticket in lot A, then an open one in lot B; other driver: one open in A."""
    lot_a = make_lot(spots=3)
    lot_b = make_lot(name="Lot B", spots=3, prefix="B")
    mine = auth_headers(driver)
    theirs = auth_headers(other_driver)
    car = make_vehicle(driver)
    closed = book(client, mine, car["id"], lot_a["spot_ids"][0])
    clock.advance(minutes=30)
    assert client.patch(f"/api/checkout/{closed}", headers=mine).status_code == 200
    clock.advance(minutes=5)
    open_b = book(client, mine, car["id"], lot_b["spot_ids"][0])
    clock.advance(minutes=5)
    other = book(client, theirs, make_vehicle(other_driver)["id"], lot_a["spot_ids"][1])
    return {
        "lot_a": lot_a["id"],
        "lot_b": lot_b["id"],
        "closed": closed,
        "open_b": open_b,
        "other": other,
        "mine": mine,
        "theirs": theirs,
    }


def test_driver_sees_own_tickets_newest_first(client, history):
    assert ids(client, history["mine"]) == [history["open_b"], history["closed"]]
    assert ids(client, history["theirs"]) == [history["other"]]


def test_active_filter(client, history):
    assert ids(client, history["mine"], "?active=true") == [history["open_b"]]
    assert ids(client, history["mine"], "?active=false") == [history["closed"]]
    assert ids(client, history["mine"], "?active=1") == [history["open_b"]]


def test_lot_filter(client, history):
    assert ids(client, history["mine"], f"?lot_id={history['lot_a']}") == [history["closed"]]
    assert ids(client, history["mine"], f"?lot_id={history['lot_b']}") == [history["open_b"]]
    assert ids(client, history["mine"], f"?lot_id={history['lot_b']}&active=false") == []
    assert ids(client, history["mine"], "?lot_id=999") == []


def test_ticket_rows_carry_the_seed_keys_and_more(client, history):
    [ticket] = client.get("/api/tickets?active=false", headers=history["mine"]).get_json()
    for key in ("id", "vehicle_id", "spot_id", "check_in", "check_out"):
        assert key in ticket
    assert ticket["status"] == "closed"
    assert (ticket["lot"], ticket["spot_number"], ticket["lot_id"]) == (
        "Lot A",
        "A1",
        history["lot_a"],
    )
    assert ticket["check_in"] == "2026-01-15T08:00:00+00:00"
    assert ticket["check_out"] == "2026-01-15T08:30:00+00:00"


def test_admin_all_lists_everyones_tickets(client, admin, auth_headers, history):
    headers = auth_headers(admin)
    everyone = client.get("/api/tickets?all=true", headers=headers)
    assert [t["id"] for t in everyone.get_json()] == [
        history["other"],
        history["open_b"],
        history["closed"],
    ]
    assert everyone.headers["X-Total-Count"] == "3"
    assert ids(client, headers, f"?all=true&lot_id={history['lot_a']}&active=true") == [
        history["other"]
    ]
    # Without all=true an admin sees only their own tickets (none).
    assert ids(client, headers) == []


def test_driver_all_true_is_refused(client, history):
    """Asking for everyone's tickets is an admin option: a driver hears 403
    instead of getting their own list as if the option were understood."""
    for headers in (history["mine"], history["theirs"]):
        response = client.get("/api/tickets?all=true", headers=headers)
        assert response.status_code == 403
        assert response.get_json() == {"error": "Admin privileges required"}
    assert ids(client, history["mine"], "?all=false") == [history["open_b"], history["closed"]]


def test_ticket_paging_headers(client, clock, driver, make_lot, vehicle, auth_headers):
    lot = make_lot(spots=1)
    headers = auth_headers(driver)
    made = []
    for _ in range(5):
        ticket_id = book(client, headers, vehicle["id"], lot["spot_ids"][0])
        clock.advance(minutes=10)
        assert client.patch(f"/api/checkout/{ticket_id}", headers=headers).status_code == 200
        made.append(ticket_id)
    newest_first = made[::-1]

    first = client.get("/api/tickets?per_page=2", headers=headers)
    assert first.headers["X-Total-Count"] == "5"
    assert [t["id"] for t in first.get_json()] == newest_first[:2]
    assert set(links(first)) == {"first", "next", "last"}
    second = client.get(links(first)["next"], headers=headers)
    assert [t["id"] for t in second.get_json()] == newest_first[2:4]
    assert set(links(second)) == {"first", "prev", "next", "last"}
    last = client.get(links(first)["last"], headers=headers)
    assert [t["id"] for t in last.get_json()] == newest_first[4:]
    assert "page=3" in links(first)["last"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("active=maybe", "active must be true or false"),
        ("all=please", "all must be true or false"),
        ("lot_id=abc", "lot_id must be an integer"),
        ("lot_id=0", "lot_id must be between 1 and 2147483647"),
        ("page=0", "page must be between 1 and 1000000"),
        ("per_page=1001", "per_page must be between 1 and 1000"),
    ],
)
def test_invalid_values_are_400(client, driver, auth_headers, query, message):
    response = client.get(f"/api/tickets?{query}", headers=auth_headers(driver))
    assert response.status_code == 400
    assert response.get_json() == {"error": message}


def test_ticket_list_needs_a_token(client):
    response = client.get("/api/tickets")
    assert response.status_code == 401
    assert response.get_json() == {"error": "Missing Authorization Header"}
