"""The OpenAPI 3.1 description of the `/api` blueprint, served at /api/openapi.json.

`build_openapi()` returns the document as a dict, built once and cached; the
view adds `servers` per request so Swagger UI's "Try it out" calls the server
that served the page. Limits are read from routes.py and validation.py, so the
document and the validators cannot drift apart silently; tests check that every
route of the app is described here and nothing else (tests/test_openapi.py) and
fuzz every operation against these schemas (tests/test_fuzz.py).

Reading guide: small helpers build the common pieces (error responses,
pagination, path ids), `SCHEMAS` holds the bodies, `PATHS` lists every
operation in the order of routes.py.
"""

import json
import os
from collections.abc import Callable
from functools import cache
from typing import Any

import flask_swagger_ui
from flask import Response, send_from_directory

from models import ROLES, SPOT_KINDS, SPOT_STATUSES
from routes import (
    EMAIL_MAX,
    LOCATION_MAX,
    LOT_NAME_MAX,
    MAX_QUOTE_MINUTES,
    MAX_RATE,
    MAX_REPORT_DAYS,
    MAX_SPOTS_PER_REQUEST,
    PASSWORD_MAX,
    PASSWORD_MIN,
    PLATE_MAX,
    PREFIX_MAX,
    SPOT_NUMBER_MAX,
    USERNAME_MAX,
    VEHICLE_TYPE_MAX,
)
from validation import MAX_INT, SHORT_MESSAGES, ApiError

# Swagger UI 5 (OpenAPI 3.1 support) as shipped, pinned, by the flask-swagger-ui
# package; /api/docs/<filename> serves these files so the page needs no CDN.
SWAGGER_UI_DIR = os.path.join(os.path.dirname(flask_swagger_ui.__file__), "dist")
DOCS_ASSETS = {
    "swagger-ui.css": "text/css",
    "index.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}

PLATE_RAW_MAX = 64  # before whitespace is collapsed; the stored plate is at most PLATE_MAX

# ---------------------------------------------------------------------------
# Small schema helpers
# ---------------------------------------------------------------------------


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    """The same schema, also allowing null (OpenAPI 3.1: a type array)."""
    result = dict(schema)
    result["type"] = [schema["type"], "null"]
    if "enum" in schema:
        result["enum"] = [*schema["enum"], None]
    return result


def obj(properties: dict, required=(), **extra) -> dict:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return {**schema, **extra}


def closed(properties: dict, **extra) -> dict:
    """A response object whose every listed key is always present."""
    return obj(properties, required=properties, **extra)


def string(max_length: int | None = None, min_length: int | None = None, **extra) -> dict:
    schema: dict[str, Any] = {"type": "string"}
    if min_length is not None:
        schema["minLength"] = min_length
    if max_length is not None:
        schema["maxLength"] = max_length
    return {**schema, **extra}


def integer(minimum: int | None = None, maximum: int | None = None, **extra) -> dict:
    schema: dict[str, Any] = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return {**schema, **extra}


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


# Response strings carry no maxLength: rows adopted from the seed's database may
# be longer than what the API accepts today.
TEXT = string()
DATE_TIME = string(format="date-time", description="ISO 8601 with a UTC offset")
ID = integer(minimum=1, maximum=MAX_INT)
COUNT = integer(minimum=0)
AMOUNT = integer(description="In the currency's minor unit (e.g. 20000 = KES 200.00)")
CURRENCY = string(min_length=3, max_length=3, pattern="^[A-Z]{3}$")
KIND = string(enum=list(SPOT_KINDS))
MESSAGE = closed({"message": TEXT})

# ---------------------------------------------------------------------------
# Responses, parameters
# ---------------------------------------------------------------------------


def json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def ok(schema: dict, description: str = "Success", headers: dict | None = None) -> dict:
    response: dict[str, Any] = {"description": description, "content": json_content(schema)}
    if headers:
        response["headers"] = headers
    return response


def error(description: str) -> dict:
    return {"description": description, "content": json_content(ref("Error"))}


ERRORS = {
    400: "Invalid input; `error` says which field and why",
    401: "Missing, malformed, expired or revoked token, or its user is gone",
    403: "Admin privileges required",
    404: "Not found",
    409: "Conflict with the current state",
    413: SHORT_MESSAGES[413],
    429: "Too many requests (rate limit); retry after `Retry-After` seconds",
    500: "Database connection failed",
}


def errors(*statuses: int, **descriptions: str) -> dict:
    """Error responses by status; `e404="Vehicle not found"` overrides a description."""
    result = {}
    for status in statuses:
        response = error(descriptions.get(f"e{status}", ERRORS[status]))
        if status == 429:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds until the limit resets",
                    "schema": integer(minimum=0),
                }
            }
        result[str(status)] = response
    return result


PAGINATION_HEADERS = {
    "X-Total-Count": {
        "description": "Number of items across all pages",
        "required": True,
        "schema": integer(minimum=0),
    },
    "Link": {
        "description": 'RFC 8288 links: rel="first", "prev", "next", "last"',
        "required": True,
        "schema": string(),
    },
}


def query(name: str, schema: dict, description: str, required: bool = False) -> dict:
    parameter = {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }
    if not required:
        parameter["allowEmptyValue"] = True  # `?page=` is the same as no `page`
    return parameter


def path_id(name: str, description: str) -> dict:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": ID,
        "example": 1,
    }


PAGINATION_PARAMS = [
    query("page", integer(minimum=1, maximum=1_000_000, default=1), "Page number, from 1"),
    query("per_page", integer(minimum=1, maximum=1000, default=100), "Items per page"),
]
BOOLEAN = {"type": "boolean", "description": "true/false (also 1/0, yes/no)"}


def body(schema: dict, example: dict | None = None, required: bool = True) -> dict:
    content = json_content(schema)
    if example is not None:
        content["application/json"]["example"] = example
    return {"required": required, "content": content}


def operation(
    tag: str,
    summary: str,
    responses: dict,
    *,
    operation_id: str,
    auth: bool = True,
    parameters: list | None = None,
    request: dict | None = None,
    description: str | None = None,
) -> dict:
    op: dict[str, Any] = {"tags": [tag], "summary": summary, "operationId": operation_id}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if request:
        op["requestBody"] = request
    op["responses"] = responses
    op["security"] = [{"bearerAuth": []}] if auth else []
    return op


# ---------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------

TARIFF_FIELDS = {
    "hourly_rate": integer(0, MAX_RATE, description="Minor units per hour"),
    "billing_increment_minutes": integer(1, 1440, description="Default 60"),
    "grace_minutes": integer(0, 1440, description="Free stay, default 0"),
    "daily_max": nullable(integer(0, MAX_RATE * 24, description="Cap per 24 hours, or null")),
}
COUNTS = closed({"total": COUNT, **{status: COUNT for status in SPOT_STATUSES}})

LOT_WRITE_FIELDS = {
    "name": string(LOT_NAME_MAX, 1),
    "location": string(LOCATION_MAX, 1),
    "timezone": string(64, 1, description="IANA time zone name, default UTC"),
    "currency": string(3, 3, description="ISO 4217 code, default from DEFAULT_CURRENCY"),
    **TARIFF_FIELDS,
}

VEHICLE_WRITE_FIELDS = {
    "plate_number": string(
        PLATE_RAW_MAX,
        1,
        description=(
            "Letters, digits, spaces and hyphens; stored upper-case with inner "
            f"whitespace collapsed, at most {PLATE_MAX} characters"
        ),
    ),
    "type": nullable(string(VEHICLE_TYPE_MAX, description="e.g. SUV")),
}

SPOT_KIND_FIELD = nullable({**KIND, "description": "Default standard"})

BREAKDOWN_ITEM = {
    "oneOf": [
        closed({"period": {"const": "grace"}, "minutes": COUNT, "amount": {"const": 0}}),
        closed(
            {
                "period": {"const": "full_day"},
                "days": integer(minimum=1),
                "increments_per_day": COUNT,
                "amount_per_day": AMOUNT,
                "capped": {"type": "boolean"},
                "amount": AMOUNT,
            }
        ),
        closed(
            {
                "period": {"const": "remainder"},
                "minutes": integer(minimum=1),
                "increments": integer(minimum=1),
                "capped": {"type": "boolean"},
                "amount": AMOUNT,
            }
        ),
    ]
}

SCHEMAS = {
    "Error": closed({"error": TEXT}, description="Every error answer"),
    "Message": MESSAGE,
    "User": closed(
        {
            "id": ID,
            "username": TEXT,
            "email": TEXT,
            "role": string(enum=list(ROLES)),
        }
    ),
    "Tokens": closed(
        {
            "token": string(description="Access token (short-lived)"),
            "refresh_token": string(description="Refresh token for POST /api/token/refresh"),
        }
    ),
    "Session": closed(
        {"user": ref("User"), "token": string(), "refresh_token": string()},
        description="A user and a fresh token pair",
    ),
    "RegisterRequest": obj(
        {
            "username": string(USERNAME_MAX, 1),
            "email": string(EMAIL_MAX, 3, format="email"),
            "password": string(PASSWORD_MAX, PASSWORD_MIN),
        },
        required=("username", "email", "password"),
    ),
    "LoginRequest": obj(
        {"email": string(EMAIL_MAX, 1), "password": string(min_length=1)},
        required=("email", "password"),
    ),
    "LogoutRequest": obj(
        {"refresh_token": nullable(string(4096, description="Also revoke this refresh token"))}
    ),
    "ChangePasswordRequest": obj(
        {
            "current_password": string(min_length=1),
            "new_password": string(PASSWORD_MAX, PASSWORD_MIN),
        },
        required=("current_password", "new_password"),
    ),
    "PasswordChanged": closed({"message": TEXT, "token": string(), "refresh_token": string()}),
    "Vehicle": closed(
        {
            "id": ID,
            "plate_number": TEXT,
            "type": nullable(TEXT),
            "user_id": ID,
        }
    ),
    "VehicleCreate": obj(VEHICLE_WRITE_FIELDS, required=("plate_number",)),
    "VehicleUpdate": obj(VEHICLE_WRITE_FIELDS),
    "VehicleDeleted": closed({"message": TEXT, "vehicle_id": ID}),
    "Tariff": closed(TARIFF_FIELDS),
    "Lot": closed(
        {
            "id": ID,
            "name": TEXT,
            "location": TEXT,
            "spots": COUNT,
            "available_spots": COUNT,
            "timezone": TEXT,
            "currency": CURRENCY,
            "tariff": ref("Tariff"),
        }
    ),
    "LotDetail": {
        "allOf": [
            ref("Lot"),
            closed(
                {
                    "counts": COUNTS,
                    "kinds": {
                        "type": "object",
                        "description": "Counts per spot kind present in the lot",
                        "propertyNames": KIND,
                        "additionalProperties": COUNTS,
                    },
                }
            ),
        ]
    },
    "LotCreate": obj(
        {
            **LOT_WRITE_FIELDS,
            "spot_count": nullable(integer(0, MAX_SPOTS_PER_REQUEST, description="Default 0")),
            "spot_prefix": nullable(string(PREFIX_MAX, description="Spots are <prefix>1..N")),
            "kind": nullable({**KIND, "description": "Kind of the created spots"}),
        },
        required=("name", "location"),
    ),
    "LotUpdate": obj(LOT_WRITE_FIELDS),
    "LotCreated": closed({"message": TEXT, "lot_id": ID, "lot": ref("Lot")}),
    "LotArchived": closed({"message": TEXT, "lot_id": ID}),
    "Spot": closed(
        {
            "id": ID,
            "spot_number": TEXT,
            "status": string(enum=list(SPOT_STATUSES)),
            "lot": string(description="Lot name"),
            "lot_id": ID,
            "kind": KIND,
        }
    ),
    "SpotsCreate": {
        "description": "One spot, or a batch; with both, `spot_number` wins",
        "anyOf": [
            obj(
                {"spot_number": string(SPOT_NUMBER_MAX, 1), "kind": SPOT_KIND_FIELD},
                required=("spot_number",),
                title="One spot",
            ),
            obj(
                {
                    "count": integer(1, MAX_SPOTS_PER_REQUEST, description="<prefix>1..count"),
                    "prefix": nullable(string(PREFIX_MAX)),
                    "kind": SPOT_KIND_FIELD,
                },
                required=("count",),
                title="A batch",
            ),
        ],
    },
    "SpotUpdate": obj(
        {
            "spot_number": string(SPOT_NUMBER_MAX, 1),
            "kind": nullable(KIND),
            "status": nullable(string(enum=["available", "out_of_service"])),
        }
    ),
    "BreakdownItem": BREAKDOWN_ITEM,
    "Quote": closed(
        {
            "minutes": integer(0, MAX_QUOTE_MINUTES),
            "amount": AMOUNT,
            "currency": CURRENCY,
            "tariff": ref("Tariff"),
            "breakdown": array(ref("BreakdownItem")),
        }
    ),
    "ReportDay": closed(
        {
            "date": string(format="date"),
            "tickets_started": COUNT,
            "tickets_closed": COUNT,
            "revenue": AMOUNT,
            "average_stay_minutes": nullable({"type": "number"}),
        }
    ),
    "Report": closed(
        {
            "lot_id": ID,
            "lot": TEXT,
            "timezone": TEXT,
            "currency": CURRENCY,
            "from": string(format="date"),
            "to": string(format="date"),
            "occupancy": closed({"total": COUNT, "occupied": COUNT, "available": COUNT}),
            "days": array(ref("ReportDay")),
            "totals": closed(
                {"tickets_started": COUNT, "tickets_closed": COUNT, "revenue": AMOUNT}
            ),
        }
    ),
    "TicketCreate": obj(
        {
            "vehicle_id": ID,
            "parking_spot_id": nullable({**ID, "description": "Book this spot"}),
            "lot_id": nullable({**ID, "description": "Or: any free spot of this lot"}),
            "kind": nullable({**KIND, "description": "With lot_id: only spots of this kind"}),
        },
        required=("vehicle_id",),
        anyOf=[
            obj({"parking_spot_id": ID}, required=("parking_spot_id",)),
            obj({"lot_id": ID}, required=("lot_id",)),
        ],
    ),
    "TicketBooked": closed(
        {
            "message": TEXT,
            "ticket_id": ID,
            "spot_id": ID,
            "spot_number": TEXT,
            "lot": TEXT,
            "lot_id": ID,
            "check_in": DATE_TIME,
            "currency": CURRENCY,
            "tariff": ref("Tariff"),
        }
    ),
    "Ticket": closed(
        {
            "id": ID,
            "vehicle_id": ID,
            "spot_id": ID,
            "check_in": DATE_TIME,
            "check_out": nullable(DATE_TIME),
            "status": string(enum=["open", "closed"]),
            "user_id": ID,
            "lot_id": ID,
            "lot": TEXT,
            "spot_number": TEXT,
            "duration_minutes": integer(),
            "amount_due": nullable(
                {**AMOUNT, "description": "Owed so far (open) or charged (closed)"}
            ),
            "currency": CURRENCY,
            "tariff": ref("Tariff"),
        }
    ),
    "Receipt": closed(
        {
            "message": TEXT,
            "ticket_id": ID,
            "check_in": DATE_TIME,
            "check_out": DATE_TIME,
            "duration_minutes": integer(),
            "amount_due": AMOUNT,
            "currency": CURRENCY,
            "lot": TEXT,
            "lot_id": ID,
            "spot_number": TEXT,
            "breakdown": array(ref("BreakdownItem")),
        }
    ),
}

# ---------------------------------------------------------------------------
# Paths, in the order of routes.py
# ---------------------------------------------------------------------------

LOT_ID = path_id("lot_id", "Parking lot id")
VEHICLE_ID = path_id("vehicle_id", "Vehicle id")
SPOT_ID = path_id("spot_id", "Spot id")
TICKET_ID = path_id("ticket_id", "Ticket id")
LIST = "A JSON array; pagination in the `X-Total-Count` and `Link` headers"

PATHS = {
    "/api/test-db": {
        "get": operation(
            "Health",
            "Check the database connection and schema (the health check)",
            {
                "200": ok(ref("Message")),
                "503": error(
                    "The database does not answer within a second "
                    "(`Database connection failed: <error class>`), or answers but its schema "
                    "is behind the code's revision, e.g. `Database schema is at 0003, code "
                    "expects 0005: run flask db upgrade`"
                ),
            },
            operation_id="testDb",
            auth=False,
        )
    },
    "/api/register": {
        "post": operation(
            "Accounts",
            "Register a driver account",
            {"201": ok(ref("Session"), "Created"), **errors(400, 413, 429)},
            operation_id="register",
            auth=False,
            request=body(
                ref("RegisterRequest"),
                {"username": "testuser", "email": "test@example.com", "password": "password123"},
            ),
            description="Always creates a `driver`; a `role` key in the body is ignored.",
        )
    },
    "/api/login": {
        "post": operation(
            "Accounts",
            "Log in",
            {
                "200": ok(ref("Session")),
                **errors(400, 401, 413, 429, e401="Invalid email or password"),
            },
            operation_id="login",
            auth=False,
            request=body(
                ref("LoginRequest"), {"email": "test@example.com", "password": "password123"}
            ),
        )
    },
    "/api/token/refresh": {
        "post": operation(
            "Accounts",
            "Exchange a refresh token for a new token pair",
            {"200": ok(ref("Tokens")), **errors(401, 429)},
            operation_id="refreshToken",
            description=(
                "Send the **refresh** token as the bearer token. It is rotated: the old "
                "one is revoked, and presenting it again revokes every token of the user."
            ),
        )
    },
    "/api/logout": {
        "post": operation(
            "Accounts",
            "Revoke the access token (and optionally a refresh token)",
            {"200": ok(ref("Message")), **errors(400, 401, 413, 429)},
            operation_id="logout",
            request=body(ref("LogoutRequest"), {}, required=False),
        )
    },
    "/api/me": {
        "get": operation(
            "Accounts",
            "The authenticated user",
            {"200": ok(ref("User")), **errors(401, 429)},
            operation_id="me",
        )
    },
    "/api/me/password": {
        "patch": operation(
            "Accounts",
            "Change the password; every earlier token stops working",
            {"200": ok(ref("PasswordChanged")), **errors(400, 401, 413, 429)},
            operation_id="changePassword",
            request=body(
                ref("ChangePasswordRequest"),
                {"current_password": "password123", "new_password": "a-new-password"},
            ),
        )
    },
    "/api/vehicles": {
        "get": operation(
            "Vehicles",
            "List the caller's vehicles",
            {
                "200": ok(array(ref("Vehicle")), LIST, PAGINATION_HEADERS),
                **errors(400, 401, 429),
            },
            operation_id="listVehicles",
            parameters=PAGINATION_PARAMS,
        ),
        "post": operation(
            "Vehicles",
            "Register a vehicle",
            {
                "201": ok(ref("Vehicle"), "Created"),
                **errors(400, 401, 409, 413, 429, e409="Vehicle already registered"),
            },
            operation_id="createVehicle",
            request=body(ref("VehicleCreate"), {"plate_number": "KCB 123A", "type": "SUV"}),
        ),
    },
    "/api/vehicles/{vehicle_id}": {
        "get": operation(
            "Vehicles",
            "One of the caller's vehicles",
            {"200": ok(ref("Vehicle")), **errors(401, 404, 429, e404="Vehicle not found")},
            operation_id="getVehicle",
            parameters=[VEHICLE_ID],
        ),
        "patch": operation(
            "Vehicles",
            "Edit a vehicle's plate or type",
            {
                "200": ok(ref("Vehicle")),
                **errors(
                    400,
                    401,
                    404,
                    409,
                    413,
                    429,
                    e404="Vehicle not found",
                    e409="Vehicle already registered",
                ),
            },
            operation_id="updateVehicle",
            parameters=[VEHICLE_ID],
            request=body(ref("VehicleUpdate"), required=False, example={"type": "Sedan"}),
        ),
        "delete": operation(
            "Vehicles",
            "Delete a vehicle (its ticket history stays)",
            {
                "200": ok(ref("VehicleDeleted")),
                **errors(401, 404, 409, 429, e404="Vehicle not found", e409="Vehicle is parked"),
            },
            operation_id="deleteVehicle",
            parameters=[VEHICLE_ID],
        ),
    },
    "/api/parking-lots": {
        "get": operation(
            "Parking lots",
            "List parking lots",
            {"200": ok(array(ref("Lot")), LIST, PAGINATION_HEADERS), **errors(400, 401, 429)},
            operation_id="listLots",
            parameters=PAGINATION_PARAMS,
        ),
        "post": operation(
            "Parking lots",
            "Create a parking lot, optionally with spots (admin)",
            {"201": ok(ref("LotCreated"), "Created"), **errors(400, 401, 403, 413, 429)},
            operation_id="createLot",
            request=body(
                ref("LotCreate"),
                {
                    "name": "Lot B",
                    "location": "Westlands",
                    "spot_count": 20,
                    "spot_prefix": "B",
                    "timezone": "Africa/Nairobi",
                    "currency": "KES",
                    "hourly_rate": 20000,
                    "grace_minutes": 10,
                    "daily_max": 150000,
                },
            ),
        ),
    },
    "/api/parking-lots/{lot_id}": {
        "get": operation(
            "Parking lots",
            "One lot with spot counts by status and kind",
            {"200": ok(ref("LotDetail")), **errors(401, 404, 429)},
            operation_id="getLot",
            parameters=[LOT_ID],
        ),
        "patch": operation(
            "Parking lots",
            "Edit a lot (admin)",
            {
                "200": ok(ref("Lot")),
                **errors(
                    400,
                    401,
                    403,
                    404,
                    409,
                    413,
                    429,
                    e409="Currency cannot change once the lot has tickets",
                ),
            },
            operation_id="updateLot",
            parameters=[LOT_ID],
            request=body(
                ref("LotUpdate"), required=False, example={"hourly_rate": 25000, "daily_max": None}
            ),
        ),
        "delete": operation(
            "Parking lots",
            "Archive a lot; its ticket history stays (admin)",
            {
                "200": ok(ref("LotArchived")),
                **errors(401, 403, 404, 409, 429, e409="Parking lot has open tickets"),
            },
            operation_id="archiveLot",
            parameters=[LOT_ID],
        ),
    },
    "/api/parking-lots/{lot_id}/spots": {
        "post": operation(
            "Parking lots",
            "Add one spot or a numbered batch (admin)",
            {
                "201": ok(array(ref("Spot")), "Created"),
                **errors(
                    400,
                    401,
                    403,
                    404,
                    409,
                    413,
                    429,
                    e409="Spot number already exists in this lot",
                ),
            },
            operation_id="createSpots",
            parameters=[LOT_ID],
            request=body(ref("SpotsCreate"), {"count": 5, "prefix": "EV", "kind": "ev"}),
        )
    },
    "/api/parking-lots/{lot_id}/quote": {
        "get": operation(
            "Parking lots",
            "Price of a planned stay",
            {"200": ok(ref("Quote")), **errors(400, 401, 404, 429)},
            operation_id="quote",
            parameters=[
                LOT_ID,
                query("minutes", integer(0, MAX_QUOTE_MINUTES), "Planned stay", required=True),
            ],
        )
    },
    "/api/parking-lots/{lot_id}/report": {
        "get": operation(
            "Parking lots",
            "Daily tickets, revenue and average stay in the lot's time zone (admin)",
            {
                "200": {
                    "description": "The report (JSON), or its rows as CSV with `format=csv`",
                    "content": {
                        **json_content(ref("Report")),
                        "text/csv": {"schema": string()},
                    },
                },
                **errors(400, 401, 403, 404, 429),
            },
            operation_id="lotReport",
            parameters=[
                LOT_ID,
                query("from", string(format="date"), "First day, YYYY-MM-DD", required=True),
                query(
                    "to",
                    string(format="date"),
                    f"Last day, YYYY-MM-DD (at most {MAX_REPORT_DAYS} days)",
                    required=True,
                ),
                query("format", string(enum=["json", "csv"], default="json"), "Answer format"),
            ],
        )
    },
    "/api/spots": {
        "get": operation(
            "Spots",
            "Search spots (public)",
            {"200": ok(array(ref("Spot")), LIST, PAGINATION_HEADERS), **errors(400, 429)},
            operation_id="listSpots",
            auth=False,
            parameters=[
                query("lot_id", ID, "Only this lot"),
                query("status", string(enum=list(SPOT_STATUSES)), "Only this status"),
                query("kind", KIND, "Only this kind"),
                *PAGINATION_PARAMS,
            ],
        )
    },
    "/api/spots/{spot_id}": {
        "get": operation(
            "Spots",
            "One spot (public)",
            {"200": ok(ref("Spot")), **errors(404, 429, e404="Spot not found")},
            operation_id="getSpot",
            auth=False,
            parameters=[SPOT_ID],
        ),
        "patch": operation(
            "Spots",
            "Rename a spot, change its kind, or take it out of service (admin)",
            {
                "200": ok(ref("Spot")),
                **errors(
                    400,
                    401,
                    403,
                    404,
                    409,
                    413,
                    429,
                    e404="Spot not found",
                    e409="Spot is occupied, or the number exists in this lot",
                ),
            },
            operation_id="updateSpot",
            parameters=[SPOT_ID],
            request=body(ref("SpotUpdate"), required=False, example={"status": "out_of_service"}),
        ),
    },
    "/api/tickets": {
        "post": operation(
            "Tickets",
            "Book a spot (create a ticket)",
            {
                "201": ok(ref("TicketBooked"), "Created"),
                **errors(
                    400,
                    401,
                    404,
                    409,
                    413,
                    429,
                    e400="Vehicle ID and parking spot ID are required, Spot unavailable, "
                    "Vehicle not found, or a field is invalid",
                    e404="Parking lot not found",
                    e409="Vehicle already parked, or No spots available",
                ),
            },
            operation_id="createTicket",
            request=body(ref("TicketCreate"), {"vehicle_id": 1, "parking_spot_id": 1}),
            description=(
                "Give `parking_spot_id` to book that spot, or `lot_id` (and `kind`) to be "
                "assigned any free spot of the lot."
            ),
        ),
        "get": operation(
            "Tickets",
            "List the caller's tickets, newest first",
            {"200": ok(array(ref("Ticket")), LIST, PAGINATION_HEADERS), **errors(400, 401, 429)},
            operation_id="listTickets",
            parameters=[
                query("active", BOOLEAN, "true: open tickets only; false: closed only"),
                query("lot_id", ID, "Only this lot"),
                query("all", BOOLEAN, "Admins: everyone's tickets"),
                *PAGINATION_PARAMS,
            ],
        ),
    },
    "/api/tickets/{ticket_id}": {
        "get": operation(
            "Tickets",
            "One ticket (owner or admin); an open one shows the amount owed so far",
            {"200": ok(ref("Ticket")), **errors(401, 404, 429, e404="Ticket not found")},
            operation_id="getTicket",
            parameters=[TICKET_ID],
        )
    },
    "/api/checkout/{ticket_id}": {
        "patch": operation(
            "Tickets",
            "Check out: close the ticket and get the receipt (owner or admin)",
            {
                "200": ok(ref("Receipt")),
                **errors(
                    400,
                    401,
                    403,
                    404,
                    429,
                    e400="Invalid ticket or already checked out",
                    e403="You can only check out your own tickets",
                    e404="Not found (the id in the URL is not an integer)",
                ),
            },
            operation_id="checkout",
            parameters=[TICKET_ID],
        )
    },
    "/api/openapi.json": {
        "get": operation(
            "Docs",
            "This OpenAPI document",
            {"200": ok({"type": "object", "required": ["openapi", "paths"]})},
            operation_id="openapi",
            auth=False,
        )
    },
    "/api/docs": {
        "get": operation(
            "Docs",
            "Interactive documentation (Swagger UI)",
            {"200": {"description": "HTML page", "content": {"text/html": {"schema": string()}}}},
            operation_id="docs",
            auth=False,
        )
    },
    "/api/docs/{filename}": {
        "get": operation(
            "Docs",
            "A Swagger UI asset, served by the app (no CDN)",
            {
                "200": {
                    "description": "The file",
                    "content": {
                        media_type: {"schema": string()}
                        for media_type in sorted(set(DOCS_ASSETS.values()))
                    },
                },
                **errors(404, e404="Not found"),
            },
            operation_id="docsAsset",
            auth=False,
            parameters=[
                {
                    "name": "filename",
                    "in": "path",
                    "required": True,
                    "schema": string(enum=sorted(DOCS_ASSETS)),
                }
            ],
        )
    },
}

DESCRIPTION = """\
REST API for parking lots: drivers register, add vehicles, book a spot (a ticket)
and check out with a receipt; operators (admins) manage lots, spots and tariffs and
read reports.

* **Auth**: `POST /api/login` (or `/api/register`) returns `token`; click
  **Authorize** and paste it. Access tokens are short-lived; renew them with
  `POST /api/token/refresh` using the `refresh_token`.
* **Errors**: every error is JSON `{"error": "<message>"}` with a 4xx status.
* **Lists** are JSON arrays, paged with `page` and `per_page` (default 100,
  max 1000); the total is in `X-Total-Count` and the pages in `Link`.
* **Money**: integers in the currency's minor unit (20000 = KES 200.00).
* **Rate limits**: login and register per IP and per e-mail, a generous default
  elsewhere; over the limit answers 429 with `Retry-After`.
"""


@cache
def build_openapi() -> dict:
    """The OpenAPI 3.1 document (without `servers`; the view adds them)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Parking Lot API", "version": "1.0.0", "description": DESCRIPTION},
        "tags": [
            {"name": name}
            for name in ("Accounts", "Vehicles", "Parking lots", "Spots", "Tickets", "Health")
        ]
        + [{"name": "Docs", "description": "This document and its interactive viewer"}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "The `token` from /api/login or /api/register",
                }
            },
        },
    }


def document_for(server_url: str) -> dict:
    """The document with `servers` pointing at the server that was asked for it."""
    document = build_openapi()
    return {
        "openapi": document["openapi"],
        "info": document["info"],
        "servers": [{"url": server_url.rstrip("/") or "/", "description": "This server"}],
        **document,
    }


# ---------------------------------------------------------------------------
# Swagger UI page and assets
# ---------------------------------------------------------------------------

DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Parking Lot API docs</title>
  <link rel="stylesheet" href="{css}">
  <link rel="stylesheet" href="{index_css}">
  <link rel="icon" type="image/png" href="{icon32}" sizes="32x32">
  <link rel="icon" type="image/png" href="{icon16}" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{bundle}"></script>
  <script src="{preset}"></script>
  <script>
    window.onload = function () {{
      var config = {config};
      config.presets = [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset];
      config.plugins = [SwaggerUIBundle.plugins.DownloadUrl];
      window.ui = SwaggerUIBundle(config);
    }};
  </script>
</body>
</html>
"""


def docs_page(spec_url: str, asset_url: Callable[[str], str]) -> str:
    """The Swagger UI page; every asset comes from `asset_url(filename)`."""
    config = {
        "url": spec_url,
        "dom_id": "#swagger-ui",
        "layout": "StandaloneLayout",
        "deepLinking": True,
        # No call to the public validator service: the page works offline.
        "validatorUrl": None,
    }
    return DOCS_PAGE.format(
        css=asset_url("swagger-ui.css"),
        index_css=asset_url("index.css"),
        icon32=asset_url("favicon-32x32.png"),
        icon16=asset_url("favicon-16x16.png"),
        bundle=asset_url("swagger-ui-bundle.js"),
        preset=asset_url("swagger-ui-standalone-preset.js"),
        config=json.dumps(config),
    )


def send_docs_asset(filename: str) -> Response:
    """One of the listed Swagger UI files, or 404; nothing else in the folder is served."""
    if filename not in DOCS_ASSETS:
        raise ApiError(404, "Not found")
    return send_from_directory(SWAGGER_UI_DIR, filename, mimetype=DOCS_ASSETS[filename])
