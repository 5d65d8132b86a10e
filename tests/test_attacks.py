"""Attack tests: every route against malformed input, other users' objects,
missing privileges and mass assignment.

Routes are read from `app.url_map`, so a new route is attacked automatically.
The tables below (request bodies, admin routes, object routes, mass-assignment
cases) describe what each route expects; sync tests fail when a route is added
without being described, so the tables cannot fall behind silently.
"""

import itertools
import math
import re
from datetime import UTC, datetime

import pytest
from conftest import TABLES
from sqlalchemy import select, text

import routes
import webhooks
from app import create_app
from config import TestConfig
from endpoints import ADMIN
from models import (
    Device,
    ParkingLot,
    ParkingSpot,
    Permit,
    Reservation,
    RevokedToken,
    Ticket,
    User,
    Vehicle,
    Webhook,
    WebhookDelivery,
    db,
    utcnow,
)

# Every (METHOD, rule) of the app, read once at collection.
ROUTES = sorted(
    (method, rule.rule)
    for rule in create_app(TestConfig).url_map.iter_rules()
    for method in rule.methods - {"HEAD", "OPTIONS"}
)
PATH_ARG = re.compile(r"<(?:(\w+):)?(\w+)>")
HUGE = 10**30
PASSWORD = "password123"
ERROR_EXTRAS = {"ticket_id", "amount_due", "amount_paid", "balance", "currency", "candidates"}


def route_id(route) -> str:
    return f"{route[0]} {route[1]}"


# ---------------------------------------------------------------------------
# The world every attack runs against
# ---------------------------------------------------------------------------


class World(dict):
    """Ids of the objects of three users: `admin`, `victim` (a driver) and `attacker`."""

    __getattr__ = dict.__getitem__


def api_token(app, user_id: int, kind: str = "token") -> str:
    """A token as the API would issue it now (current role and token version)."""
    with app.app_context():
        return routes.issue_tokens(db.session.get(User, user_id))[kind]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def world(app, client, clock, make_user, make_lot, make_vehicle):
    admin = make_user(username="boss", email="boss@example.com", role="admin")
    victim = make_user(username="victim", email="victim@example.com")
    attacker = make_user(username="attacker", email="attacker@example.com")
    lot = make_lot(spots=10, prefix="A", hourly_rate=10_000)
    other_lot = make_lot(name="Lot B", spots=3, prefix="B")
    ids = World(
        admin=admin["id"],
        victim=victim["id"],
        attacker=attacker["id"],
        lot=lot["id"],
        other_lot=other_lot["id"],
        spots=lot["spot_ids"],
        admin_vehicle=make_vehicle(admin, plate="KAA 001A")["id"],
        admin_spare_vehicle=make_vehicle(admin, plate="KAA 002A")["id"],
        victim_vehicle=make_vehicle(victim, plate="KVV 001V")["id"],
        victim_spare_vehicle=make_vehicle(victim, plate="KVV 002V")["id"],
        attacker_vehicle=make_vehicle(attacker, plate="KXX 001X")["id"],
    )
    for owner, vehicle, spot in (
        ("admin", ids.admin_vehicle, ids.spots[0]),
        ("victim", ids.victim_vehicle, ids.spots[1]),
    ):
        booked = client.post(
            "/api/tickets",
            json={"vehicle_id": vehicle, "parking_spot_id": spot},
            headers=bearer(api_token(app, ids[owner])),
        )
        assert booked.status_code == 201, booked.get_json()
        ids[f"{owner}_ticket"] = booked.get_json()["ticket_id"]
    # Staff objects: an attendant of Lot B, a device of Lot B, a permit.
    attendant = make_user(username="gatekeeper", email="gate@example.com", role="attendant")
    ids["attendant"] = attendant["id"]
    admin_headers = bearer(api_token(app, ids.admin))
    assigned = client.put(
        f"/api/parking-lots/{ids.other_lot}/staff/{attendant['id']}", headers=admin_headers
    )
    assert assigned.status_code == 200, assigned.get_json()
    device = client.post(
        f"/api/parking-lots/{ids.other_lot}/devices", json={"name": "B gate"}, headers=admin_headers
    )
    assert device.status_code == 201, device.get_json()
    ids["device"] = device.get_json()["id"]
    permit = client.post(
        "/api/permits",
        json={
            "plate_numbers": ["KPE 001P"],
            "lot_ids": [],
            "valid_from": "2026-01-01T00:00:00Z",
            "valid_to": "2026-12-31T00:00:00Z",
        },
        headers=admin_headers,
    )
    assert permit.status_code == 201, permit.get_json()
    ids["permit"] = permit.get_json()["id"]
    with app.app_context():
        # Pinging it is refused at once: nothing listens on the discard port.
        hook = Webhook(
            url=DEAD_HOOK, events=["lot.full"], secret=webhooks.new_secret(), created_at=utcnow()
        )
        db.session.add(hook)
        db.session.commit()
        ids["webhook"] = hook.id
    # Reservations: Lot R's three spots host them; each user holds one that
    # starts ten minutes from the clock's now (check-in is open).
    rlot = make_lot(name="Lot R", spots=3, prefix="R", hourly_rate=10_000)
    ids["rlot"] = rlot["id"]
    with app.app_context():
        for spot_id in rlot["spot_ids"]:
            db.session.get(ParkingSpot, spot_id).reservable = True
        db.session.commit()
    for owner, vehicle in (
        ("admin", ids.admin_spare_vehicle),
        ("victim", ids.victim_spare_vehicle),
        ("attacker", ids.attacker_vehicle),
    ):
        reserved = client.post(
            "/api/reservations",
            json={
                "lot_id": ids.rlot,
                "vehicle_id": vehicle,
                "start": "2026-01-15T08:10:00Z",
                "end": "2026-01-15T09:10:00Z",
            },
            headers=bearer(api_token(app, ids[owner])),
        )
        assert reserved.status_code == 201, reserved.get_json()
        ids[f"{owner}_reservation"] = reserved.get_json()["id"]
    return ids


DEAD_HOOK = "http://127.0.0.1:9/hook"


def path_for(rule: str, world: World, user: str, overrides: dict | None = None) -> str:
    """The rule with real ids of `user`'s objects (or `overrides`) in its placeholders."""
    values = {
        "vehicle_id": world[f"{user}_vehicle"] if f"{user}_vehicle" in world else 1,
        "ticket_id": world.get(f"{user}_ticket", 1),
        "lot_id": world.lot,
        "spot_id": world.spots[5],
        "user_id": world.attendant,
        "device_id": world.device,
        "permit_id": world.permit,
        "filename": "app.js",
        "webhook_id": world.webhook,
        "reservation_id": world.get(f"{user}_reservation", 1),
        **(overrides or {}),
    }
    return PATH_ARG.sub(lambda m: str(values.get(m.group(2), 1)), rule)


# ---------------------------------------------------------------------------
# What each route reads: valid bodies (a function of the world and a counter)
# ---------------------------------------------------------------------------

_counter = itertools.count(1)


def _lot_fields():
    return {
        "name": "Lot N",
        "location": "Kilimani",
        "timezone": "Africa/Nairobi",
        "currency": "KES",
        "hourly_rate": 5000,
        "billing_increment_minutes": 30,
        "grace_minutes": 5,
        "daily_max": 40_000,
    }


BODIES = {
    ("POST", "/api/register"): [
        lambda app, w, n: {
            "username": f"user{n}",
            "email": f"user{n}@example.com",
            "password": PASSWORD,
        }
    ],
    ("POST", "/api/login"): [lambda app, w, n: {"email": "boss@example.com", "password": PASSWORD}],
    ("POST", "/api/logout"): [
        lambda app, w, n: {"refresh_token": api_token(app, w.admin, "refresh_token")}
    ],
    ("PATCH", "/api/me/password"): [
        lambda app, w, n: {"current_password": PASSWORD, "new_password": "new-password-1"}
    ],
    ("POST", "/api/vehicles"): [lambda app, w, n: {"plate_number": f"KDA {n:03}X", "type": "SUV"}],
    ("PATCH", "/api/vehicles/<int:vehicle_id>"): [
        lambda app, w, n: {"plate_number": f"KDB {n:03}X", "type": "Van"}
    ],
    ("POST", "/api/parking-lots"): [
        lambda app, w, n: {
            **_lot_fields(),
            "spot_count": 2,
            "spot_prefix": "N",
            "kind": "standard",
        }
    ],
    ("PATCH", "/api/parking-lots/<int:lot_id>"): [lambda app, w, n: _lot_fields()],
    ("POST", "/api/parking-lots/<int:lot_id>/spots"): [
        lambda app, w, n: {"count": 2, "prefix": f"Z{n}-", "kind": "compact"},
        lambda app, w, n: {"spot_number": f"S{n}", "kind": "ev"},
    ],
    ("PATCH", "/api/spots/<int:spot_id>"): [
        lambda app, w, n: {"spot_number": f"Q{n}", "kind": "ev", "status": "out_of_service"}
    ],
    ("POST", "/api/webhooks"): [
        lambda app, w, n: {"url": DEAD_HOOK, "events": ["lot.full"], "description": f"Hook {n}"}
    ],
    ("POST", "/api/tickets"): [
        lambda app, w, n: {"vehicle_id": w.admin_spare_vehicle, "parking_spot_id": w.spots[6]},
        lambda app, w, n: {
            "vehicle_id": w.admin_spare_vehicle,
            "lot_id": w.lot,
            "kind": "standard",
        },
    ],
    ("POST", "/api/parking-lots/<int:lot_id>/entries"): [
        lambda app, w, n: {"plate_number": f"KGE {n:03}G", "kind": "standard"},
        lambda app, w, n: {"plate_number": f"KGF {n:03}G", "spot_id": w.spots[7]},
    ],
    ("POST", "/api/parking-lots/<int:lot_id>/exits"): [
        lambda app, w, n: {"plate_number": "KVV 001V"},
    ],
    ("POST", "/api/tickets/<int:ticket_id>/payments"): [
        lambda app, w, n: {"amount": 1, "method": "cash", "reference": f"R{n}"},
    ],
    ("PATCH", "/api/users/<int:user_id>"): [lambda app, w, n: {"role": "driver"}],
    ("POST", "/api/parking-lots/<int:lot_id>/devices"): [lambda app, w, n: {"name": f"Gate {n}"}],
    ("POST", "/api/reservations"): [
        lambda app, w, n: {
            "lot_id": w.rlot,
            "vehicle_id": w.admin_spare_vehicle,
            "start": f"2026-01-{16 + n % 40 // 20:02}T{n % 20:02}:00:00Z",
            "end": f"2026-01-{16 + n % 40 // 20:02}T{n % 20:02}:30:00Z",
            "kind": "standard",
        }
    ],
    ("POST", "/api/permits"): [
        lambda app, w, n: {
            "plate_numbers": [f"KPP {n:03}P"],
            "lot_ids": [w.lot],
            "valid_from": "2026-01-01T00:00:00+03:00",
            "valid_to": "2026-02-01T00:00:00Z",
            "note": "season",
        }
    ],
}
# POST/PATCH routes that read no body at all.
NO_BODY = {
    ("PATCH", "/api/checkout/<int:ticket_id>"),
    ("POST", "/api/token/refresh"),
    ("POST", "/api/webhooks/<int:webhook_id>/test"),
    ("POST", "/api/reservations/<int:reservation_id>/cancel"),
    ("POST", "/api/reservations/<int:reservation_id>/check-in"),
}
# Routes that take a refresh token instead of an access token.
REFRESH_ROUTES = {("POST", "/api/token/refresh")}
# Valid query strings for routes that need one.
QUERIES = {
    ("GET", "/api/parking-lots/<int:lot_id>/quote"): {"minutes": "90"},
    ("GET", "/api/parking-lots/<int:lot_id>/report"): {"from": "2026-01-01", "to": "2026-01-31"},
    ("GET", "/api/parking-lots/<int:lot_id>/check"): {"plate": "KVV 001V"},
    ("GET", "/api/parking-lots/<int:lot_id>/availability"): {
        "start": "2026-01-16T10:00:00Z",
        "end": "2026-01-16T12:00:00Z",
    },
}
QUERY_PARAMS = (
    "page",
    "per_page",
    "lot_id",
    "status",
    "kind",
    "active",
    "all",
    "minutes",
    "from",
    "to",
    "format",
    "plate",
    "role",
    "actor",
)

STRING_FIELDS = {
    "username",
    "email",
    "password",
    "refresh_token",
    "current_password",
    "new_password",
    "plate_number",
    "type",
    "name",
    "location",
    "timezone",
    "currency",
    "spot_prefix",
    "prefix",
    "spot_number",
    "kind",
    "status",
    "method",
    "reference",
    "reason",
    "role",
    "valid_from",
    "valid_to",
    "note",
    "url",
    "description",
}
INT_FIELDS = {
    "amount",
    "spot_id",
    "hourly_rate",
    "billing_increment_minutes",
    "grace_minutes",
    "daily_max",
    "spot_count",
    "count",
    "vehicle_id",
    "parking_spot_id",
    "lot_id",
}

LIST_FIELDS = {"plate_numbers", "lot_ids"}

# Values that are wrong for every field of the type: the answer must be a 4xx.
BAD_FOR_STRINGS = [True, 1.5, HUGE, [], {"$ne": ""}, "x" * 10_000, "a\x00b", "ok\udfff"]
BAD_FOR_INTS = [True, False, 1.5, 1e308, HUGE, 2**31, -1, math.nan, "1", [], {}]
BAD_FOR_LISTS = ["KCB 1", 5, True, {}, [None], [True], [[]], [HUGE], ["x" * 10_000], [0] * 1000]
# Odd values that may be valid somewhere: never a 5xx, whatever the answer.
ODD_VALUES = [
    None,
    0,
    "",
    "Ωmega ✓ 🚗 مرحبا 中文",
    "é" * 300,
    "America",
    "../../etc/passwd",
    "' OR 1=1 --",
    "\u202e\u200b",
    "9" * 5000,
    2**63,
]
# Whole bodies: (description, raw bytes or None, content type, body-reading route answers 400).
RAW_BODIES = [
    ("missing body", None, None, False),
    ("empty body", b"", "application/json", False),
    ("whitespace", b"  \n ", "application/json", False),
    ("not JSON", b"hello", "application/json", True),
    ("broken JSON", b'{"email": ', "application/json", True),
    ("JSON array", b'[{"email": "a@example.com"}]', "application/json", True),
    ("JSON string", b'"payload"', "application/json", True),
    ("JSON number", b"42", "application/json", True),
    ("JSON huge number", b"1" + b"0" * 5000, "application/json", True),
    ("JSON null", b"null", "application/json", True),
    ("JSON true", b"true", "application/json", True),
    ("NaN", b"NaN", "application/json", True),
    ("deeply nested", b"[" * 100_000 + b"]" * 100_000, "application/json", True),
    ("deeply nested object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json", True),
    ("lone surrogate", b'{"email": "\\ud800@example.com"}', "application/json", True),
    ("invalid UTF-8", b'{"email": "\xff\xfe@example.com"}', "application/json", True),
    ("NUL byte", b'{"email": "a\x00b"}', "application/json", True),
    (
        "form-encoded",
        b"email=a%40example.com&password=x",
        "application/x-www-form-urlencoded",
        True,
    ),
    ("text/plain JSON", b'{"email": "a@example.com"}', "text/plain", True),
    ("duplicate keys", b'{"role": "driver", "role": "admin"}', "application/json", False),
]
PATH_VALUES = ["0", "-1", "00", str(2**31), str(2**63), str(HUGE), "1.5", "abc", "%00", "%C3%A9"]
QUERY_VALUES = [
    "-1",
    "0",
    "99999999999999999999",
    "1e3",
    "abc",
    "%00",
    "%FF",
    "\u00e9\U0001f697",
    "x" * 5000,
    "0001-01-01",
    "9999-12-31",
    "2026-02-30",
    "true",
    "csv",
]


def assert_sane(response, context, *, client_error=False):
    """Never a 5xx; errors are JSON {"error": "..."}; `client_error` demands a 4xx.

    Successful answers may be CSV (reports) or the docs' HTML and assets."""
    status = response.status_code
    body = response.get_data(as_text=True)[:300]
    assert status < 500, f"{context}: {status} {body}"
    if status >= 400:
        assert response.is_json, f"{context}: not JSON: {status} {body}"
        error = response.get_json()
        assert isinstance(error, dict) and "error" in error, f"{context}: {error}"
        # Only the documented richer errors carry more (a 402's balance, an exit's candidates).
        assert set(error) - {"error"} <= ERROR_EXTRAS, f"{context}: {error}"
        assert isinstance(error["error"], str) and error["error"], context
    if client_error:
        assert 400 <= status < 500, f"{context}: expected 4xx, got {status} {body}"


class Attacker:
    """Sends requests to one route as the admin, with a fresh token each time."""

    def __init__(self, app, client, world, route):
        self.app, self.client, self.world, self.route = app, client, world, route
        self.method, self.rule = route

    def headers(self) -> dict:
        kind = "refresh_token" if self.route in REFRESH_ROUTES else "token"
        return bearer(api_token(self.app, self.world.admin, kind))

    def bodies(self) -> list[dict]:
        return [make(self.app, self.world, next(_counter)) for make in BODIES.get(self.route, [])]

    def send(self, *, path=None, json=None, data=None, content_type=None, query=None):
        kwargs = {"method": self.method, "headers": self.headers(), "query_string": query}
        if json is not None:
            kwargs["json"] = json
        elif data is not None:
            kwargs["data"] = data
            if content_type:
                kwargs["content_type"] = content_type
        url = path or path_for(self.rule, self.world, "admin")
        return self.client.open(url, **kwargs)


def reads_body(route) -> bool:
    return route[0] in {"POST", "PATCH"} and route not in NO_BODY


# ---------------------------------------------------------------------------
# (1) Malformed input, table-driven over every route
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_malformed_bodies_never_cause_a_5xx(app, client, world, route):
    attacker = Attacker(app, client, world, route)
    for description, raw, content_type, invalid in RAW_BODIES:
        response = attacker.send(data=raw, content_type=content_type)
        assert_sane(response, f"{route_id(route)} {description}", client_error=False)
        if invalid and reads_body(route):
            assert 400 <= response.status_code < 500, (description, response.get_json())
    too_large = attacker.send(
        data=b"{" + b" " * (1024 * 1024) + b"}", content_type="application/json"
    )
    if reads_body(route):
        assert too_large.status_code == 413
        assert too_large.get_json() == {"error": "Request body too large (limit 1 MiB)"}
    else:
        assert_sane(too_large, f"{route_id(route)} too large")


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_wrong_field_types_and_values_never_cause_a_5xx(app, client, world, route):
    attacker = Attacker(app, client, world, route)
    for make in BODIES.get(route, []):
        for field in sorted(make(app, world, 0)):
            strict = BAD_FOR_STRINGS if field in STRING_FIELDS else BAD_FOR_INTS
            if field in LIST_FIELDS:
                strict = BAD_FOR_LISTS
            for value in strict:
                base = make(app, world, next(_counter))  # fresh: unique names, live tokens
                response = attacker.send(json={**base, field: value})
                context = f"{route_id(route)} {field}={value!r:.40}"
                assert_sane(response, context, client_error=route in BODIES)
            for value in ODD_VALUES:
                response = attacker.send(json={**make(app, world, next(_counter)), field: value})
                assert_sane(response, f"{route_id(route)} {field}={value!r:.40}")
    # Every known field at once (for routes without a body: that they ignore it).
    for value in BAD_FOR_STRINGS + BAD_FOR_INTS + ODD_VALUES:
        body = dict.fromkeys(STRING_FIELDS | INT_FIELDS, value)
        assert_sane(attacker.send(json=body), f"{route_id(route)} all fields={value!r:.40}")


@pytest.mark.parametrize("route", [r for r in ROUTES if PATH_ARG.search(r[1])], ids=route_id)
def test_bad_ids_in_the_path_are_4xx(app, client, world, route):
    """Not a number: no route matches (404). A number beyond the integer range
    names nothing, like 0: the route's own not-found answer."""
    attacker = Attacker(app, client, world, route)
    body = (attacker.bodies() or [{}])[0]

    def send(value):
        return attacker.send(path=PATH_ARG.sub(lambda m: value, route[1]), json=body)

    nothing = send("0")
    assert_sane(nothing, f"{route_id(route)} path=0", client_error=True)
    for value in PATH_VALUES:
        response = send(value)
        assert_sane(response, f"{route_id(route)} path={value}", client_error=True)
        if "int:" not in route[1]:
            continue
        if value.isdigit():
            assert response.status_code == nothing.status_code, value
            assert response.get_json() == nothing.get_json(), value
        else:
            assert response.status_code == 404, (value, response.get_json())


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if r[0] == "GET" and "int:" in r[1]], ids=route_id
)
def test_unknown_ids_in_the_path_are_404(app, client, world, route):
    """0 and the largest integer are valid ids that name nothing."""
    attacker = Attacker(app, client, world, route)
    for value in ("0", str(2**31 - 1)):
        path = PATH_ARG.sub(lambda m, v=value: v, route[1])
        response = attacker.send(path=path, query=QUERIES.get(route))
        assert response.status_code == 404, (value, response.get_json())
        assert response.get_json()["error"].endswith("not found"), response.get_json()


@pytest.mark.parametrize("route", [r for r in ROUTES if r[0] == "GET"], ids=route_id)
def test_odd_query_strings_never_cause_a_5xx(app, client, world, route):
    attacker = Attacker(app, client, world, route)
    base = QUERIES.get(route, {})
    for param, value in itertools.product(QUERY_PARAMS, QUERY_VALUES):
        if value.startswith("%"):
            query = "&".join(f"{k}={v}" for k, v in {**base, param: value}.items())
        else:
            query = {**base, param: value}
        response = attacker.send(query=query)
        assert_sane(response, f"{route_id(route)} ?{param}={value[:20]}")


def test_ids_in_bodies_beyond_the_integer_range_are_400(app, client, world):
    headers = bearer(api_token(app, world.admin))
    for value in (0, -1, 2**31, HUGE, -HUGE):
        response = client.post(
            "/api/tickets",
            json={"vehicle_id": world.admin_spare_vehicle, "parking_spot_id": value},
            headers=headers,
        )
        assert response.status_code == 400, (value, response.get_json())


def test_body_checks_give_clear_messages(app, client, world):
    headers = bearer(api_token(app, world.admin))
    cases = [
        (b"[" * 100_000 + b"]" * 100_000, "Request body must be valid JSON"),
        (b'{"plate_number": "\\ud800"}', "Request body must be valid UTF-8 text"),
        (b'{"plate_number": "ok", "x": ["\\udfff"]}', "Request body must be valid UTF-8 text"),
        (b"[1]", "Request body must be a JSON object"),
        (b"nope", "Request body must be valid JSON"),
    ]
    for raw, message in cases:
        response = client.post(
            "/api/vehicles", data=raw, content_type="application/json", headers=headers
        )
        assert response.status_code == 400
        assert response.get_json() == {"error": message}
    # A valid surrogate pair is an ordinary character.
    response = client.post(
        "/api/vehicles",
        data=b'{"plate_number": "KEM 001", "type": "car \\ud83d\\ude97"}',
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 201
    assert response.get_json()["type"] == "car \U0001f697"


def test_the_route_table_covers_every_body_reading_route():
    """BODIES describes every POST/PATCH route that reads a body (keep it in sync)."""
    body_routes = {route for route in ROUTES if reads_body(route)}
    assert body_routes == set(BODIES), (
        f"describe new routes in BODIES or NO_BODY: {sorted(body_routes ^ set(BODIES))}"
    )


# ---------------------------------------------------------------------------
# (2) Object-level authorization: another driver's objects
# ---------------------------------------------------------------------------


def snapshot(app) -> dict:
    with app.app_context():
        with db.engine.connect() as conn:
            return {
                table: conn.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()
                for table in TABLES
            }


# (method, rule) -> (status, error message) for the attacker acting on the victim's
# objects; None: the object is shared (lots, spots) and reading it is allowed.
OBJECT_ROUTES = {
    ("GET", "/api/vehicles/<int:vehicle_id>"): (404, "Vehicle not found"),
    ("PATCH", "/api/vehicles/<int:vehicle_id>"): (404, "Vehicle not found"),
    ("DELETE", "/api/vehicles/<int:vehicle_id>"): (404, "Vehicle not found"),
    ("GET", "/api/tickets/<int:ticket_id>"): (404, "Ticket not found"),
    ("PATCH", "/api/checkout/<int:ticket_id>"): (403, "You can only check out your own tickets"),
    ("PATCH", "/api/parking-lots/<int:lot_id>"): (403, "Admin privileges required"),
    ("DELETE", "/api/parking-lots/<int:lot_id>"): (403, "Admin privileges required"),
    ("POST", "/api/parking-lots/<int:lot_id>/spots"): (403, "Admin privileges required"),
    ("GET", "/api/parking-lots/<int:lot_id>/report"): (403, "Admin privileges required"),
    ("PATCH", "/api/spots/<int:spot_id>"): (403, "Admin privileges required"),
    ("GET", "/api/parking-lots/<int:lot_id>"): None,
    ("GET", "/api/parking-lots/<int:lot_id>/quote"): None,
    ("GET", "/api/spots/<int:spot_id>"): None,
    ("POST", "/api/parking-lots/<int:lot_id>/entries"): (403, "Attendant or admin role required"),
    ("POST", "/api/parking-lots/<int:lot_id>/exits"): (403, "Attendant or admin role required"),
    ("GET", "/api/parking-lots/<int:lot_id>/check"): (403, "Attendant or admin role required"),
    ("POST", "/api/tickets/<int:ticket_id>/payments"): (403, "Attendant or admin role required"),
    ("PATCH", "/api/users/<int:user_id>"): (403, "Admin privileges required"),
    ("GET", "/api/parking-lots/<int:lot_id>/staff"): (403, "Admin privileges required"),
    ("PUT", "/api/parking-lots/<int:lot_id>/staff/<int:user_id>"): (
        403,
        "Admin privileges required",
    ),
    ("DELETE", "/api/parking-lots/<int:lot_id>/staff/<int:user_id>"): (
        403,
        "Admin privileges required",
    ),
    ("POST", "/api/parking-lots/<int:lot_id>/devices"): (403, "Admin privileges required"),
    ("GET", "/api/parking-lots/<int:lot_id>/devices"): (403, "Admin privileges required"),
    ("DELETE", "/api/parking-lots/<int:lot_id>/devices/<int:device_id>"): (
        403,
        "Admin privileges required",
    ),
    ("DELETE", "/api/permits/<int:permit_id>"): (403, "Admin privileges required"),
    ("DELETE", "/api/webhooks/<int:webhook_id>"): (403, "Admin privileges required"),
    ("POST", "/api/webhooks/<int:webhook_id>/test"): (403, "Admin privileges required"),
    ("GET", "/api/webhooks/<int:webhook_id>/deliveries"): (403, "Admin privileges required"),
    ("GET", "/api/parking-lots/<int:lot_id>/availability"): None,
    ("GET", "/api/reservations/<int:reservation_id>"): (404, "Reservation not found"),
    ("POST", "/api/reservations/<int:reservation_id>/cancel"): (404, "Reservation not found"),
    ("POST", "/api/reservations/<int:reservation_id>/check-in"): (404, "Reservation not found"),
}
ID_ROUTES = [route for route in ROUTES if "<int:" in route[1]]


def test_object_route_table_is_complete():
    assert set(ID_ROUTES) == set(OBJECT_ROUTES), sorted(set(ID_ROUTES) ^ set(OBJECT_ROUTES))


@pytest.mark.parametrize("route", ID_ROUTES, ids=route_id)
def test_another_driver_cannot_touch_the_victims_objects(app, client, world, route):
    method, rule = route
    expected = OBJECT_ROUTES[route]
    path = path_for(
        rule,
        world,
        "victim",
        {"vehicle_id": world.victim_vehicle, "ticket_id": world.victim_ticket},
    )
    before = snapshot(app)
    bodies = [make(app, world, next(_counter)) for make in BODIES.get(route, [])] or [{}]
    for body in bodies:
        response = client.open(
            path,
            method=method,
            json=body,
            headers=bearer(api_token(app, world.attacker)),
            query_string=QUERIES.get(route),
        )
        if expected is None:
            assert response.status_code == 200, response.get_json()
            assert "user_id" not in response.get_json()
        else:
            status, message = expected
            assert response.status_code == status, response.get_json()
            assert response.get_json() == {"error": message}
    assert snapshot(app) == before


def test_another_drivers_vehicle_cannot_be_booked(app, client, world):
    before = snapshot(app)
    response = client.post(
        "/api/tickets",
        json={"vehicle_id": world.victim_spare_vehicle, "parking_spot_id": world.spots[7]},
        headers=bearer(api_token(app, world.attacker)),
    )
    assert response.status_code == 400
    assert response.get_json() == {"error": "Vehicle not found"}
    assert snapshot(app) == before


def test_lists_show_only_the_callers_objects(app, client, world):
    headers = bearer(api_token(app, world.attacker))
    vehicles = client.get("/api/vehicles", headers=headers).get_json()
    tickets = client.get("/api/tickets", headers=headers).get_json()
    everyone = client.get("/api/tickets?all=true", headers=headers)

    assert [v["id"] for v in vehicles] == [world.attacker_vehicle]
    assert tickets == []
    # Asking for everyone's is refused, not silently narrowed.
    assert everyone.status_code == 403
    assert everyone.get_json() == {"error": "Admin privileges required"}
    admin_view = client.get("/api/tickets?all=true", headers=bearer(api_token(app, world.admin)))
    assert {t["id"] for t in admin_view.get_json()} == {world.admin_ticket, world.victim_ticket}


# ---------------------------------------------------------------------------
# (3) Function-level authorization: admin routes
# ---------------------------------------------------------------------------

ADMIN_ROUTES = {
    ("POST", "/api/parking-lots"),
    ("PATCH", "/api/parking-lots/<int:lot_id>"),
    ("DELETE", "/api/parking-lots/<int:lot_id>"),
    ("POST", "/api/parking-lots/<int:lot_id>/spots"),
    ("GET", "/api/parking-lots/<int:lot_id>/report"),
    ("PATCH", "/api/spots/<int:spot_id>"),
    ("GET", "/api/users"),
    ("PATCH", "/api/users/<int:user_id>"),
    ("GET", "/api/parking-lots/<int:lot_id>/staff"),
    ("PUT", "/api/parking-lots/<int:lot_id>/staff/<int:user_id>"),
    ("DELETE", "/api/parking-lots/<int:lot_id>/staff/<int:user_id>"),
    ("POST", "/api/parking-lots/<int:lot_id>/devices"),
    ("GET", "/api/parking-lots/<int:lot_id>/devices"),
    ("DELETE", "/api/parking-lots/<int:lot_id>/devices/<int:device_id>"),
    ("GET", "/api/audit"),
    ("POST", "/api/permits"),
    ("GET", "/api/permits"),
    ("DELETE", "/api/permits/<int:permit_id>"),
    ("POST", "/api/webhooks"),
    ("GET", "/api/webhooks"),
    ("DELETE", "/api/webhooks/<int:webhook_id>"),
    ("POST", "/api/webhooks/<int:webhook_id>/test"),
    ("GET", "/api/webhooks/<int:webhook_id>/deliveries"),
}


def decorated_with_admin_required(view) -> bool:
    """The view's @endpoint declares auth=ADMIN (which the wrapper enforces)."""
    return getattr(view, "endpoint", None) is not None and view.endpoint.auth is ADMIN


def test_admin_route_list_matches_the_decorated_views(app):
    decorated = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
        if decorated_with_admin_required(app.view_functions[rule.endpoint])
    }
    assert decorated == ADMIN_ROUTES


def test_admin_routes_require_a_token_first(app, client, world):
    for method, rule in sorted(ADMIN_ROUTES):
        response = client.open(path_for(rule, world, "admin"), method=method, json={})
        assert response.status_code == 401
        assert response.get_json() == {"error": "Missing Authorization Header"}


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_drivers_are_refused_exactly_on_admin_routes(app, client, world, route):
    """Probe every route with a driver token and a valid body."""
    method, rule = route
    before = snapshot(app)
    body = (BODIES.get(route) or [lambda *a: {}])[0](app, world, next(_counter))
    kind = "refresh_token" if route in REFRESH_ROUTES else "token"

    response = client.open(
        path_for(rule, world, "attacker"),
        method=method,
        json=body,
        headers=bearer(api_token(app, world.attacker, kind)),
        query_string=QUERIES.get(route),
    )

    refused = response.status_code == 403 and response.get_json() == {
        "error": "Admin privileges required"
    }
    assert refused == (route in ADMIN_ROUTES), (route, response.status_code, response.get_json())
    if refused:
        assert snapshot(app) == before
    else:
        assert_sane(response, route_id(route))


@pytest.mark.parametrize("route", sorted(ADMIN_ROUTES), ids=route_id)
def test_admin_routes_work_for_an_admin(app, client, world, route):
    """Control for the refusals above: the same request as the admin succeeds."""
    method, rule = route
    body = (BODIES.get(route) or [lambda *a: {}])[0](app, world, next(_counter))
    response = client.open(
        path_for(rule, world, "admin", {"lot_id": world.other_lot}),
        method=method,
        json=body,
        headers=bearer(api_token(app, world.admin)),
        query_string=QUERIES.get(route),
    )
    assert response.status_code in (200, 201), response.get_json()


# ---------------------------------------------------------------------------
# (4) Mass assignment: extra keys are ignored
# ---------------------------------------------------------------------------

EXTRAS = {
    "id": 999_999,
    "user_id": None,  # the victim's id, filled in per world
    "role": "admin",
    "is_admin": True,
    "status": "closed",
    "check_out": "2020-01-01T00:00:00+00:00",
    "check_in": "2020-01-01T00:00:00+00:00",
    "amount_due": 0,
    "duration_minutes": 0,
    "token_version": 99,
    "password_hash": "pbkdf2:sha256:1$x$y",
    "created_at": "2000-01-01T00:00:00+00:00",
    "deleted_at": "2000-01-01T00:00:00+00:00",
    "archived_at": "2000-01-01T00:00:00+00:00",
    "owner": {"id": 1},
    "spot_id": None,  # another spot, filled in per world
    "currency": "USD",
}


def extras(world, route) -> dict:
    extra = {**EXTRAS, "user_id": world.victim, "spot_id": world.spots[9]}
    if route == ("PATCH", "/api/spots/<int:spot_id>"):
        del extra["status"]  # a real field there (available / out_of_service)
        extra["lot_id"] = world.other_lot
    if route == ("POST", "/api/tickets"):
        extra.update(hourly_rate=0, daily_max=1, grace_minutes=1440, lot_id=world.other_lot)
    if route in {("POST", "/api/parking-lots"), ("PATCH", "/api/parking-lots/<int:lot_id>")}:
        del extra["currency"]  # a real field there
    if route == ("POST", "/api/parking-lots/<int:lot_id>/spots"):
        extra["lot_id"] = world.other_lot
    if route == ("PATCH", "/api/users/<int:user_id>"):
        del extra["role"]  # the field itself
    if route == ("POST", "/api/parking-lots/<int:lot_id>/entries"):
        del extra["spot_id"]  # a real field there
        extra["lot_id"] = world.other_lot
    if route == ("POST", "/api/tickets/<int:ticket_id>/payments"):
        extra.update(ticket_id=world.victim_ticket, actor_type="device", actor_id=1)
    return extra


def get(app, model, id_):
    with app.app_context():
        return db.session.get(model, id_)


def newest(app, model):
    with app.app_context():
        return db.session.scalars(select(model).order_by(model.id.desc()).limit(1)).one()


def assert_users_unchanged_but(app, world):
    for key in ("admin", "victim", "attacker"):
        user = get(app, User, world[key])
        assert user.role == ("admin" if key == "admin" else "driver")
        assert user.token_version == 0


# route -> (acting user, check(app, world, response_json)); the body is BODIES[route][0].
def _check_register(app, w, body):
    user = get(app, User, body["user"]["id"])
    assert user.role == "driver" and user.token_version == 0 and user.id != 999_999
    assert body["user"]["role"] == "driver"


def _check_login(app, w, body):
    assert body["user"]["role"] == "admin"
    assert_users_unchanged_but(app, w)


def _check_password(app, w, body):
    user = get(app, User, w.attacker)
    assert user.role == "driver" and user.token_version == 1
    assert user.password_hash != EXTRAS["password_hash"]


def _check_logout(app, w, body):
    with app.app_context():
        owners = list(db.session.scalars(select(RevokedToken.user_id)))
    assert owners == [w.admin] * 3  # access token, refresh token, their family


def _check_vehicle_created(app, w, body):
    vehicle = get(app, Vehicle, body["id"])
    assert vehicle.user_id == w.attacker and vehicle.id != 999_999 and vehicle.deleted_at is None


def _check_vehicle_updated(app, w, body):
    vehicle = get(app, Vehicle, w.attacker_vehicle)
    assert vehicle.user_id == w.attacker and vehicle.deleted_at is None
    assert get(app, Vehicle, 999_999) is None


def _check_lot_created(app, w, body):
    lot = get(app, ParkingLot, body["lot_id"])
    assert lot.id != 999_999 and lot.archived_at is None
    with app.app_context():
        statuses = set(
            db.session.scalars(select(ParkingSpot.status).where(ParkingSpot.lot_id == lot.id))
        )
    assert statuses == {"available"}


def _check_lot_updated(app, w, body):
    lot = get(app, ParkingLot, w.other_lot)
    assert lot.archived_at is None and lot.name == "Lot N"
    assert get(app, ParkingLot, 999_999) is None


def _check_spots_created(app, w, body):
    for spot in body:
        row = get(app, ParkingSpot, spot["id"])
        assert row.lot_id == w.lot and row.status == "available" and row.id != 999_999


def _check_spot_updated(app, w, body):
    spot = get(app, ParkingSpot, w.spots[5])
    assert spot.lot_id == w.lot and spot.status == "out_of_service"


def _check_ticket_created(app, w, body):
    ticket = get(app, Ticket, body["ticket_id"])
    assert ticket.user_id == w.attacker
    assert ticket.spot_id == w.spots[6] and ticket.lot_id == w.lot
    assert ticket.check_out is None and ticket.amount_due is None
    assert ticket.check_in == datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
    assert ticket.currency == "KES" and ticket.hourly_rate == 10_000
    assert get(app, ParkingSpot, w.spots[6]).status == "occupied"


def _check_webhook_created(app, w, body):
    hook = get(app, Webhook, body["id"])
    assert hook.id != 999_999 and hook.created_by == w.admin
    assert hook.created_at != datetime(2000, 1, 1, tzinfo=UTC)
    assert hook.secret == body["secret"] and hook.secret.startswith("whsec_")


def _check_ping(app, w, body):
    delivery = get(app, WebhookDelivery, body["id"])
    assert delivery.webhook_id == w.webhook and delivery.status == "pending"
    assert delivery.attempts == 1 and delivery.id != 999_999


def _check_checkout(app, w, body):
    ticket = get(app, Ticket, w.attacker_ticket)
    assert ticket.check_out == datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    assert ticket.amount_due == 20_000 and ticket.duration_minutes == 120
    assert ticket.user_id == w.attacker


def _check_refresh(app, w, body):
    assert_users_unchanged_but(app, w)


def _check_entry(app, w, body):
    ticket = get(app, Ticket, body["ticket_id"])
    assert ticket.user_id is None and ticket.lot_id == w.lot and ticket.id != 999_999
    assert ticket.check_out is None and ticket.amount_due is None and ticket.currency == "KES"
    assert ticket.check_in == datetime(2026, 1, 15, 8, 0, tzinfo=UTC)


def _check_exit(app, w, body):
    ticket = get(app, Ticket, w.victim_ticket)
    assert ticket.check_out is not None and ticket.amount_due == 0
    assert ticket.user_id == w.victim and body["gate"] == "open"


def _check_payment(app, w, body):
    ticket = get(app, Ticket, w.admin_ticket)
    assert ticket.amount_paid == 1 and body["ticket_id"] == w.admin_ticket
    assert body["actor"] == {"type": "user", "id": w.admin}
    assert get(app, Ticket, w.victim_ticket).amount_paid == 0


def _check_user_updated(app, w, body):
    assert get(app, User, w.attendant).role == "driver"


def _check_device_created(app, w, body):
    device = get(app, Device, body["id"])
    assert device.lot_id == w.lot and device.revoked_at is None and device.id != 999_999


def _check_permit_created(app, w, body):
    permit = get(app, Permit, body["id"])
    assert permit.id != 999_999 and permit.ended_at is None
    assert permit.valid_from == datetime(2025, 12, 31, 21, 0, tzinfo=UTC)


def _check_reservation_created(app, w, body):
    reservation = get(app, Reservation, body["id"])
    assert reservation.id != 999_999 and reservation.user_id == w.admin
    assert (reservation.status, reservation.currency) == ("confirmed", "KES")
    assert reservation.lot_id == w.rlot and reservation.spot_id != w.spots[9]


def _check_reservation_cancelled(app, w, body):
    reservation = get(app, Reservation, w.admin_reservation)
    assert reservation.status == "cancelled" and reservation.refund == 0


def _check_reservation_checked_in(app, w, body):
    reservation = get(app, Reservation, w.admin_reservation)
    assert reservation.status == "checked_in" and reservation.ticket_id == body["ticket_id"]


MASS_ASSIGNMENT = {
    ("POST", "/api/register"): ("nobody", _check_register),
    ("POST", "/api/login"): ("nobody", _check_login),
    ("PATCH", "/api/me/password"): ("attacker", _check_password),
    ("POST", "/api/logout"): ("admin", _check_logout),
    ("POST", "/api/token/refresh"): ("attacker", _check_refresh),
    ("POST", "/api/vehicles"): ("attacker", _check_vehicle_created),
    ("PATCH", "/api/vehicles/<int:vehicle_id>"): ("attacker", _check_vehicle_updated),
    ("POST", "/api/parking-lots"): ("admin", _check_lot_created),
    ("PATCH", "/api/parking-lots/<int:lot_id>"): ("admin", _check_lot_updated),
    ("POST", "/api/parking-lots/<int:lot_id>/spots"): ("admin", _check_spots_created),
    ("PATCH", "/api/spots/<int:spot_id>"): ("admin", _check_spot_updated),
    ("POST", "/api/tickets"): ("attacker", _check_ticket_created),
    ("PATCH", "/api/checkout/<int:ticket_id>"): ("attacker", _check_checkout),
    ("POST", "/api/parking-lots/<int:lot_id>/entries"): ("admin", _check_entry),
    ("POST", "/api/parking-lots/<int:lot_id>/exits"): ("admin", _check_exit),
    ("POST", "/api/tickets/<int:ticket_id>/payments"): ("admin", _check_payment),
    ("PATCH", "/api/users/<int:user_id>"): ("admin", _check_user_updated),
    ("POST", "/api/parking-lots/<int:lot_id>/devices"): ("admin", _check_device_created),
    ("POST", "/api/permits"): ("admin", _check_permit_created),
    ("POST", "/api/reservations"): ("admin", _check_reservation_created),
    ("POST", "/api/reservations/<int:reservation_id>/cancel"): (
        "admin",
        _check_reservation_cancelled,
    ),
    ("POST", "/api/reservations/<int:reservation_id>/check-in"): (
        "admin",
        _check_reservation_checked_in,
    ),
    ("POST", "/api/webhooks"): ("admin", _check_webhook_created),
    ("POST", "/api/webhooks/<int:webhook_id>/test"): ("admin", _check_ping),
}


def test_mass_assignment_table_covers_every_write_route():
    writes = {route for route in ROUTES if route[0] in {"POST", "PATCH"}}
    assert writes == set(MASS_ASSIGNMENT), sorted(writes ^ set(MASS_ASSIGNMENT))


@pytest.mark.parametrize("route", sorted(MASS_ASSIGNMENT), ids=route_id)
def test_extra_keys_are_ignored(app, client, world, clock, route):
    method, rule = route
    actor, check = MASS_ASSIGNMENT[route]
    if route == ("PATCH", "/api/checkout/<int:ticket_id>"):
        booked = client.post(
            "/api/tickets",
            json={"vehicle_id": world.attacker_vehicle, "parking_spot_id": world.spots[8]},
            headers=bearer(api_token(app, world.attacker)),
        )
        world["attacker_ticket"] = booked.get_json()["ticket_id"]
        clock.advance(hours=2)
    if route == ("POST", "/api/tickets/<int:ticket_id>/payments"):
        clock.advance(hours=2)  # something to pay
    body = (BODIES.get(route) or [lambda *a: {}])[0](app, world, next(_counter))
    if route == ("POST", "/api/tickets"):
        body = {"vehicle_id": world.attacker_vehicle, "parking_spot_id": world.spots[6]}
    headers = {}
    if actor != "nobody":
        kind = "refresh_token" if route in REFRESH_ROUTES else "token"
        headers = bearer(api_token(app, world[actor], kind))
    path = path_for(
        rule, world, actor, {"lot_id": world.other_lot if "PATCH" == method else world.lot}
    )

    response = client.open(
        path, method=method, json={**body, **extras(world, route)}, headers=headers
    )

    assert response.status_code in (200, 201), (route, response.get_json())
    check(app, world, response.get_json())
    # Nobody became an admin, however the keys were spelled.
    with app.app_context():
        admins = set(db.session.scalars(select(User.id).where(User.role == "admin")))
    assert admins == {world.admin}


def test_registration_cannot_pick_role_or_id_even_with_duplicate_keys(app, client, world):
    raw = (
        b'{"username": "sneaky", "email": "sneaky@example.com", "password": "password123",'
        b' "role": "driver", "role": "admin", "is_admin": true, "id": 1}'
    )
    response = client.post("/api/register", data=raw, content_type="application/json")

    assert response.status_code == 201
    user = get(app, User, response.get_json()["user"]["id"])
    assert user.role == "driver" and user.id != 1
