"""The API's contract: what every endpoint reads and what it answers, declared once.

Each request body, query string and success body is a pydantic model here. The
same declaration validates the input (with the project's exact error messages),
checks the output in tests and generates the OpenAPI document (openapi.py), so
a field's type, limits, example and message live in one place.

Adding an endpoint (routes/ has thirty examples):

1. Declare its input here: a `Body` subclass for a JSON body, a `Query` subclass
   for the query string, fields built with the helpers below in the order the
   checks should run (the first invalid field in declaration order gives the
   400 message). A rule about several fields (a seed message such as "Name and
   location are required") is a `model_validator(mode="before")` on the model,
   e.g. `_rule = requires("name", "location", message=...)`.
2. Declare its output: a `Response` subclass (or `list[Model]`) for the success
   body. In tests every JSON success answer is checked against it, strictly.
3. Put `@endpoint(...)` (endpoints.py) under `@api.route(...)`, naming the auth,
   body/query models, response model and status, and the view's own errors;
   the view receives `body=` / `query=` as validated models. A new `<int:name>`
   in a URL needs its description in `PATH_IDS`.

Field helpers (`Str`, `Int`, `Id`, `Choice`, `QueryInt`, `QueryBool`, ...) are
`Annotated` types: a `BeforeValidator` that reproduces the API's long-standing
rules (strings are stripped and blank means absent, an integral float is an
int, a boolean is not, `""` in a query string means absent) and raises the
final message, plus the JSON schema (type, limits, enum, example) that the
document shows for exactly that rule. Unknown body and query fields are
ignored (the model is the whitelist of what a view can read).

Conventions:
- `name: Str(64, required="...")` must be present and non-blank; with `= None`
  after it (PATCH bodies) it may be absent, but null or blank is refused. The
  view applies `body.model_fields_set`, the fields the client sent.
- The document's request example is the model's `example({...})` config, or
  else the fields' own `example=` values put together.
- The body and query are validated before the view runs, so an invalid request
  is refused before any database work (and before a 404 for its path id).
- `{field}` in a message is the field's name as the client spelled it;
  `validation_error()` turns pydantic's first error into `ApiError(400, ...)`.
"""

import math
import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from billing import CURRENCIES
from models import PAYMENT_METHODS, RESERVATION_STATUSES, ROLES, SPOT_KINDS, SPOT_STATUSES
from validation import MAX_INT, ApiError

# ---------------------------------------------------------------------------
# Limits (the fields below are their only users)
# ---------------------------------------------------------------------------

USERNAME_MAX, EMAIL_MAX, PASSWORD_MIN, PASSWORD_MAX = 64, 254, 8, 128
PLATE_RAW_MAX, PLATE_MAX, VEHICLE_TYPE_MAX = 64, 16, 32  # a plate before/after normalising
LOT_NAME_MAX, LOCATION_MAX, TIMEZONE_MAX = 120, 255, 64
SPOT_NUMBER_MAX, PREFIX_MAX, CHOICE_MAX = 32, 16, 64
MAX_SPOTS_PER_REQUEST = 2000
MAX_RATE = 10_000_000  # 100,000.00 per hour in a two-decimal currency
MAX_QUOTE_MINUTES = 366 * 24 * 60
MAX_REPORT_DAYS = 366
MAX_RESERVATION_MINUTES = 366 * 24 * 60
REFRESH_TOKEN_MAX = 4096
MAX_PAGE, MAX_PER_PAGE, DEFAULT_PER_PAGE = 1_000_000, 1000, 100

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
QUERY_INT_RE = re.compile(r"-?\d{1,10}")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")

# ---------------------------------------------------------------------------
# Errors: one message per failure, one conversion to ApiError
# ---------------------------------------------------------------------------


def fail(template: str) -> PydanticCustomError:
    """The error a field helper raises; `{field}` becomes the field's name."""
    return PydanticCustomError("api", "{template}", {"template": template})


class Required:
    """Annotated marker: the message for a field that is absent (or null, or blank)."""

    def __init__(self, message: str):
        self.message = message


def _required_message(model: Any, name: str) -> str:
    for field in getattr(model, "model_fields", {}).values():
        if name in (field.alias, field.validation_alias):
            break
    else:
        field = getattr(model, "model_fields", {}).get(name)
    for marker in field.metadata if field else ():
        if isinstance(marker, Required):
            return marker.message
    return "{field} is required"


def validation_error(error: ValidationError, model: Any) -> ApiError:
    """The first error, in the order the model declares its fields, as a 400."""
    first = error.errors(include_url=False, include_input=False)[0]
    field = str(first["loc"][-1]) if first["loc"] else ""
    if first["type"] == "api":
        template = first["ctx"]["template"]
    elif first["type"] == "missing":
        template = _required_message(model, field)
    else:  # pydantic's own check (every helper below raises its own message first)
        template = "{field} is invalid"
    return ApiError(400, template.replace("{field}", field))


# ---------------------------------------------------------------------------
# Field helpers: validation and documentation from the same arguments
# ---------------------------------------------------------------------------


def _doc(schema: dict, example: Any, description: str | None, nullable: bool) -> dict:
    schema = dict(schema)
    if nullable:
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    if description:
        schema["description"] = description
    if example is not None:
        schema["examples"] = [example]
    return schema


def _field(python_type, check: Callable, schema: dict, required: str | None, default=None):
    """Annotated[python_type] validated by `check(value)` and documented by `schema`."""
    extras: list[Any] = [BeforeValidator(check), WithJsonSchema(schema)]
    if required:
        extras.append(Required(required))
    else:  # optional: absent is `default` (a required field may still get one in its model)
        extras.append(Field(default=default))
    return Annotated[python_type, *extras]


def _required_text(required: str | bool) -> str | None:
    return "{field} is required" if required is True else (required or None)


def _text(value: Any, max_length: int, required: str | None) -> str | None:
    """A string, stripped; absent, null or blank is None (or `required`'s message)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise fail(required)
        return None
    if not isinstance(value, str):
        raise fail("{field} must be a string")
    value = value.strip()
    if "\x00" in value:
        raise fail("{field} must not contain NUL characters")
    if len(value) > max_length:
        raise fail(f"{{field}} must be at most {max_length} characters")
    return value


def Str(
    max_length: int,
    *,
    required: str | bool = False,
    then: Callable[[str], Any] | None = None,
    schema: dict | None = None,
    example: Any = None,
    description: str | None = None,
):
    """A string of at most `max_length` characters after stripping.

    `required`: True, or the message, when absent/null/blank is an error (the
    field is then never null); otherwise such a value is None. `then(value)`
    runs on a present value (normalising, further checks)."""
    message = _required_text(required)

    def check(value):
        value = _text(value, max_length, message)
        return then(value) if then and value is not None else value

    doc = {"type": "string", "maxLength": max_length, **(schema or {})}
    if message:
        doc.setdefault("minLength", 1)
    return _field(
        str if message else str | None,
        check,
        _doc(doc, example, description, nullable=not message),
        message,
    )


def _integer(value: Any, minimum: int, maximum: int) -> int:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail("{field} must be an integer")
    if not minimum <= value <= maximum:
        raise fail(f"{{field}} must be between {minimum} and {maximum}")
    return value


def Int(
    minimum: int = 0,
    maximum: int = MAX_INT,
    *,
    required: str | bool = False,
    default: int | None = None,
    example: Any = None,
    description: str | None = None,
):
    """An integer in [minimum, maximum]; 3.0 counts as 3, true does not.

    Absent or null is `default` (documented as nullable), or `required`'s message."""
    message = _required_text(required)

    def check(value):
        if value is None:
            if message:
                raise fail(message)
            return default
        return _integer(value, minimum, maximum)

    doc = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if default is not None:
        doc["default"] = default
    return _field(
        int if message or default is not None else int | None,
        check,
        _doc(doc, example, description, nullable=not message),
        message,
        default,
    )


def Id(*, required: str | bool = False, example: Any = 1, description: str | None = None):
    """A row id in a body: an integer from 1 to the column's maximum."""
    return Int(1, MAX_INT, required=required, example=example, description=description)


def Flag(*, default: bool | None = None, description: str | None = None):
    """A JSON boolean (not 1, not "true"); absent or null is `default`."""

    def check(value):
        if value is None:
            return default
        if not isinstance(value, bool):
            raise fail("{field} must be true or false")
        return value

    doc = {"type": "boolean"}
    if default is not None:
        doc["default"] = default
    return _field(
        bool if default is not None else bool | None,
        check,
        _doc(doc, None, description, nullable=default is None),
        None,
        default,
    )


def Choice(
    choices: Iterable[str],
    *,
    default: str | None = None,
    example: Any = None,
    description: str | None = None,
):
    """One of `choices` (stripped); absent, null or blank is `default`."""
    choices = tuple(choices)

    def check(value):
        value = _text(value, CHOICE_MAX, None)
        if value is None:
            return default
        if value not in choices:
            raise fail(f"{{field}} must be one of: {', '.join(choices)}")
        return value

    doc = {"type": "string", "enum": list(choices)}
    if default is not None:
        doc["default"] = default
    return _field(
        str if default else str | None,
        check,
        _doc(doc, example, description, nullable=True),
        None,
        default,
    )


def OneOf(choices: Iterable[str], *, example: Any = None, description: str | None = None):
    """One of `choices`, required ("{field} is required" when absent or blank)."""
    choices = tuple(choices)

    def check(value):
        value = _text(value, CHOICE_MAX, "{field} is required")
        if value not in choices:
            raise fail(f"{{field}} must be one of: {', '.join(choices)}")
        return value

    doc = {"type": "string", "enum": list(choices)}
    return _field(
        str, check, _doc(doc, example, description, nullable=False), "{field} is required"
    )


def _new_password(value: Any) -> str:
    if not isinstance(value, str):
        raise fail("{field} must be a string")
    if "\x00" in value:
        raise fail("{field} must not contain NUL characters")
    if len(value) < PASSWORD_MIN:
        raise fail(f"Password must be at least {PASSWORD_MIN} characters")
    if len(value) > PASSWORD_MAX:
        raise fail(f"Password must be at most {PASSWORD_MAX} characters")
    return value


# A password being set: kept as typed (no stripping), 8 to 128 characters.
NewPassword = _field(
    str,
    _new_password,
    _doc(
        {"type": "string", "minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX},
        "a-new-password",
        None,
        nullable=False,
    ),
    "{field} must be a string",
)


def Secret(message: str, *, example: str = "password123"):
    """A password being checked: any non-empty string (else `message`). Only the
    first PASSWORD_MAX + 1 characters are hashed: a longer one cannot match, and
    a megabyte of password must not cost a megabyte of hashing."""

    def check(value):
        if not isinstance(value, str) or not value:
            raise fail(message)
        return value[: PASSWORD_MAX + 1]

    return _field(
        str, check, _doc({"type": "string", "minLength": 1}, example, None, False), message
    )


def _refresh_token(value: Any) -> str | None:
    # Not stripped, and "" is not absent: it is checked (and refused) as a token.
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > REFRESH_TOKEN_MAX:
        raise fail("refresh_token must be a refresh token string")
    return value


# A refresh token to revoke too (logout): any string up to the limit, checked by the view.
RefreshToken = _field(
    str | None,
    _refresh_token,
    _doc(
        {"type": "string", "maxLength": REFRESH_TOKEN_MAX},
        None,
        "Also revoke this refresh token",
        nullable=True,
    ),
    None,
)


# ---------------------------------------------------------------------------
# Query-string helpers: raw strings; "" is the same as absent
# ---------------------------------------------------------------------------


def QueryInt(
    minimum: int = 0,
    maximum: int = MAX_INT,
    *,
    required: str | bool = False,
    default: int | None = None,
    example: Any = None,
    description: str | None = None,
):
    message = _required_text(required)

    def check(raw):
        if raw is None or raw == "":
            if message:
                raise fail(message)
            return default
        if not isinstance(raw, str) or not QUERY_INT_RE.fullmatch(raw):
            raise fail("{field} must be an integer")
        value = int(raw)
        if not minimum <= value <= maximum:
            raise fail(f"{{field}} must be between {minimum} and {maximum}")
        return value

    doc = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if default is not None:
        doc["default"] = default
    return _field(
        int if message or default is not None else int | None,
        check,
        _doc(doc, example, description, nullable=False),
        message,
        default,
    )


TRUE, FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})


def QueryBool(*, default: bool | None = None, description: str | None = None):
    def check(raw):
        if raw is None or raw == "":
            return default
        lowered = raw.lower() if isinstance(raw, str) else raw
        if lowered in TRUE:
            return True
        if lowered in FALSE:
            return False
        raise fail("{field} must be true or false")

    doc = {"type": "boolean"}
    if default is not None:
        doc["default"] = default
    described = f"{description} (true/false, also 1/0, yes/no)" if description else None
    return _field(
        bool if default is not None else bool | None,
        check,
        _doc(doc, None, described, nullable=False),
        None,
        default,
    )


def QueryChoice(
    choices: Iterable[str], *, default: str | None = None, description: str | None = None
):
    choices = tuple(choices)

    def check(raw):
        if raw is None or raw == "":
            return default
        if raw not in choices:
            raise fail(f"{{field}} must be one of: {', '.join(choices)}")
        return raw

    doc = {"type": "string", "enum": list(choices)}
    if default is not None:
        doc["default"] = default
    return _field(
        str if default else str | None,
        check,
        _doc(doc, None, description, nullable=False),
        None,
        default,
    )


def _query_date(raw):
    if not raw:
        raise fail("{field} is required (YYYY-MM-DD)")
    try:
        # fromisoformat alone would also take "20260115" and week dates like "2026-W03-4".
        if not isinstance(raw, str) or not DATE_RE.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise fail("{field} must be a date in the form YYYY-MM-DD") from None


def QueryDate(*, example: str, description: str):
    """A required day, YYYY-MM-DD."""
    return _field(
        date,
        _query_date,
        _doc({"type": "string", "format": "date"}, example, description, nullable=False),
        "{field} is required (YYYY-MM-DD)",
    )


def _aware(value: Any) -> datetime:
    """An ISO 8601 time that carries its UTC offset, as UTC."""
    if not isinstance(value, str):
        raise fail("{field} must be a string")
    if len(value) > 64:
        raise fail("{field} must be at most 64 characters")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise fail(
            "{field} must be an ISO 8601 date and time, e.g. 2026-01-15T08:00:00+03:00"
        ) from None
    if parsed.tzinfo is None:
        raise fail("{field} must carry a UTC offset, e.g. 2026-01-15T08:00:00+03:00 or Z")
    return parsed.astimezone(UTC)


def Instant(*, required: str | bool = True, example: str, description: str | None = None):
    """A moment in a body: ISO 8601 with a UTC offset (a naive time is 400)."""
    message = _required_text(required)

    def check(value):
        if value is None or (isinstance(value, str) and not value.strip()):
            if message:
                raise fail(message)
            return None
        return _aware(value)

    doc = {"type": "string", "format": "date-time", "maxLength": 64}
    return _field(
        datetime if message else datetime | None,
        check,
        _doc(doc, example, description or "ISO 8601 with a UTC offset", nullable=not message),
        message,
    )


def QueryInstant(*, example: str, description: str):
    """An optional moment in a query string, ISO 8601 with a UTC offset."""

    def check(raw):
        if raw is None or raw == "":
            return None
        return _aware(raw)

    return _field(
        datetime | None,
        check,
        _doc({"type": "string", "format": "date-time"}, example, description, nullable=False),
        None,
    )


def QueryStr(
    max_length: int, *, required: str | bool = False, then=None, example=None, description=None
):
    """A string in a query string ("" is absent), stripped, at most `max_length`."""
    message = _required_text(required)

    def check(raw):
        value = _text(raw, max_length, message)
        return then(value) if then and value is not None else value

    return _field(
        str if message else str | None,
        check,
        _doc({"type": "string", "maxLength": max_length}, example, description, nullable=False),
        message,
    )


def ListOf(
    item_check: Callable[[Any], Any],
    item_schema: dict,
    *,
    min_items: int,
    max_items: int,
    example: list,
    description: str,
):
    """A JSON array of `item_check`ed values (duplicates dropped, order kept)."""

    def check(value):
        if value is None:
            value = []
        if not isinstance(value, list):
            raise fail("{field} must be a list")
        if not min_items <= len(value) <= max_items:
            raise fail(f"{{field}} must have {min_items} to {max_items} items")
        return list(dict.fromkeys(item_check(item) for item in value))

    doc = {"type": "array", "items": item_schema, "minItems": min_items, "maxItems": max_items}
    required = "{field} is required" if min_items else None
    return _field(list, check, _doc(doc, example, description, nullable=not required), required, [])


# ---------------------------------------------------------------------------
# Normalisers of single fields (pure; used by the helpers above)
# ---------------------------------------------------------------------------


def normalise_email(value: str) -> str:
    return value.lower()


def checked_email(value: str) -> str:
    value = value.lower()
    if not EMAIL_RE.match(value):
        raise fail("Invalid email format")
    return value


def normalise_plate(value: str) -> str:
    """Upper case, inner whitespace collapsed: "kcb 123a" and "KCB  123A" are one plate."""
    plate = " ".join(value.split()).upper()
    if not all(ch.isalnum() or ch in " -" for ch in plate):
        raise fail("Plate number may contain only letters, digits, spaces and hyphens")
    if len(plate) > PLATE_MAX:
        raise fail(f"plate_number must be at most {PLATE_MAX} characters")
    return plate


def checked_timezone(zone: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America" is a folder
        raise fail("timezone must be an IANA time zone name, e.g. Africa/Nairobi") from None
    return zone


def checked_currency(value: str) -> str:
    currency = value.upper()
    if currency not in CURRENCIES:
        raise fail("currency must be an ISO 4217 code, e.g. KES")
    return currency


# ---------------------------------------------------------------------------
# Model bases and rules
# ---------------------------------------------------------------------------


class Body(BaseModel):
    """A JSON request body. Unknown keys are ignored: the fields are the whitelist."""

    model_config = ConfigDict(extra="ignore")


class Query(BaseModel):
    """A query string (first value of each name). Unknown names are ignored."""

    model_config = ConfigDict(extra="ignore")


class Response(BaseModel):
    """A success body. Closed and strict: tests check every answer against it."""

    model_config = ConfigDict(extra="forbid", strict=True)


def requires(*fields: str, message: str, any_of: Iterable[str] = ()):
    """A model rule, checked before the fields: each of `fields` (and at least one
    of `any_of`) is present and truthy, else a 400 with `message`. The seed's
    check, kept for its messages ("All fields are required")."""
    alternatives = tuple(any_of)

    def check(cls, data):
        if isinstance(data, dict) and (
            not all(data.get(name) for name in fields)
            or (alternatives and not any(data.get(name) for name in alternatives))
        ):
            raise fail(message)
        return data

    return model_validator(mode="before")(check)


def example(value: dict) -> ConfigDict:
    """model_config with the request example shown in /api/docs (instead of one
    assembled from the fields' own examples)."""
    return ConfigDict(json_schema_extra={"examples": [value]})


# ---------------------------------------------------------------------------
# Path parameters: every `<int:name>` in a URL, by name
# ---------------------------------------------------------------------------

PATH_IDS = {
    "vehicle_id": "Vehicle id",
    "lot_id": "Parking lot id",
    "spot_id": "Spot id",
    "ticket_id": "Ticket id",
    "user_id": "User id",
    "device_id": "Gate device id",
    "permit_id": "Permit id",
    "webhook_id": "Webhook id",
    "reservation_id": "Reservation id",
}
PATH_ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_INT}

# ---------------------------------------------------------------------------
# Response field types
# ---------------------------------------------------------------------------

RowId = Annotated[int, Field(ge=1, le=MAX_INT)]
Count = Annotated[int, Field(ge=0)]
Amount = Annotated[int, Field(description="In the currency's minor unit (e.g. 20000 = KES 200.00)")]
CurrencyCode = Annotated[str, Field(min_length=3, max_length=3, pattern="^[A-Z]{3}$")]
Timestamp = Annotated[AwareDatetime, Field(description="ISO 8601 with a UTC offset")]
SpotKind = Literal[SPOT_KINDS]
SpotStatus = Literal[SPOT_STATUSES]

# ===========================================================================
# Accounts
# ===========================================================================


class RegisterRequest(Body):
    model_config = example(
        {"username": "testuser", "email": "test@example.com", "password": "password123"}
    )
    _all = requires("username", "email", "password", message="All fields are required")

    username: Str(USERNAME_MAX, required="All fields are required", example="testuser")
    email: Str(
        EMAIL_MAX,
        required="All fields are required",
        then=checked_email,
        schema={"format": "email", "minLength": 3},
        example="test@example.com",
    )
    password: NewPassword


class LoginRequest(Body):
    model_config = example({"email": "test@example.com", "password": "password123"})

    email: Str(
        EMAIL_MAX,
        required="Email and password are required",
        then=normalise_email,
        example="test@example.com",
    )
    password: Secret("Email and password are required")


class LogoutRequest(Body):
    model_config = example({})

    refresh_token: RefreshToken


class ChangePasswordRequest(Body):
    model_config = example({"current_password": "password123", "new_password": "a-new-password"})

    current_password: Secret("current_password is required")
    new_password: NewPassword


class User(Response):
    id: RowId
    username: str
    email: str
    role: Literal[ROLES]


class Tokens(Response):
    token: str = Field(description="Access token (short-lived)")
    refresh_token: str = Field(description="Refresh token for POST /api/token/refresh")


class Session(Response):
    """A user and a fresh token pair."""

    user: User
    token: str
    refresh_token: str


class Message(Response):
    message: str


class PasswordChanged(Response):
    message: str
    token: str
    refresh_token: str


# ===========================================================================
# Vehicles
# ===========================================================================

PLATE_DOC = (
    "Letters, digits, spaces and hyphens; stored upper-case with inner "
    f"whitespace collapsed, at most {PLATE_MAX} characters"
)
Plate = Str(
    PLATE_RAW_MAX,
    required="Plate number is required",
    then=normalise_plate,
    example="KCB 123A",
    description=PLATE_DOC,
)
VehicleType = Str(VEHICLE_TYPE_MAX, example="SUV", description="e.g. SUV")


class VehicleCreate(Body):
    plate_number: Plate
    type: VehicleType


class VehicleUpdate(Body):
    """Only the fields sent change; `type: null` clears the type."""

    model_config = example({"type": "Sedan"})

    plate_number: Plate = None
    type: VehicleType = None


class Vehicle(Response):
    id: RowId
    plate_number: str
    type: str | None
    user_id: RowId


class VehicleDeleted(Response):
    message: str
    vehicle_id: RowId


# ===========================================================================
# Parking lots
# ===========================================================================

NAME_AND_LOCATION = "Name and location are required"
LotName = Str(LOT_NAME_MAX, required=NAME_AND_LOCATION, example="Lot B")
Location = Str(LOCATION_MAX, required=NAME_AND_LOCATION, example="Westlands")


class LotFields(Body):
    """The editable fields of a lot; PATCH changes the ones sent."""

    model_config = example({"hourly_rate": 25000, "daily_max": None})

    name: LotName = None
    location: Location = None
    timezone: Str(
        TIMEZONE_MAX,
        required=True,
        then=checked_timezone,
        example="Africa/Nairobi",
        description="IANA time zone name, default UTC",
    ) = None
    currency: Str(
        3,
        required=True,
        then=checked_currency,
        schema={"minLength": 3},
        example="KES",
        description="ISO 4217 code, default from DEFAULT_CURRENCY",
    ) = None
    hourly_rate: Int(
        0, MAX_RATE, required=True, example=20000, description="Minor units per hour"
    ) = None
    billing_increment_minutes: Int(1, 1440, required=True, example=60, description="Default 60") = (
        None
    )
    grace_minutes: Int(0, 1440, required=True, example=10, description="Free stay, default 0") = (
        None
    )
    daily_max: Int(0, MAX_RATE * 24, example=150000, description="Cap per 24 hours, or null")
    exit_grace_minutes: Int(
        0,
        1440,
        required=True,
        example=15,
        description="Minutes to leave after paying at the gate, default 15",
    ) = None
    # The reservation policy (frozen on each reservation when it is made).
    reservation_max_days: Int(
        1, 366, required=True, example=30, description="Longest reservation window, default 30"
    ) = None
    reservation_horizon_days: Int(
        0, 3660, required=True, example=90, description="How far ahead one may reserve, default 90"
    ) = None
    cancel_free_minutes: Int(
        0,
        MAX_RESERVATION_MINUTES,
        required=True,
        example=60,
        description="Free cancellation until this long before the window, default 60",
    ) = None
    late_cancel_fee: Int(
        0,
        MAX_RATE * 24 * 366,
        example=5000,
        description="Kept from a later cancellation; null (default): the full amount",
    )
    early_minutes: Int(
        0, 1440, required=True, example=15, description="Check-in opens this early, default 15"
    ) = None
    no_show_minutes: Int(
        0,
        1440,
        required=True,
        example=30,
        description="Not checked in this long after the start: a no-show, default 30",
    ) = None


LOT_FIELDS = frozenset(LotFields.model_fields)


class LotCreate(LotFields):
    model_config = example(
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
        }
    )
    _name_and_location = requires("name", "location", message=NAME_AND_LOCATION)

    name: LotName
    location: Location
    spot_count: Int(0, MAX_SPOTS_PER_REQUEST, default=0, description="Default 0")
    spot_prefix: Str(PREFIX_MAX, description="Spots are <prefix>1..N")
    kind: Choice(SPOT_KINDS, default="standard", description="Kind of the created spots")
    reservable_count: Int(
        0,
        MAX_SPOTS_PER_REQUEST,
        default=0,
        description="How many of the created spots (the last ones) host reservations only",
    )

    @field_validator("reservable_count")
    @classmethod
    def _at_most_spots(cls, count: int, info: ValidationInfo) -> int:
        if count > (info.data.get("spot_count") or 0):
            raise fail("reservable_count must not exceed spot_count")
        return count


class OneSpot(Body):
    """One spot."""

    spot_number: Str(SPOT_NUMBER_MAX, required=True, example="A11")
    kind: Choice(SPOT_KINDS, default="standard", description="Default standard")
    reservable: Flag(default=False, description="Hosts reservations only")


class SpotBatch(Body):
    """A batch: spots <prefix>1..<prefix>count."""

    count: Int(1, MAX_SPOTS_PER_REQUEST, required=True, description="<prefix>1..count")
    prefix: Str(PREFIX_MAX)
    kind: Choice(SPOT_KINDS, default="standard", description="Default standard")
    reservable: Flag(default=False, description="Hosts reservations only")


def _spots_branch(data: Any) -> str | None:
    if isinstance(data, dict):
        if data.get("spot_number") is not None:
            return "one"
        if data.get("count") is not None:
            return "batch"
    return None


class SpotsCreate(RootModel):
    """One spot, or a batch; with both, `spot_number` wins (the batch fields are ignored)."""

    model_config = example({"count": 5, "prefix": "EV", "kind": "ev"})

    root: Annotated[
        Annotated[OneSpot, Tag("one")] | Annotated[SpotBatch, Tag("batch")],
        Discriminator(
            _spots_branch,
            custom_error_type="api",
            custom_error_message="Give spot_number, or count (and prefix) for a batch",
            custom_error_context={
                "template": "Give spot_number, or count (and prefix) for a batch"
            },
        ),
    ]


class SpotUpdate(Body):
    model_config = example({"status": "out_of_service"})

    spot_number: Str(SPOT_NUMBER_MAX, required=True, example="A11") = None
    kind: Choice(SPOT_KINDS, description="Unchanged when null")
    status: Choice(("available", "out_of_service"), example="out_of_service")
    reservable: Flag(description="Hosts reservations only; unchanged when null")


class Tariff(Response):
    hourly_rate: Annotated[int, Field(ge=0, le=MAX_RATE, description="Minor units per hour")]
    billing_increment_minutes: Annotated[int, Field(ge=1, le=1440)]
    grace_minutes: Annotated[int, Field(ge=0, le=1440, description="Free stay")]
    daily_max: Annotated[int, Field(ge=0, le=MAX_RATE * 24)] | None = Field(
        description="Cap per 24 hours, or null"
    )


class Lot(Response):
    id: RowId
    name: str
    location: str
    spots: Count
    available_spots: Count = Field(
        description="Free spots a driver can book now (reservable spots not counted)"
    )
    timezone: str
    currency: CurrencyCode
    tariff: Tariff
    exit_grace_minutes: Annotated[int, Field(ge=0, le=1440)] = Field(
        description="Minutes to leave after paying at the gate"
    )
    reservable_spots: Count = Field(description="Spots that host reservations only")
    reservations: "ReservationPolicy"


class ReservationPolicy(Response):
    max_days: Annotated[int, Field(ge=1)]
    horizon_days: Count
    cancel_free_minutes: Count
    late_cancel_fee: Amount | None = Field(description="null: the full amount")
    early_minutes: Count
    no_show_minutes: Count


class SpotCounts(Response):
    total: Count
    available: Count
    occupied: Count
    out_of_service: Count


class LotDetail(Lot):
    counts: SpotCounts
    kinds: dict[SpotKind, SpotCounts] = Field(description="Counts per spot kind present in the lot")


class LotCreated(Response):
    message: str
    lot_id: RowId
    lot: Lot


class LotArchived(Response):
    message: str
    lot_id: RowId


class Spot(Response):
    id: RowId
    spot_number: str
    status: SpotStatus
    lot: str = Field(description="Lot name")
    lot_id: RowId
    kind: SpotKind
    reservable: bool = Field(description="Hosts reservations only")


class QuoteQuery(Query):
    minutes: QueryInt(0, MAX_QUOTE_MINUTES, required=True, example=90, description="Planned stay")


class GraceItem(Response):
    period: Literal["grace"]
    minutes: Count
    amount: Literal[0]


class FullDayItem(Response):
    period: Literal["full_day"]
    days: Annotated[int, Field(ge=1)]
    increments_per_day: Count
    amount_per_day: Amount
    capped: bool
    amount: Amount


class RemainderItem(Response):
    period: Literal["remainder"]
    minutes: Annotated[int, Field(ge=1)]
    increments: Annotated[int, Field(ge=1)]
    capped: bool
    amount: Amount


class PermitItem(Response):
    """The part of a stay a permit covered: free."""

    period: Literal["permit"]
    minutes: Count
    amount: Literal[0]


class EarlyItem(Response):
    """A reserved stay's minutes before its window (check-in opens early): free."""

    period: Literal["early"]
    minutes: Count
    amount: Literal[0]


class ReservationItem(Response):
    """A reserved stay's minutes inside its window: paid at booking (`prepaid`).
    Items after it bill the time after the window."""

    period: Literal["reservation"]
    minutes: Count
    amount: Literal[0]
    prepaid: Amount


BreakdownItem = GraceItem | FullDayItem | RemainderItem | PermitItem | EarlyItem | ReservationItem


class Quote(Response):
    minutes: Annotated[int, Field(ge=0, le=MAX_QUOTE_MINUTES)]
    amount: Amount
    currency: CurrencyCode
    tariff: Tariff
    breakdown: list[BreakdownItem]


class ReportQuery(Query):
    from_: QueryDate(example="2026-01-01", description="First day, YYYY-MM-DD") = Field(
        alias="from"
    )
    to: QueryDate(
        example="2026-01-31", description=f"Last day, YYYY-MM-DD (at most {MAX_REPORT_DAYS} days)"
    )
    format: QueryChoice(("json", "csv"), default="json", description="Answer format")

    @field_validator("to")
    @classmethod
    def _range(cls, to: date, info: ValidationInfo) -> date:
        # Checked right after `to`, before `format`, as the view always did.
        start = info.data.get("from_")
        if start is None:
            return to
        if to < start:
            raise fail("to must not be before from")
        if (to - start).days + 1 > MAX_REPORT_DAYS:
            raise fail(f"A report covers at most {MAX_REPORT_DAYS} days")
        return to


class PaymentsByMethod(Response):
    """Money recorded per payment method (refunds counted negative)."""

    cash: Amount
    card: Amount
    app: Amount
    reservation: Amount


class ReportDay(Response):
    date: date
    tickets_started: Count
    tickets_closed: Count
    revenue: Amount = Field(description="What the tickets closed that day were charged")
    average_stay_minutes: float | None
    payments: PaymentsByMethod = Field(description="Payments recorded that day")
    outstanding: Amount = Field(description="What the tickets closed that day still owe")
    permit_sessions: Count = Field(description="Tickets closed that day a permit covered")
    reservations_made: Count
    reservation_revenue: Amount = Field(description="Amounts of the reservations made that day")
    cancellations: Count
    refunds: Amount = Field(description="Refunded for the cancellations that day")
    no_shows: Count = Field(description="Reservations starting that day that were no-shows")


class Occupancy(Response):
    total: Count
    occupied: Count
    available: Count
    out_of_service: Count


class ReportTotals(Response):
    tickets_started: Count
    tickets_closed: Count
    revenue: Amount
    payments: PaymentsByMethod
    outstanding: Amount
    permit_sessions: Count
    reservations_made: Count
    reservation_revenue: Amount
    cancellations: Count
    refunds: Amount
    no_shows: Count


class Report(Response):
    lot_id: RowId
    lot: str
    timezone: str
    currency: CurrencyCode
    from_: date = Field(alias="from")
    to: date
    occupancy: Occupancy
    days: list[ReportDay]
    totals: ReportTotals


# ===========================================================================
# Lists and spots
# ===========================================================================

Page = QueryInt(
    1, MAX_PAGE, default=1, description="Page number, from 1 (deep pages cost more: prefer cursor)"
)
PerPage = QueryInt(1, MAX_PER_PAGE, default=DEFAULT_PER_PAGE, description="Items per page")
Cursor = QueryStr(
    512,
    example=None,
    description='Where the next page starts: take it from the `Link` header\'s `rel="next"`',
)


class Pagination(Query):
    """page and per_page; a list's own filters come first (they are checked first)."""

    page: Page
    per_page: PerPage
    cursor: Cursor


class SpotSearch(Query):
    lot_id: QueryInt(1, MAX_INT, description="Only this lot")
    status: QueryChoice(SPOT_STATUSES, description="Only this status")
    kind: QueryChoice(SPOT_KINDS, description="Only this kind")
    page: Page
    per_page: PerPage
    cursor: Cursor


# ===========================================================================
# Tickets
# ===========================================================================


class TicketCreate(Body):
    """`parking_spot_id` books that spot; `lot_id` (and `kind`) any free spot of the lot."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"vehicle_id": 1, "parking_spot_id": 1}],
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "integer", "minimum": 1}}}
                for name in ("parking_spot_id", "lot_id")
            ],
        }
    )
    # As in the seed, a missing (or zero) id is "required"; wrong types are refused after.
    _ids = requires(
        "vehicle_id",
        any_of=("parking_spot_id", "lot_id"),
        message="Vehicle ID and parking spot ID are required",
    )

    vehicle_id: Id(required=True)
    parking_spot_id: Id(description="Book this spot")
    lot_id: Id(description="Or: any free spot of this lot")
    kind: Choice(SPOT_KINDS, description="With lot_id: only spots of this kind")


class TicketBooked(Response):
    message: str
    ticket_id: RowId
    spot_id: RowId
    spot_number: str
    lot: str
    lot_id: RowId
    check_in: Timestamp
    currency: CurrencyCode
    tariff: Tariff


class TicketList(Query):
    all: QueryBool(default=False, description="Admins: everyone's tickets")
    active: QueryBool(description="true: open tickets only; false: closed only")
    lot_id: QueryInt(1, MAX_INT, description="Only this lot")
    page: Page
    per_page: PerPage
    cursor: Cursor


LocalTimestamp = Annotated[
    AwareDatetime, Field(description="The same moment in the lot's time zone (its offset)")
]
Minutes = Annotated[
    int, Field(ge=0, description="Started minutes of the stay: a 2-second stay is 1 minute")
]


class Balance(Response):
    """What a stay owes, what was paid, and what is left to pay."""

    amount_due: Amount = Field(description="Owed so far (open) or charged (closed)")
    amount_paid: Amount = Field(description="The sum of the ticket's payments (net of refunds)")
    balance: Amount = Field(description="amount_due - amount_paid, never below 0")


class Ticket(Balance):
    id: RowId
    vehicle_id: RowId
    plate_number: str = Field(description="As the car was first registered")
    spot_id: RowId
    check_in: Timestamp
    check_out: Timestamp | None
    check_in_local: LocalTimestamp
    check_out_local: LocalTimestamp | None
    status: Literal["open", "closed"]
    user_id: RowId | None = Field(description="null: a car without (a single) account")
    lot_id: RowId
    lot: str
    spot_number: str
    duration_minutes: Minutes
    currency: CurrencyCode
    tariff: Tariff
    reservation_id: RowId | None = Field(description="The reservation this stay was checked in for")


class PaymentActor(Response):
    type: Literal["user", "device"]
    id: RowId


class Payment(Response):
    id: RowId
    ticket_id: RowId
    amount: Amount = Field(description="Negative: a refund")
    currency: CurrencyCode
    method: Literal[PAYMENT_METHODS]
    reference: str | None
    reason: str | None
    created_at: Timestamp
    actor: PaymentActor


class TicketDetail(Ticket):
    paid_until: Timestamp | None = Field(
        description="A payment while parked fixed the fee up to this moment"
    )
    payments: list[Payment]


class Receipt(Balance):
    message: str
    ticket_id: RowId
    plate_number: str
    check_in: Timestamp
    check_out: Timestamp
    check_in_local: LocalTimestamp
    check_out_local: LocalTimestamp
    duration_minutes: Minutes
    currency: CurrencyCode
    lot: str
    lot_id: RowId
    spot_number: str
    breakdown: list[BreakdownItem]


# ===========================================================================
# The gate: entries, exits, payments, enforcement checks
# ===========================================================================

MAX_AMOUNT = 10**12  # minor units: ten billion in a two-decimal currency
REFERENCE_MAX, REASON_MAX, DEVICE_NAME_MAX, NOTE_MAX = 128, 255, 64, 255
MAX_PERMIT_PLATES, MAX_PERMIT_LOTS = 100, 100
GatePlate = Str(
    PLATE_RAW_MAX,
    required="Plate number is required",
    then=normalise_plate,
    example="KCB 123A",
    description="As read by the camera or the attendant; matched on letters and digits only",
)


class EntryCreate(Body):
    """A car arriving at the gate. The spot is assigned as for auto-assignment,
    or `spot_id` is used."""

    model_config = example({"plate_number": "KCB 123A"})

    plate_number: GatePlate
    kind: Choice(SPOT_KINDS, description="Only spots of this kind")
    spot_id: Id(description="This spot of the lot instead of any free one")


class Entry(Response):
    message: str
    ticket_id: RowId
    plate_number: str = Field(description="As the car was first registered")
    vehicle_id: RowId
    user_id: RowId | None = Field(description="The driver, if exactly one account has the plate")
    spot_id: RowId
    spot_number: str
    lot_id: RowId
    lot: str
    check_in: Timestamp
    check_in_local: LocalTimestamp
    currency: CurrencyCode
    tariff: Tariff
    reservation_id: RowId | None = Field(description="The plate's reservation, checked in")


class ExitCreate(Body):
    model_config = example({"plate_number": "KCB 123A"})

    plate_number: GatePlate


class ExitReceipt(Receipt):
    gate: Literal["open"]


class PaymentRequired(Response):
    """402: the car may not leave yet."""

    error: Literal["Payment required"]
    ticket_id: RowId
    amount_due: Amount
    amount_paid: Amount
    balance: Amount
    currency: CurrencyCode


class Candidate(Response):
    ticket_id: RowId
    plate_number: str
    spot_number: str
    check_in: Timestamp


class NoSession(Response):
    """404 at the exit. For "No open session for this plate": the lot's open
    sessions whose plate differs by one character (cameras misread)."""

    error: str
    candidates: list[Candidate] = Field(default_factory=list)


class PaymentConflict(Response):
    """409 for a payment: the balance (or amount paid) it would have exceeded."""

    error: str
    balance: Amount = Field(default=0)
    amount_paid: Amount = Field(default=0)


def _nonzero(value: int) -> int:
    if value == 0:
        raise fail("amount must not be 0")
    return value


class PaymentCreate(Body):
    model_config = example({"amount": 20000, "method": "cash", "reference": "PS-0042"})

    amount: Annotated[
        Int(
            -MAX_AMOUNT,
            MAX_AMOUNT,
            required=True,
            example=20000,
            description=("Minor units; negative for a refund (admins, with a reason)"),
        ),
        AfterValidator(_nonzero),
    ]
    method: OneOf(("cash", "card", "app"), example="cash")
    reference: Str(
        REFERENCE_MAX,
        example="PS-0042",
        description="The pay station's or backend's id: a repeat is recorded once",
    )
    reason: Str(REASON_MAX, description="Why (required for a refund)")


class PaymentRecorded(Payment):
    ticket: Balance


class CheckQuery(Query):
    plate: QueryStr(
        PLATE_RAW_MAX,
        required=True,
        then=normalise_plate,
        example="KCB 123A",
        description="The plate to check",
    )


class CheckResult(Response):
    plate_number: str
    allowed: bool
    reason: Literal["session", "permit"] | None
    ticket_id: RowId | None
    permit_id: RowId | None
    since: Timestamp | None = Field(description="Check-in, or the permit's start")
    until: Timestamp | None = Field(description="The permit's end (null for a session)")
    balance: Amount | None = Field(description="What the open session owes now")


# ===========================================================================
# Staff and devices
# ===========================================================================


class UserList(Query):
    role: QueryChoice(ROLES, description="Only this role")
    page: Page
    per_page: PerPage
    cursor: Cursor


class UserUpdate(Body):
    model_config = example({"role": "attendant"})

    role: OneOf(ROLES, example="attendant")


class StaffMember(Response):
    id: RowId
    username: str
    email: str
    role: Literal[ROLES]
    assigned_at: Timestamp


class StaffAssigned(Response):
    message: str
    lot_id: RowId
    user_id: RowId


class DeviceCreate(Body):
    model_config = example({"name": "North barrier"})

    name: Str(DEVICE_NAME_MAX, required=True, example="North barrier")


class Device(Response):
    id: RowId
    name: str
    lot_id: RowId
    created_at: Timestamp
    revoked_at: Timestamp | None


class DeviceCreated(Device):
    key: str = Field(description="Shown once: send it as `Authorization: Device <key>`")


ACTOR_RE = re.compile(r"(user|device):(\d{1,10})")


def _actor(value: str) -> str:
    if not ACTOR_RE.fullmatch(value):
        raise fail("actor must be user:<id> or device:<id>")
    return value


class AuditQuery(Query):
    lot_id: QueryInt(1, MAX_INT, description="Only this lot")
    actor: QueryStr(24, then=_actor, example="user:1", description="user:<id> or device:<id>")
    from_: QueryInstant(
        example="2026-01-01T00:00:00Z", description="From this moment (with a UTC offset)"
    ) = Field(alias="from")
    to: QueryInstant(example="2026-02-01T00:00:00Z", description="Before this moment")
    page: Page
    per_page: PerPage
    cursor: Cursor


class AuditActor(Response):
    type: Literal["user", "device"]
    id: RowId
    name: str


class AuditEntry(Response):
    id: RowId
    at: Timestamp
    actor: AuditActor
    action: str
    lot_id: RowId | None
    ticket_id: RowId | None
    amount: Amount | None
    plate_number: str | None
    detail: str | None


# ===========================================================================
# Permits (season passes)
# ===========================================================================


def _plate_item(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail("plate_numbers must be plate strings")
    if len(value) > PLATE_RAW_MAX or "\x00" in value:
        raise fail(f"plate_numbers must be plates of at most {PLATE_MAX} characters")
    return normalise_plate(value.strip())


def _lot_item(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT:
        raise fail("lot_ids must be lot ids")
    return value


class PermitCreate(Body):
    model_config = example(
        {
            "plate_numbers": ["KCB 123A"],
            "lot_ids": [1],
            "valid_from": "2026-01-01T00:00:00+03:00",
            "valid_to": "2026-02-01T00:00:00+03:00",
            "note": "January season pass",
        }
    )

    plate_numbers: ListOf(
        _plate_item,
        {"type": "string", "maxLength": PLATE_RAW_MAX},
        min_items=1,
        max_items=MAX_PERMIT_PLATES,
        example=["KCB 123A"],
        description="The plates it covers",
    )
    lot_ids: ListOf(
        _lot_item,
        PATH_ID_SCHEMA,
        min_items=0,
        max_items=MAX_PERMIT_LOTS,
        example=[1],
        description="The lots it is valid at; empty: every lot",
    )
    valid_from: Instant(example="2026-01-01T00:00:00+03:00")
    valid_to: Instant(example="2026-02-01T00:00:00+03:00")
    note: Str(NOTE_MAX, example="January season pass")

    @field_validator("valid_to")
    @classmethod
    def _after_start(cls, valid_to: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("valid_from")
        if start is not None and valid_to <= start:
            raise fail("valid_to must be after valid_from")
        return valid_to


class Permit(Response):
    id: RowId
    plate_numbers: list[str]
    lot_ids: list[RowId]
    all_lots: bool
    valid_from: Timestamp
    valid_to: Timestamp
    note: str | None
    active: bool = Field(description="Valid now")
    created_at: Timestamp
    ended_at: Timestamp | None


class PermitList(Query):
    plate: QueryStr(
        PLATE_RAW_MAX, then=normalise_plate, example="KCB 123A", description="Covers this plate"
    )
    lot_id: QueryInt(1, MAX_INT, description="Valid at this lot")
    active: QueryBool(description="true: valid now; false: not (yet or any more)")
    page: Page
    per_page: PerPage
    cursor: Cursor


# ===========================================================================
# Docs
# ===========================================================================


class OpenApiDocument(Response):
    """The OpenAPI document itself (described loosely: it describes itself)."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    paths: dict[str, Any]


class Error(Response):
    """Every error answer."""

    error: str


# ===========================================================================
# Integrations: webhooks and the availability feed
# ===========================================================================

WEBHOOK_URL_MAX, WEBHOOK_DESCRIPTION_MAX = 2048, 255
# The event types a webhook can subscribe to (events.EVENT_TYPES, which emit() checks).
EVENT_TYPES = (
    "ticket.opened",
    "ticket.closed",
    "payment.recorded",
    "reservation.created",
    "reservation.cancelled",
    "reservation.no_show",
    "lot.full",
    "lot.available",
)
EventType = Literal[EVENT_TYPES]


def _event_types(value: Any) -> list[str]:
    if value is None:
        raise fail("events is required")
    if not isinstance(value, list) or not value:
        raise fail("events must be a non-empty list of event types")
    chosen: list[str] = []
    for item in value:
        if not isinstance(item, str) or item not in EVENT_TYPES:
            raise fail(f"events must be a list of: {', '.join(EVENT_TYPES)}")
        if item not in chosen:
            chosen.append(item)
    return chosen


class WebhookCreate(Body):
    model_config = example(
        {
            "url": "https://hooks.example.com/parking",
            "events": ["ticket.opened", "ticket.closed", "lot.full", "lot.available"],
            "description": "Signage controller",
        }
    )

    url: Str(
        WEBHOOK_URL_MAX,
        required="url is required",
        schema={"format": "uri"},
        example="https://hooks.example.com/parking",
        description="https; it must not resolve to a private, loopback or link-local "
        "address unless WEBHOOK_ALLOWED_HOSTS names its host",
    )
    events: _field(
        list[str],
        _event_types,
        {
            "type": "array",
            "items": {"type": "string", "enum": list(EVENT_TYPES)},
            "minItems": 1,
            "examples": [["ticket.opened", "lot.full"]],
        },
        "events is required",
    )
    description: Str(WEBHOOK_DESCRIPTION_MAX, example="Signage controller")


class Webhook(Response):
    id: RowId
    url: str
    events: list[EventType]
    description: str | None
    created_at: Timestamp


class WebhookCreated(Webhook):
    secret: str = Field(
        pattern="^whsec_[A-Za-z0-9+/=]+$",
        description="Signing secret (Standard Webhooks): shown once, store it now",
    )


class WebhookDeleted(Response):
    message: str
    webhook_id: RowId


class Delivery(Response):
    id: RowId
    event_id: RowId
    event_type: str
    message_id: str = Field(description="The webhook-id header: the same on every attempt")
    status: Literal["pending", "delivered", "failed"]
    attempts: Count
    response_status: int | None = Field(description="HTTP status of the last attempt")
    last_error: str | None
    next_attempt_at: Timestamp | None = Field(description="When it is retried (pending)")
    last_attempt_at: Timestamp | None
    delivered_at: Timestamp | None
    created_at: Timestamp


class AvailabilityFeedQuery(Query):
    lot_id: QueryInt(1, MAX_INT, description="Only this lot (an empty list if unknown or archived)")


class LotAvailability(Response):
    lot_id: RowId
    name: str
    total: Count
    available: Count = Field(description="Free spots a driver without a reservation can get")
    reservable_available: Count = Field(
        description="Free reservable spots that no reservation holds now"
    )
    status: Literal["FULL", "SPACES_AVAILABLE", "CLOSED"] = Field(
        description="For a driver without a reservation"
    )
    updated_at: Timestamp


# ===========================================================================
# Reservations
# ===========================================================================


class AvailabilityQuery(Query):
    start: QueryInstant(
        example="2027-01-15T10:00:00+03:00", description="Window start, with a UTC offset"
    )
    end: QueryInstant(example="2027-01-15T12:00:00+03:00", description="Window end (exclusive)")
    kind: QueryChoice(SPOT_KINDS, default="standard", description="Spot kind, default standard")

    @model_validator(mode="after")
    def _window(self):
        if self.start is None or self.end is None:
            raise ApiError(400, "start and end are required")
        if self.end <= self.start:
            raise ApiError(400, "end must be after start")
        return self


class Availability(Response):
    start: Timestamp
    end: Timestamp
    kind: SpotKind
    reservable_total: Count = Field(description="Reservable spots of the kind, in service")
    available: Count = Field(description="Of those, free for the whole window")
    amount: Amount = Field(description="The window's price under the lot's tariff")
    currency: CurrencyCode


class ReservationCreate(Body):
    model_config = example(
        {
            "lot_id": 1,
            "vehicle_id": 1,
            "start": "2027-01-15T10:00:00+03:00",
            "end": "2027-01-15T12:00:00+03:00",
            "kind": "standard",
            "expected_amount": 40000,
        }
    )
    _ids = requires(
        "lot_id",
        "vehicle_id",
        "start",
        "end",
        message="lot_id, vehicle_id, start and end are required",
    )

    lot_id: Id(required=True)
    vehicle_id: Id(required=True)
    start: Instant(example="2027-01-15T10:00:00+03:00")
    end: Instant(example="2027-01-15T12:00:00+03:00", description="Exclusive")
    kind: Choice(SPOT_KINDS, default="standard", description="Spot kind, default standard")
    expected_amount: Int(
        0,
        MAX_AMOUNT,
        example=40000,
        description="The price the driver saw: a different price is 409 Price changed",
    )

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and end <= start:
            raise fail("end must be after start")
        return end


ReservationStatus = Literal[RESERVATION_STATUSES]


class Reservation(Response):
    id: RowId
    lot_id: RowId
    lot: str
    vehicle_id: RowId
    plate_number: str
    user_id: RowId
    spot_id: RowId
    spot_number: str
    kind: SpotKind
    start: Timestamp
    end: Timestamp
    start_local: LocalTimestamp
    end_local: LocalTimestamp
    status: ReservationStatus = Field(
        description="A confirmed one not checked in by `no_show_at` shows as no_show"
    )
    amount: Amount = Field(description="Paid at booking; covers the whole window")
    currency: CurrencyCode
    cancel_free_until: Timestamp
    late_cancel_fee: Amount = Field(description="Kept from a cancellation after cancel_free_until")
    check_in_from: Timestamp
    no_show_at: Timestamp
    ticket_id: RowId | None
    refund: Amount | None
    created_at: Timestamp
    cancelled_at: Timestamp | None


class ReservationList(Query):
    all: QueryBool(default=False, description="Admins: everyone's reservations")
    status: QueryChoice(RESERVATION_STATUSES, description="Only this status")
    lot_id: QueryInt(1, MAX_INT, description="Only this lot")
    from_: QueryInstant(
        example="2027-01-01T00:00:00Z", description="Windows ending after this moment"
    ) = Field(alias="from")
    to: QueryInstant(example="2027-02-01T00:00:00Z", description="Windows starting before this")
    page: Page
    per_page: PerPage
    cursor: Cursor


class ReservationCancelled(Reservation):
    message: str


class ReservationCheckedIn(Response):
    message: str
    reservation: Reservation
    ticket_id: RowId
    spot_id: RowId
    spot_number: str
    lot: str
    lot_id: RowId
    check_in: Timestamp
    check_in_local: LocalTimestamp
    currency: CurrencyCode
    tariff: Tariff


class ReservationConflict(Response):
    """409 for a booking. For "Price changed": the price now (`amount`)."""

    error: str
    amount: Amount = Field(default=0, description="With Price changed: the current price")


class CheckInWindow(Response):
    """409 for a check-in. Outside its window: when it opens and closes."""

    error: str
    check_in_from: Timestamp | None = Field(default=None, description="Outside the window")
    check_in_until: Timestamp | None = Field(default=None, description="Outside the window")
