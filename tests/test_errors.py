"""Every error is JSON `{"error": ...}` with the right status, never an HTML page.

Unknown routes, wrong methods, oversized, malformed and non-object bodies,
wrong JSON types, over-long strings and unknown ids all get a clear 4xx; an
unexpected exception is logged, rolled back and answered with a JSON 500.
"""

import logging

import pytest
from sqlalchemy import func, select

from models import ParkingLot, Ticket, User, Vehicle, db


def assert_json_error(response, status, message=None):
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json"
    assert b"<html" not in response.get_data().lower()
    body = response.get_json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str) and body["error"]
    if message is not None:
        assert body["error"] == message


def row_counts(app) -> dict:
    with app.app_context():
        return {
            model.__name__: db.session.scalar(select(func.count()).select_from(model))
            for model in (User, Vehicle, ParkingLot, Ticket)
        }


@pytest.fixture
def endpoints(driver, admin, auth_headers):
    """(method, url, headers) of every endpoint that reads a JSON body."""
    driver_headers, admin_headers = auth_headers(driver), auth_headers(admin)
    return [
        ("POST", "/api/register", {}),
        ("POST", "/api/login", {}),
        ("POST", "/api/vehicles", driver_headers),
        ("POST", "/api/tickets", driver_headers),
        ("POST", "/api/parking-lots", admin_headers),
    ]


# ---------------------------------------------------------------------------
# Routing: 404, 405, 413
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/api/nope", "/nope", "/", "/api/checkout/abc", "/api/checkout/-1"]
)
def test_unknown_route_is_json_404(client, url):
    assert_json_error(client.get(url), 404, "Not found")
    assert_json_error(client.patch(url), 404, "Not found")


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("DELETE", "/api/register"),
        ("GET", "/api/login"),
        ("PUT", "/api/vehicles"),
        ("POST", "/api/spots"),
        ("GET", "/api/checkout/1"),
        ("POST", "/api/test-db"),
    ],
)
def test_wrong_method_is_json_405(client, method, url):
    response = client.open(url, method=method)

    assert_json_error(response, 405, "Method not allowed")
    assert method not in response.headers["Allow"]


def test_body_over_one_mebibyte_is_413(client, app):
    body = b'{"username": "' + b"x" * (1024 * 1024) + b'"}'
    response = client.post("/api/register", data=body, content_type="application/json")

    assert_json_error(response, 413, "Request body too large (limit 1 MiB)")
    assert row_counts(app)["User"] == 0


def test_body_just_under_the_limit_is_read(client):
    padding = "x" * (1024 * 1024 - 100)
    response = client.post("/api/login", json={"email": "a@example.com", "password": padding})

    assert_json_error(response, 401, "Invalid email or password")


# ---------------------------------------------------------------------------
# Bodies that are not a JSON object
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["{bad", '{"username": "a"', "{'a': 1}", "nul", "[1,", '{"a": 1}}'])
def test_malformed_json_is_400(client, app, endpoints, raw):
    for method, url, headers in endpoints:
        response = client.open(
            url, method=method, data=raw, content_type="application/json", headers=headers
        )
        assert_json_error(response, 400, "Request body must be valid JSON")
    assert row_counts(app) == {"User": 2, "Vehicle": 0, "ParkingLot": 0, "Ticket": 0}


@pytest.mark.parametrize("raw", ["[]", '[{"username": "a"}]', '"a string"', "null", "42", "true"])
def test_non_object_json_is_400(client, app, endpoints, raw):
    for method, url, headers in endpoints:
        response = client.open(
            url, method=method, data=raw, content_type="application/json", headers=headers
        )
        assert_json_error(response, 400, "Request body must be a JSON object")
    assert row_counts(app) == {"User": 2, "Vehicle": 0, "ParkingLot": 0, "Ticket": 0}


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_body_not_sent_as_json_is_400(client, app, endpoints, content_type):
    for method, url, headers in endpoints:
        response = client.open(
            url,
            method=method,
            data='{"username": "a", "email": "a@example.com", "password": "password123"}',
            content_type=content_type,
            headers=headers,
        )
        assert_json_error(response, 400, "Content-Type must be application/json")
    assert row_counts(app) == {"User": 2, "Vehicle": 0, "ParkingLot": 0, "Ticket": 0}


def test_invalid_utf8_is_400(client, app):
    response = client.post(
        "/api/register", data=b'{"username": "\xff\xfe"}', content_type="application/json"
    )

    assert_json_error(response, 400)
    assert row_counts(app)["User"] == 0


# ---------------------------------------------------------------------------
# Wrong JSON types
# ---------------------------------------------------------------------------


REGISTER = {"username": "newuser", "email": "new@example.com", "password": "password123"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"username": 123}, "username must be a string"),
        ({"username": ["a"]}, "username must be a string"),
        ({"username": True}, "username must be a string"),
        ({"email": {"a": 1}}, "email must be a string"),
        ({"email": 5}, "email must be a string"),
        ({"password": 12345678}, "password must be a string"),
        ({"password": ["password123"]}, "password must be a string"),
    ],
)
def test_register_wrong_types(client, app, override, message):
    response = client.post("/api/register", json={**REGISTER, **override})

    assert_json_error(response, 400, message)
    assert row_counts(app)["User"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"email": 5, "password": "password123"},
        {"email": ["driver@example.com"], "password": "password123"},
        {"email": "driver@example.com", "password": 12345678},
        {"email": "driver@example.com", "password": None},
    ],
)
def test_login_wrong_types(client, driver, body):
    response = client.post("/api/login", json=body)

    assert response.status_code == 400
    assert_json_error(response, 400)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"vehicle_id": True}, "vehicle_id must be an integer"),
        ({"vehicle_id": "1"}, "vehicle_id must be an integer"),
        ({"vehicle_id": 1.5}, "vehicle_id must be an integer"),
        ({"vehicle_id": [1]}, "vehicle_id must be an integer"),
        ({"parking_spot_id": True}, "parking_spot_id must be an integer"),
        ({"parking_spot_id": "abc"}, "parking_spot_id must be an integer"),
        ({"parking_spot_id": {"id": 1}}, "parking_spot_id must be an integer"),
        ({"vehicle_id": -1}, "vehicle_id must be between 1 and 2147483647"),
        ({"vehicle_id": 2**31}, "vehicle_id must be between 1 and 2147483647"),
        ({"parking_spot_id": 10**30}, "parking_spot_id must be between 1 and 2147483647"),
    ],
)
def test_ticket_wrong_types(client, app, driver, vehicle, lot, auth_headers, override, message):
    body = {"vehicle_id": vehicle["id"], "parking_spot_id": lot["spot_ids"][0], **override}
    response = client.post("/api/tickets", json=body, headers=auth_headers(driver))

    assert_json_error(response, 400, message)
    assert row_counts(app)["Ticket"] == 0


def test_ticket_id_given_as_whole_float_is_accepted(client, driver, vehicle, lot, auth_headers):
    body = {"vehicle_id": float(vehicle["id"]), "parking_spot_id": float(lot["spot_ids"][0])}
    response = client.post("/api/tickets", json=body, headers=auth_headers(driver))

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"plate_number": 123}, "plate_number must be a string"),
        ({"plate_number": ["KCB 1"]}, "plate_number must be a string"),
        ({"plate_number": "KCB 1", "type": 4}, "type must be a string"),
    ],
)
def test_vehicle_wrong_types(client, app, driver, auth_headers, body, message):
    response = client.post("/api/vehicles", json=body, headers=auth_headers(driver))

    assert_json_error(response, 400, message)
    assert row_counts(app)["Vehicle"] == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": 5, "location": "Westlands"}, "name must be a string"),
        ({"name": "Lot B", "location": ["Westlands"]}, "location must be a string"),
    ],
)
def test_lot_wrong_types(client, app, admin, auth_headers, body, message):
    response = client.post("/api/parking-lots", json=body, headers=auth_headers(admin))

    assert_json_error(response, 400, message)
    assert row_counts(app)["ParkingLot"] == 0


# ---------------------------------------------------------------------------
# Over-long strings and NUL characters
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"username": "u" * 65}, "username must be at most 64 characters"),
        ({"email": "e" * 243 + "@example.com"}, "email must be at most 254 characters"),
        ({"password": "p" * 129}, "Password must be at most 128 characters"),
        ({"username": "a\x00b"}, "username must not contain NUL characters"),
        ({"password": "password\x00123"}, "password must not contain NUL characters"),
    ],
)
def test_register_over_long_or_nul(client, app, override, message):
    response = client.post("/api/register", json={**REGISTER, **override})

    assert_json_error(response, 400, message)
    assert row_counts(app)["User"] == 0


def test_register_accepts_the_length_limits(client, app):
    body = {"username": "u" * 64, "email": "e" * 242 + "@example.com", "password": "p" * 128}
    response = client.post("/api/register", json=body)

    assert response.status_code == 201
    assert len(response.get_json()["user"]["email"]) == 254


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"plate_number": "K" * 65}, "plate_number must be at most 64 characters"),
        ({"plate_number": "K" * 17}, "plate_number must be at most 16 characters"),
        ({"plate_number": "KCB 1", "type": "t" * 33}, "type must be at most 32 characters"),
    ],
)
def test_vehicle_over_long(client, app, driver, auth_headers, body, message):
    response = client.post("/api/vehicles", json=body, headers=auth_headers(driver))

    assert_json_error(response, 400, message)
    assert row_counts(app)["Vehicle"] == 0


def test_plate_limit_counts_after_whitespace_is_collapsed(client, driver, auth_headers):
    response = client.post(
        "/api/vehicles", json={"plate_number": "KCB     1234567890"}, headers=auth_headers(driver)
    )

    assert response.status_code == 201
    assert response.get_json()["plate_number"] == "KCB 1234567890"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "n" * 121, "location": "Westlands"}, "name must be at most 120 characters"),
        ({"name": "Lot B", "location": "l" * 256}, "location must be at most 255 characters"),
    ],
)
def test_lot_over_long(client, app, admin, auth_headers, body, message):
    response = client.post("/api/parking-lots", json=body, headers=auth_headers(admin))

    assert_json_error(response, 400, message)
    assert row_counts(app)["ParkingLot"] == 0


# ---------------------------------------------------------------------------
# Unknown ids
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ticket_id", [999_999, 2**31 - 1, 2**31, 10**20])
def test_checkout_unknown_id(client, driver, auth_headers, ticket_id):
    response = client.patch(f"/api/checkout/{ticket_id}", headers=auth_headers(driver))

    assert 400 <= response.status_code < 500
    assert_json_error(response, response.status_code)


def test_book_unknown_ids(client, app, driver, auth_headers):
    response = client.post(
        "/api/tickets",
        json={"vehicle_id": 2**31 - 1, "parking_spot_id": 2**31 - 1},
        headers=auth_headers(driver),
    )

    assert_json_error(response, 400, "Spot unavailable")
    assert row_counts(app)["Ticket"] == 0


# ---------------------------------------------------------------------------
# Unexpected exceptions
# ---------------------------------------------------------------------------


def test_unexpected_exception_is_json_500_and_rolled_back(app, caplog):
    seen = {}

    def explode():
        db.session.add(User(username="ghost", email="ghost@example.com", password_hash="x"))
        db.session.flush()  # the INSERT has run inside the request's transaction
        raise RuntimeError("kaboom")

    app.add_url_rule("/api/_explode", "explode", explode, methods=["POST"])

    @app.after_request
    def record_transaction(response):
        seen["in_transaction"] = db.session().in_transaction()
        return response

    caplog.set_level(logging.ERROR)
    response = app.test_client().post("/api/_explode")

    assert_json_error(response, 500, "Internal server error")
    assert "kaboom" not in response.get_data(as_text=True)
    # The handler rolled back before the response went out, not only at teardown.
    assert seen == {"in_transaction": False}
    assert row_counts(app)["User"] == 0
    [record] = [r for r in caplog.records if "Unhandled exception" in r.getMessage()]
    assert "/api/_explode" in record.getMessage()
    assert record.exc_info and record.exc_info[0] is RuntimeError
