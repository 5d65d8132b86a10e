"""Spots: GET/PATCH /api/spots/<id>, filters and pagination of GET /api/spots."""

import re

import pytest
from sqlalchemy import func, select

from models import ParkingSpot, Ticket, db


def spot_row(app, spot_id):
    with app.app_context():
        spot = db.session.get(ParkingSpot, spot_id)
        return spot.spot_number, spot.kind, spot.status


def set_spot(app, spot_id, **fields):
    with app.app_context():
        spot = db.session.get(ParkingSpot, spot_id)
        for name, value in fields.items():
            setattr(spot, name, value)
        db.session.commit()


def links(response) -> dict[str, str]:
    """The Link header as {rel: url}."""
    return {
        rel: url
        for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', response.headers.get("Link", ""))
    }


def page_of(url: str) -> tuple[int, int]:
    page = re.search(r"[?&]page=(\d+)", url).group(1)
    per_page = re.search(r"[?&]per_page=(\d+)", url).group(1)
    return int(page), int(per_page)


# ---------------------------------------------------------------------------
# GET /api/spots/<id>
# ---------------------------------------------------------------------------


def test_get_one_spot_is_public(client, lot):
    spot_id = lot["spot_ids"][1]
    response = client.get(f"/api/spots/{spot_id}")
    assert response.status_code == 200
    assert response.get_json() == {
        "id": spot_id,
        "spot_number": "A2",
        "status": "available",
        "lot": "Lot A",
        "lot_id": lot["id"],
        "kind": "standard",
        "reservable": False,
    }


def test_get_unknown_spot_is_404(client):
    response = client.get("/api/spots/999")
    assert response.status_code == 404
    assert response.get_json() == {"error": "Spot not found"}


# ---------------------------------------------------------------------------
# PATCH /api/spots/<id>
# ---------------------------------------------------------------------------


def test_rename_a_spot(app, client, admin, lot, auth_headers):
    spot_id = lot["spot_ids"][0]
    response = client.patch(
        f"/api/spots/{spot_id}", json={"spot_number": "A1-north"}, headers=auth_headers(admin)
    )
    assert response.status_code == 200
    assert response.get_json()["spot_number"] == "A1-north"
    assert spot_row(app, spot_id) == ("A1-north", "standard", "available")


def test_rename_to_a_taken_number_is_409(app, client, admin, lot, auth_headers):
    spot_id = lot["spot_ids"][0]
    response = client.patch(
        f"/api/spots/{spot_id}", json={"spot_number": "A2"}, headers=auth_headers(admin)
    )
    assert response.status_code == 409
    assert response.get_json() == {"error": "Spot number already exists in this lot"}
    assert spot_row(app, spot_id) == ("A1", "standard", "available")


def test_change_kind(app, client, admin, lot, auth_headers):
    spot_id = lot["spot_ids"][0]
    response = client.patch(
        f"/api/spots/{spot_id}", json={"kind": "ev"}, headers=auth_headers(admin)
    )
    assert response.status_code == 200
    assert response.get_json()["kind"] == "ev"
    assert spot_row(app, spot_id) == ("A1", "ev", "available")


def test_take_out_of_service_and_back(app, client, admin, lot, auth_headers):
    spot_id = lot["spot_ids"][0]
    headers = auth_headers(admin)
    out = client.patch(f"/api/spots/{spot_id}", json={"status": "out_of_service"}, headers=headers)
    assert out.status_code == 200
    assert out.get_json()["status"] == "out_of_service"
    assert spot_row(app, spot_id)[2] == "out_of_service"
    assert client.get(f"/api/spots/{spot_id}").get_json()["status"] == "out_of_service"

    back = client.patch(f"/api/spots/{spot_id}", json={"status": "available"}, headers=headers)
    assert back.status_code == 200
    assert back.get_json()["status"] == "available"
    assert spot_row(app, spot_id)[2] == "available"


def test_setting_the_current_status_again_is_harmless(app, client, admin, lot, auth_headers):
    spot_id = lot["spot_ids"][0]
    response = client.patch(
        f"/api/spots/{spot_id}", json={"status": "available"}, headers=auth_headers(admin)
    )
    assert response.status_code == 200
    assert spot_row(app, spot_id)[2] == "available"


def test_occupied_spot_cannot_go_out_of_service(
    app, client, admin, driver, lot, vehicle, auth_headers
):
    spot_id = lot["spot_ids"][0]
    booked = client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "parking_spot_id": spot_id},
        headers=auth_headers(driver),
    )
    assert booked.status_code == 201
    response = client.patch(
        f"/api/spots/{spot_id}", json={"status": "out_of_service"}, headers=auth_headers(admin)
    )
    assert response.status_code == 409
    assert response.get_json() == {"error": "Spot is occupied"}
    assert spot_row(app, spot_id)[2] == "occupied"
    with app.app_context():
        assert db.session.scalar(select(Ticket.check_out).where(Ticket.spot_id == spot_id)) is None


@pytest.mark.parametrize(
    ("body", "prefix"),
    [
        ({"status": "occupied"}, "status must be one of: available, out_of_service"),
        ({"status": "broken"}, "status must be one of: available, out_of_service"),
        ({"kind": "bus"}, "kind must be one of: standard, compact, large"),
        ({"kind": 3}, "kind must be a string"),
        ({"spot_number": ""}, "spot_number is required"),
        ({"spot_number": "X" * 33}, "spot_number must be at most 32 characters"),
    ],
)
def test_patch_spot_validation(app, client, admin, lot, auth_headers, body, prefix):
    spot_id = lot["spot_ids"][0]
    response = client.patch(f"/api/spots/{spot_id}", json=body, headers=auth_headers(admin))
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(prefix)
    assert spot_row(app, spot_id) == ("A1", "standard", "available")


def test_patch_spot_is_admin_only(app, client, driver, lot, auth_headers):
    spot_id = lot["spot_ids"][0]
    response = client.patch(
        f"/api/spots/{spot_id}", json={"status": "out_of_service"}, headers=auth_headers(driver)
    )
    assert response.status_code == 403
    assert response.get_json() == {"error": "Admin privileges required"}
    assert spot_row(app, spot_id)[2] == "available"


def test_patch_unknown_spot_is_404(client, admin, auth_headers):
    response = client.patch("/api/spots/999", json={"kind": "ev"}, headers=auth_headers(admin))
    assert response.status_code == 404
    assert response.get_json() == {"error": "Spot not found"}


def test_out_of_service_spots_cannot_be_booked(
    app, client, driver, make_lot, vehicle, auth_headers
):
    lot = make_lot(spots=1)
    spot_id = lot["spot_ids"][0]
    set_spot(app, spot_id, status="out_of_service")
    headers = auth_headers(driver)
    chosen = client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "parking_spot_id": spot_id},
        headers=headers,
    )
    assert chosen.status_code == 400
    assert chosen.get_json() == {"error": "Spot unavailable"}
    assigned = client.post(
        "/api/tickets", json={"vehicle_id": vehicle["id"], "lot_id": lot["id"]}, headers=headers
    )
    assert assigned.status_code == 409
    assert assigned.get_json() == {"error": "No spots available"}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Ticket)) == 0
    assert spot_row(app, spot_id)[2] == "out_of_service"


# ---------------------------------------------------------------------------
# GET /api/spots: filters and pagination
# ---------------------------------------------------------------------------


@pytest.fixture
def two_lots(app, make_lot):
    first = make_lot(spots=4)
    second = make_lot(name="Lot B", spots=3, prefix="B")
    set_spot(app, first["spot_ids"][0], kind="ev")
    set_spot(app, first["spot_ids"][1], status="out_of_service")
    set_spot(app, second["spot_ids"][0], kind="ev", status="out_of_service")
    return first, second


def test_filter_spots_by_lot_status_and_kind(client, two_lots):
    first, second = two_lots

    def ids(query):
        response = client.get(f"/api/spots?{query}")
        assert response.status_code == 200
        assert response.headers["X-Total-Count"] == str(len(response.get_json()))
        return [spot["id"] for spot in response.get_json()]

    assert ids(f"lot_id={first['id']}") == first["spot_ids"]
    assert ids(f"lot_id={second['id']}") == second["spot_ids"]
    assert ids("status=out_of_service") == [first["spot_ids"][1], second["spot_ids"][0]]
    assert ids("kind=ev") == [first["spot_ids"][0], second["spot_ids"][0]]
    assert ids(f"lot_id={first['id']}&kind=ev&status=available") == [first["spot_ids"][0]]
    assert ids(f"lot_id={second['id']}&status=available&kind=standard") == second["spot_ids"][1:]
    assert ids("kind=motorcycle") == []
    assert ids("status=occupied") == []
    assert ids("lot_id=999") == []


def test_spot_list_shows_kind_and_lot(client, two_lots):
    first, _ = two_lots
    spot = client.get(f"/api/spots?lot_id={first['id']}").get_json()[0]
    assert spot == {
        "id": first["spot_ids"][0],
        "spot_number": "A1",
        "status": "available",
        "lot": "Lot A",
        "lot_id": first["id"],
        "kind": "ev",
        "reservable": False,
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("lot_id=abc", "lot_id must be an integer"),
        ("lot_id=0", "lot_id must be between 1 and 2147483647"),
        ("lot_id=1.5", "lot_id must be an integer"),
        ("status=parked", "status must be one of: available, occupied, out_of_service"),
        ("kind=bus", "kind must be one of: standard, compact, large, motorcycle, ev, accessible"),
        ("page=0", "page must be between 1 and 1000000"),
        ("page=-1", "page must be between 1 and 1000000"),
        ("page=two", "page must be an integer"),
        ("per_page=0", "per_page must be between 1 and 1000"),
        ("per_page=1001", "per_page must be between 1 and 1000"),
        ("per_page=99999999999", "per_page must be an integer"),
    ],
)
def test_invalid_filters_and_paging_are_400(client, lot, query, message):
    response = client.get(f"/api/spots?{query}")
    assert response.status_code == 400
    assert response.get_json() == {"error": message}


def test_pagination_headers_and_page_contents(client, make_lot):
    lot = make_lot(spots=25)
    ids = lot["spot_ids"]

    first = client.get("/api/spots?per_page=10")
    assert first.status_code == 200
    assert first.headers["X-Total-Count"] == "25"
    assert [s["id"] for s in first.get_json()] == ids[:10]
    rels = links(first)
    assert set(rels) == {"first", "next", "last"}
    assert "cursor=" in rels["next"]  # keyset from the first page on
    assert [s["id"] for s in client.get(rels["next"]).get_json()] == ids[10:20]
    assert page_of(rels["last"]) == (3, 10)

    middle = client.get("/api/spots?per_page=10&page=2")
    assert [s["id"] for s in middle.get_json()] == ids[10:20]
    rels = links(middle)
    assert set(rels) == {"first", "prev", "next", "last"}
    assert page_of(rels["first"]) == (1, 10)
    assert page_of(rels["prev"]) == (1, 10)
    assert page_of(rels["next"]) == (3, 10)
    assert page_of(rels["last"]) == (3, 10)
    assert rels["next"].startswith("http://localhost/api/spots?")

    last = client.get(rels["last"])
    assert last.status_code == 200
    assert [s["id"] for s in last.get_json()] == ids[20:]
    assert set(links(last)) == {"first", "prev", "last"}

    beyond = client.get("/api/spots?per_page=10&page=9")
    assert beyond.status_code == 200
    assert beyond.get_json() == []
    assert beyond.headers["X-Total-Count"] == "25"
    assert page_of(links(beyond)["prev"]) == (3, 10)


def test_links_keep_the_filters(client, make_lot):
    lot = make_lot(spots=5)
    make_lot(name="Lot B", spots=5, prefix="B")
    response = client.get(f"/api/spots?lot_id={lot['id']}&status=available&per_page=2")
    assert response.headers["X-Total-Count"] == "5"
    following = client.get(links(response)["next"])
    assert [s["id"] for s in following.get_json()] == lot["spot_ids"][2:4]
    assert f"lot_id={lot['id']}" in links(response)["next"]
    assert "status=available" in links(response)["next"]


def test_default_page_size_is_100_and_max_is_1000(client, make_lot):
    make_lot(spots=1200)
    default = client.get("/api/spots")
    assert len(default.get_json()) == 100
    assert default.headers["X-Total-Count"] == "1200"
    biggest = client.get("/api/spots?per_page=1000")
    assert biggest.status_code == 200
    assert len(biggest.get_json()) == 1000
    assert page_of(links(biggest)["last"]) == (2, 1000)
    rest = client.get("/api/spots?per_page=1000&page=2")
    assert len(rest.get_json()) == 200


def test_empty_list_has_headers(client):
    response = client.get("/api/spots")
    assert response.status_code == 200
    assert response.get_json() == []
    assert response.headers["X-Total-Count"] == "0"
    assert set(links(response)) == {"first", "last"}
