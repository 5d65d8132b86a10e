"""The `/api` blueprint: every endpoint, grouped by resource.

Views query the models directly. Each section starts with a header comment;
search for the URL (e.g. `"/parking-lots/<int:lot_id>/report"`) to find a view.

Concurrency: the rules that must hold under concurrent requests (one open
ticket per spot and per vehicle, one checkout per ticket) are guaranteed by
the partial unique indexes in models.py. Views write with conditional
UPDATE statements (`... WHERE status = 'available'`), so a row lock taken by
the first writer makes every other writer see the new state and back off;
an IntegrityError from the indexes is the last line and maps to the
documented 4xx.

Lock order: a transaction that changes spots (booking, auto-assignment,
checkout, adding spots, taking one out of service, archiving) takes its lot's
row lock first (`FOR NO KEY UPDATE`; on SQLite, the database's write lock),
then spot rows, then tickets. One order everywhere means no deadlock, and it
makes archiving agree with the rest: an archived lot never has a free spot.
The lot counters' triggers (migration 0003) write the same lot row, so writes
at one lot were already serialised on it; taking the lock first costs no
statement (it rides on the read each of them starts with).
"""

import csv
import io
import re
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache, wraps
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from flask_jwt_extended import (
    current_user,
    decode_token,
    get_jwt,
    jwt_required,
)
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from sqlalchemy import (
    BigInteger,
    Integer,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    null,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

import tokens
from billing import CURRENCIES, Tariff, fee_for
from checks import cached_schema_problem
from database import RETRY_AFTER_SECONDS, bounded
from models import (
    SPOT_KINDS,
    SPOT_STATUSES,
    ParkingLot,
    ParkingSpot,
    Ticket,
    User,
    UTCDateTime,
    Vehicle,
    db,
    utcnow,
)
from replica import replica_reads
from tokens import issue_tokens
from validation import (
    ApiError,
    get_choice,
    get_int,
    get_str,
    json_body,
    query_bool,
    query_choice,
    query_int,
    request_json,
    rollback_quietly,
)

api = Blueprint("api", __name__)

limiter = Limiter(
    key_func=get_remote_address,
    default_limits=[lambda: current_app.config["RATELIMIT_DEFAULT"]],
    headers_enabled=True,
)


@limiter.request_filter
def limits_switched_off() -> bool:
    """The limiter object is shared by every app in the process (tests build
    many); an app built with RATELIMIT_ENABLED=false is never limited."""
    return not current_app.config["RATELIMIT_ENABLED"]


EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
USERNAME_MAX, EMAIL_MAX, PASSWORD_MIN, PASSWORD_MAX = 64, 254, 8, 128
PLATE_MAX, VEHICLE_TYPE_MAX = 16, 32
LOT_NAME_MAX, LOCATION_MAX, SPOT_NUMBER_MAX, PREFIX_MAX = 120, 255, 32, 16
MAX_SPOTS_PER_REQUEST = 2000
MAX_RATE = 10_000_000  # 100,000.00 per hour in a two-decimal currency
MAX_QUOTE_MINUTES = 366 * 24 * 60
MAX_REPORT_DAYS = 366


def now() -> datetime:
    """The current UTC time; tests set config["CLOCK"] to control it."""
    return (current_app.config.get("CLOCK") or utcnow)()


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def admin_required(view):
    """After @jwt_required: the user row (not the token's claim) must be an admin."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_admin:
            raise ApiError(403, "Admin privileges required")
        return view(*args, **kwargs)

    return wrapper


# Characters Werkzeug's url_for leaves unescaped in query strings.
QUERY_SAFE = "!$'()*,/:;?@"


class PageQuery:
    """A list query built once: its page (LIMIT and OFFSET as bind parameters)
    and its count. The busy lists keep one per shape (functools.cache), because
    building a statement and its cache key costs more CPU than running it.

    `plain=True`: the statement selects columns only, and its rows skip the
    ORM's loading machinery (run on the session's connection, same transaction).
    `count_in_page=True`: the page also carries count(*) OVER (), so a full
    page needs no second statement; for short lists (lots), where counting
    every row before the LIMIT costs nothing.
    """

    def __init__(self, stmt, *order_by, plain: bool = False, count_in_page: bool = False):
        self.plain = plain
        self.count_in_page = count_in_page
        page = stmt.add_columns(func.count().over()) if count_in_page else stmt
        self.rows = (
            page.order_by(*order_by).limit(bindparam("page_limit")).offset(bindparam("page_offset"))
        )
        self.count = select(func.count()).select_from(stmt.order_by(None).subquery())


def paginate(query, *order_by, params: dict | None = None):
    """Run one page of `query` (a select, or a PageQuery run with `params`) and
    a count; return (rows, pagination headers).

    At most two SQL statements whatever the size of the table: a page that is
    not full is the last one, so it gives the total without a count.
    """
    if not isinstance(query, PageQuery):
        query = PageQuery(query, *order_by)
    params = params or {}
    page = query_int("page", default=1, minimum=1, maximum=1_000_000)
    per_page = query_int("per_page", default=100, minimum=1, maximum=1000)
    execute = run if query.plain else db.session.execute
    rows = execute(
        query.rows, {**params, "page_limit": per_page, "page_offset": (page - 1) * per_page}
    ).all()
    total = None
    if query.count_in_page and rows:
        total = rows[0][-1]
        rows = [row[:-1] for row in rows]
    elif len(rows) < per_page and (rows or page == 1):
        total = (page - 1) * per_page + len(rows)
    if total is None:
        total = execute(query.count, params).scalar()
    last = max(1, -(-total // per_page))
    args = request.args.to_dict()
    base = request.base_url  # what url_for(request.endpoint, _external=True) builds, cheaper

    def link(target: int, rel: str) -> str:
        query = urlencode({**args, "page": target, "per_page": per_page}, safe=QUERY_SAFE)
        return f'<{base}?{query}>; rel="{rel}"'

    links = [link(1, "first")]
    if page > 1:
        links.append(link(min(page - 1, last), "prev"))
    if page < last:
        links.append(link(page + 1, "next"))
    links.append(link(last, "last"))
    return rows, {"X-Total-Count": str(total), "Link": ", ".join(links)}


def run(statement, params: dict):
    """Execute a prebuilt Core statement in the session's transaction, without
    the ORM's per-statement machinery (plain rows, no identity map)."""
    return db.session.connection().execute(statement, params)


def commit_or(status: int, message: str) -> None:
    """Commit; a constraint violation means another request won: answer status."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ApiError(status, message) from None


# ===========================================================================
# Health: /test-db
# ===========================================================================


@api.route("/test-db", methods=["GET"])
@limiter.exempt
def test_db():
    """Render's health check: 200 only when the database answers within
    HEALTH_TIMEOUT_MS (connecting included) and its schema is at the code's
    head revision or newer (checks.cached_schema_problem); otherwise 503."""
    limit = current_app.config["HEALTH_TIMEOUT_MS"]
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    try:
        with bounded(limit, total_seconds=limit / 1000):
            db.session.execute(text("SELECT 1"))
            problem = cached_schema_problem(db.session.connection())
    except Exception as exc:  # any driver error means "not connected"
        rollback_quietly()
        current_app.logger.warning("Database check failed: %s", exc)
        raise ApiError(503, f"Database connection failed: {type(exc).__name__}", retry) from None
    if problem:
        raise ApiError(503, problem, retry)
    return {"message": "Database connection successful"}


# ===========================================================================
# Accounts: /register, /login, /token/refresh, /logout, /me, /me/password
# ===========================================================================

_dummy_hashes: dict[str, str] = {}


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def password_matches(user: User | None, password: str) -> bool:
    """Check a password; for an unknown user hash anyway, so timing reveals nothing."""
    if user is None:
        method = current_app.config["PASSWORD_HASH_METHOD"]
        if method not in _dummy_hashes:
            _dummy_hashes[method] = generate_password_hash("not-a-password", method=method)
        check_password_hash(_dummy_hashes[method], password)
        return False
    return check_password_hash(user.password_hash, password)


def user_to_dict(user: User) -> dict:
    return {"id": user.id, "username": user.username, "email": user.email, "role": user.role}


def normalise_email(value: str | None) -> str | None:
    return value.strip().lower() if value else value


def email_rate_key() -> str:
    """Rate-limit key for login/register: the account e-mail in the body."""
    data = request_json()
    email = data.get("email") if isinstance(data, dict) else None
    return "email:" + (email.strip().lower()[:EMAIL_MAX] if isinstance(email, str) else "")


def auth_rate_limits(view):
    """Per client IP and per account e-mail (RATELIMIT_AUTH, e.g. 10 per minute)."""
    auth_limit = lambda: current_app.config["RATELIMIT_AUTH"]  # noqa: E731
    view = limiter.limit(auth_limit, key_func=email_rate_key, scope="auth-email")(view)
    return limiter.limit(auth_limit, key_func=get_remote_address, scope="auth-ip")(view)


def account_rate_limit(view):
    """Per account (RATELIMIT_AUTH), below @jwt_required: a stolen access token
    must not become an oracle for guessing the current password."""
    auth_limit = lambda: current_app.config["RATELIMIT_AUTH"]  # noqa: E731
    account = lambda: "user:" + get_jwt()["sub"]  # noqa: E731
    return limiter.limit(auth_limit, key_func=account, scope="auth-account")(view)


def read_new_password(data: dict, field: str) -> str:
    password = data.get(field)
    if not isinstance(password, str):
        raise ApiError(400, f"{field} must be a string")
    if "\x00" in password:
        raise ApiError(400, f"{field} must not contain NUL characters")
    if len(password) < PASSWORD_MIN:
        raise ApiError(400, f"Password must be at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise ApiError(400, f"Password must be at most {PASSWORD_MAX} characters")
    return password


@api.route("/register", methods=["POST"])
@auth_rate_limits
def register():
    data = json_body()
    if not all(data.get(field) for field in ("username", "email", "password")):
        raise ApiError(400, "All fields are required")
    username = get_str(
        data, "username", max_length=USERNAME_MAX, required=True, message="All fields are required"
    )
    email = normalise_email(
        get_str(
            data, "email", max_length=EMAIL_MAX, required=True, message="All fields are required"
        )
    )
    if not EMAIL_RE.match(email):
        raise ApiError(400, "Invalid email format")
    password = read_new_password(data, "password")

    def taken() -> None:
        if db.session.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
            raise ApiError(400, "Username already taken")
        if db.session.scalar(select(User.id).where(User.email == email)):
            raise ApiError(400, "Email already taken")

    taken()
    # Only whitelisted fields: a "role" or "is_admin" in the body is ignored.
    user = User(username=username, email=email, password_hash=hash_password(password))
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        # A concurrent registration took the name or e-mail between check and insert.
        db.session.rollback()
        taken()
        raise ApiError(400, "Username or email already taken") from None
    return {"user": user_to_dict(user), **issue_tokens(user)}, 201


@api.route("/login", methods=["POST"])
@auth_rate_limits
def login():
    data = json_body()
    email = normalise_email(
        get_str(
            data,
            "email",
            max_length=EMAIL_MAX,
            required=True,
            message="Email and password are required",
        )
    )
    password = data.get("password")
    if not isinstance(password, str) or not password:
        raise ApiError(400, "Email and password are required")
    user = db.session.scalar(select(User).where(User.email == email))
    if not password_matches(user, password[: PASSWORD_MAX + 1]):
        raise ApiError(401, "Invalid email or password")
    return {"user": user_to_dict(user), **issue_tokens(user)}


@api.route("/token/refresh", methods=["POST"])
@jwt_required(refresh=True)
def refresh_token():
    """Rotate: the presented refresh token is revoked and a new pair issued;
    a retry within the leeway gets the same pair, a later reuse revokes every
    token of the user (tokens.py)."""
    return tokens.rotate(get_jwt(), current_user)


@api.route("/logout", methods=["POST"])
@jwt_required()
def logout():
    data = json_body()
    refresh_payload = None
    refresh = data.get("refresh_token")
    if refresh is not None:
        if not isinstance(refresh, str) or len(refresh) > 4096:
            raise ApiError(400, "refresh_token must be a refresh token string")
        try:
            refresh_payload = decode_token(refresh, allow_expired=True)
        except Exception:  # any decoding failure: not one of our refresh tokens
            raise ApiError(400, "refresh_token is not a valid refresh token") from None
        if refresh_payload.get("type") != "refresh" or refresh_payload["sub"] != get_jwt()["sub"]:
            raise ApiError(400, "refresh_token is not a valid refresh token")
    if not tokens.logout(get_jwt(), refresh_payload):
        raise ApiError(401, "Token has been revoked")  # a concurrent logout came first
    tokens.prune_revoked_tokens()
    return {"message": "Logged out"}


@api.route("/me", methods=["GET"])
@jwt_required()
def me():
    return user_to_dict(current_user)


@api.route("/me/password", methods=["PATCH"])
@jwt_required()
@account_rate_limit
def change_password():
    """Change the password; every token issued before stops working."""
    data = json_body()
    current = data.get("current_password")
    if not isinstance(current, str) or not current:
        raise ApiError(400, "current_password is required")
    new = read_new_password(data, "new_password")
    user = db.session.get(User, current_user.id)
    if not check_password_hash(user.password_hash, current[: PASSWORD_MAX + 1]):
        raise ApiError(400, "Current password is incorrect")
    user.password_hash = hash_password(new)
    user.token_version += 1
    db.session.commit()
    return {"message": "Password changed", **issue_tokens(user)}


# ===========================================================================
# Vehicles: /vehicles, /vehicles/<id>
# ===========================================================================


def vehicle_to_dict(vehicle: Vehicle) -> dict:
    return {
        "id": vehicle.id,
        "plate_number": vehicle.plate_number,
        "type": vehicle.type,
        "user_id": vehicle.user_id,
    }


def normalise_plate(value: str) -> str:
    """Upper case, inner whitespace collapsed: "kcb 123a" and "KCB  123A" are one plate."""
    plate = " ".join(value.split()).upper()
    if not all(ch.isalnum() or ch in " -" for ch in plate):
        raise ApiError(400, "Plate number may contain only letters, digits, spaces and hyphens")
    if len(plate) > PLATE_MAX:
        raise ApiError(400, f"plate_number must be at most {PLATE_MAX} characters")
    return plate


def own_vehicle(vehicle_id: int, message: str = "Vehicle not found") -> Vehicle:
    vehicle = db.session.get(Vehicle, vehicle_id)
    if vehicle is None or vehicle.deleted_at or vehicle.user_id != current_user.id:
        raise ApiError(404, message)
    return vehicle


@api.route("/vehicles", methods=["GET"])
@jwt_required()
def list_vehicles():
    stmt = select(Vehicle).where(Vehicle.user_id == current_user.id, Vehicle.deleted_at.is_(None))
    rows, headers = paginate(stmt, Vehicle.id)
    return jsonify([vehicle_to_dict(vehicle) for (vehicle,) in rows]), 200, headers


@api.route("/vehicles", methods=["POST"])
@jwt_required()
def create_vehicle():
    data = json_body()
    plate = get_str(
        data, "plate_number", max_length=64, required=True, message="Plate number is required"
    )
    vehicle = Vehicle(
        plate_number=normalise_plate(plate),
        type=get_str(data, "type", max_length=VEHICLE_TYPE_MAX),
        user_id=current_user.id,
    )
    db.session.add(vehicle)
    commit_or(409, "Vehicle already registered")
    return vehicle_to_dict(vehicle), 201


@api.route("/vehicles/<int:vehicle_id>", methods=["GET"])
@jwt_required()
def get_vehicle(vehicle_id):
    return vehicle_to_dict(own_vehicle(vehicle_id))


@api.route("/vehicles/<int:vehicle_id>", methods=["PATCH"])
@jwt_required()
def update_vehicle(vehicle_id):
    vehicle = own_vehicle(vehicle_id)
    data = json_body()
    if "plate_number" in data:
        plate = get_str(
            data, "plate_number", max_length=64, required=True, message="Plate number is required"
        )
        vehicle.plate_number = normalise_plate(plate)
    if "type" in data:
        vehicle.type = get_str(data, "type", max_length=VEHICLE_TYPE_MAX)
    commit_or(409, "Vehicle already registered")
    return vehicle_to_dict(vehicle)


@api.route("/vehicles/<int:vehicle_id>", methods=["DELETE"])
@jwt_required()
def delete_vehicle(vehicle_id):
    """Hide the vehicle from its owner; its tickets and receipts stay."""
    own_vehicle(vehicle_id)
    parked = exists().where(Ticket.vehicle_id == vehicle_id, Ticket.check_out.is_(None))
    result = db.session.execute(
        update(Vehicle)
        .where(Vehicle.id == vehicle_id, Vehicle.deleted_at.is_(None), ~parked)
        .values(deleted_at=now())
    )
    db.session.commit()
    if result.rowcount == 0:
        raise ApiError(409, "Vehicle is parked; check out first")
    return {"message": "Vehicle deleted", "vehicle_id": vehicle_id}


# ===========================================================================
# Parking lots: /parking-lots, /parking-lots/<id>, spots, quote, report
# ===========================================================================


TARIFF_COLUMNS = ("hourly_rate", "billing_increment_minutes", "grace_minutes", "daily_max")


def tariff_to_dict(row) -> dict:
    return {
        "hourly_rate": row.hourly_rate,
        "billing_increment_minutes": row.billing_increment_minutes,
        "grace_minutes": row.grace_minutes,
        "daily_max": row.daily_max,
    }


def lot_dict(
    id_, name, location, total, available, zone, currency, rate, increment, grace, daily_max
) -> dict:
    """A lot's JSON from its values, in lot_list()'s column order (the list
    unpacks a hundred plain rows into it)."""
    return {
        "id": id_,
        "name": name,
        "location": location,
        "spots": total,
        "available_spots": available,
        "timezone": zone,
        "currency": currency,
        "tariff": {
            "hourly_rate": rate,
            "billing_increment_minutes": increment,
            "grace_minutes": grace,
            "daily_max": daily_max,
        },
    }


def lot_to_dict(lot: ParkingLot, total: int, available: int) -> dict:
    return lot_dict(
        lot.id,
        lot.name,
        lot.location,
        total,
        available,
        lot.timezone,
        lot.currency,
        *(getattr(lot, name) for name in TARIFF_COLUMNS),
    )


def active_lot(lot_id: int, lock: bool = False) -> ParkingLot:
    """The lot, unless unknown or archived (404). `lock=True` first takes the
    lot's row lock for the rest of the transaction (see "Lock order" above)."""
    if lock and db.session.get_bind().dialect.name == "sqlite":
        # SQLite locks the whole database for the first write; take it now.
        db.session.execute(
            update(ParkingLot)
            .where(ParkingLot.id == lot_id)
            .values(archived_at=ParkingLot.archived_at)
            .execution_options(synchronize_session=False)
        )
    lot = db.session.get(
        ParkingLot,
        lot_id,
        with_for_update={"key_share": True} if lock else None,
        populate_existing=lock,
    )
    if lot is None or lot.archived_at is not None:
        raise ApiError(404, "Parking lot not found")
    return lot


def read_lot_fields(data: dict, lot: ParkingLot) -> None:
    """Copy the editable, validated fields present in `data` onto `lot`."""
    if "name" in data:
        lot.name = get_str(
            data,
            "name",
            max_length=LOT_NAME_MAX,
            required=True,
            message="Name and location are required",
        )
    if "location" in data:
        lot.location = get_str(
            data,
            "location",
            max_length=LOCATION_MAX,
            required=True,
            message="Name and location are required",
        )
    if "timezone" in data:
        zone = get_str(data, "timezone", max_length=64, required=True)
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America" is a folder
            raise ApiError(
                400, "timezone must be an IANA time zone name, e.g. Africa/Nairobi"
            ) from None
        lot.timezone = zone
    if "currency" in data:
        currency = get_str(data, "currency", max_length=3, required=True).upper()
        if currency not in CURRENCIES:
            raise ApiError(400, "currency must be an ISO 4217 code, e.g. KES")
        lot.currency = currency
    for field, low, high in (
        ("hourly_rate", 0, MAX_RATE),
        ("billing_increment_minutes", 1, 1440),
        ("grace_minutes", 0, 1440),
    ):
        if field in data:
            setattr(lot, field, get_int(data, field, required=True, minimum=low, maximum=high))
    if "daily_max" in data:
        lot.daily_max = get_int(data, "daily_max", minimum=0, maximum=MAX_RATE * 24)


def spot_rows(lot_id: int, numbers: list[str], kind: str) -> list[dict]:
    if len(set(numbers)) != len(numbers):
        raise ApiError(409, "Spot number already exists in this lot")
    return [
        {"lot_id": lot_id, "spot_number": n, "kind": kind, "status": "available"} for n in numbers
    ]


def read_spot_batch(
    data: dict, *, count_field: str, prefix_field: str, maximum: int, minimum: int
) -> tuple[list[str], str]:
    count = get_int(data, count_field, default=0, minimum=minimum, maximum=maximum)
    prefix = get_str(data, prefix_field, max_length=PREFIX_MAX, strip=True) or ""
    kind = get_choice(data, "kind", SPOT_KINDS, default="standard")
    return [f"{prefix}{n}" for n in range(1, count + 1)], kind


def insert_spots(rows: list[dict]) -> None:
    """Insert all the rows or none; the INSERT itself (not the commit) hits the constraint."""
    if rows:
        try:
            db.session.execute(insert(ParkingSpot), rows)
        except IntegrityError:
            db.session.rollback()
            raise ApiError(409, "Spot number already exists in this lot") from None


def lot_counts(lot_id: int) -> tuple[int, int]:
    total, available = db.session.execute(
        select(
            func.count(ParkingSpot.id), func.count(case((ParkingSpot.status == "available", 1)))
        ).where(ParkingSpot.lot_id == lot_id)
    ).one()
    return total, available


@cache
def lot_list() -> PageQuery:
    # Plain rows with the counters the database keeps (migration 0003): no
    # spot is counted and no ORM object built per request.
    stmt = select(
        ParkingLot.id,
        ParkingLot.name,
        ParkingLot.location,
        ParkingLot.spots_total,
        ParkingLot.spots_available,
        ParkingLot.timezone,
        ParkingLot.currency,
        ParkingLot.hourly_rate,
        ParkingLot.billing_increment_minutes,
        ParkingLot.grace_minutes,
        ParkingLot.daily_max,
    ).where(ParkingLot.archived_at.is_(None))
    return PageQuery(stmt, ParkingLot.id, plain=True, count_in_page=True)


@api.route("/parking-lots", methods=["GET"])
@jwt_required()
@replica_reads
def list_lots():
    rows, headers = paginate(lot_list())
    lots = [lot_dict(*row) for row in rows]
    return jsonify(lots), 200, headers


@api.route("/parking-lots", methods=["POST"])
@jwt_required()
@admin_required
def create_lot():
    data = json_body()
    if not data.get("name") or not data.get("location"):
        raise ApiError(400, "Name and location are required")
    lot = ParkingLot(timezone="UTC", currency=current_app.config["DEFAULT_CURRENCY"])
    read_lot_fields(data, lot)
    numbers, kind = read_spot_batch(
        data,
        count_field="spot_count",
        prefix_field="spot_prefix",
        minimum=0,
        maximum=MAX_SPOTS_PER_REQUEST,
    )
    db.session.add(lot)
    db.session.flush()
    insert_spots(spot_rows(lot.id, numbers, kind))
    db.session.commit()
    return {
        "message": "Parking lot created",
        "lot_id": lot.id,
        "lot": lot_to_dict(lot, len(numbers), len(numbers)),
    }, 201


@api.route("/parking-lots/<int:lot_id>", methods=["GET"])
@jwt_required()
def get_lot(lot_id):
    lot = active_lot(lot_id)
    rows = db.session.execute(
        select(ParkingSpot.kind, ParkingSpot.status, func.count())
        .where(ParkingSpot.lot_id == lot_id)
        .group_by(ParkingSpot.kind, ParkingSpot.status)
    ).all()
    counts = dict.fromkeys(SPOT_STATUSES, 0)
    kinds: dict[str, dict] = {}
    for kind, status, n in rows:
        counts[status] += n
        per_kind = kinds.setdefault(kind, {"total": 0, **dict.fromkeys(SPOT_STATUSES, 0)})
        per_kind["total"] += n
        per_kind[status] += n
    total = sum(counts.values())
    return {
        **lot_to_dict(lot, total, counts["available"]),
        "counts": {"total": total, **counts},
        "kinds": kinds,
    }


@api.route("/parking-lots/<int:lot_id>", methods=["PATCH"])
@jwt_required()
@admin_required
def update_lot(lot_id):
    lot = active_lot(lot_id)
    data = json_body()
    old_currency = lot.currency
    read_lot_fields(data, lot)
    if lot.currency != old_currency and db.session.scalar(
        select(exists().where(Ticket.lot_id == lot_id))
    ):
        raise ApiError(409, "Currency cannot change once the lot has tickets")
    db.session.commit()
    return lot_to_dict(lot, *lot_counts(lot_id))


@api.route("/parking-lots/<int:lot_id>", methods=["DELETE"])
@jwt_required()
@admin_required
def archive_lot(lot_id):
    """Archive: the lot leaves lists and bookings, its ticket history stays.

    Under the lot's row lock (every booking, checkout and spot change takes it
    first), free spots go out of service and the lot must have no open ticket:
    a booking or checkout either committed before, and is seen here, or waits
    and then finds the lot archived.
    """
    lot = active_lot(lot_id, lock=True)
    db.session.execute(
        update(ParkingSpot)
        .where(ParkingSpot.lot_id == lot_id, ParkingSpot.status == "available")
        .values(status="out_of_service")
    )
    occupied = db.session.scalar(
        select(exists().where(Ticket.lot_id == lot_id, Ticket.check_out.is_(None)))
    )
    if occupied:
        db.session.rollback()
        raise ApiError(409, "Parking lot has open tickets; check them out first")
    lot.archived_at = now()
    db.session.commit()
    return {"message": "Parking lot archived", "lot_id": lot_id}


@api.route("/parking-lots/<int:lot_id>/spots", methods=["POST"])
@jwt_required()
@admin_required
def create_spots(lot_id):
    active_lot(lot_id, lock=True)  # an archive in progress finishes first
    data = json_body()
    if data.get("spot_number") is not None:
        number = get_str(data, "spot_number", max_length=SPOT_NUMBER_MAX, required=True)
        numbers = [number]
        kind = get_choice(data, "kind", SPOT_KINDS, default="standard")
    elif data.get("count") is not None:
        numbers, kind = read_spot_batch(
            data,
            count_field="count",
            prefix_field="prefix",
            minimum=1,
            maximum=MAX_SPOTS_PER_REQUEST,
        )
    else:
        raise ApiError(400, "Give spot_number, or count (and prefix) for a batch")
    # A batch's numbers fit the column: a 16-character prefix plus at most 4 digits.
    insert_spots(spot_rows(lot_id, numbers, kind))
    commit_or(409, "Spot number already exists in this lot")
    spots = db.session.execute(
        select(ParkingSpot, ParkingLot.name)
        .join(ParkingLot)
        .where(ParkingSpot.lot_id == lot_id, ParkingSpot.spot_number.in_(numbers))
        .order_by(ParkingSpot.id)
    ).all()
    return jsonify([spot_to_dict(spot, name) for spot, name in spots]), 201


@api.route("/parking-lots/<int:lot_id>/quote", methods=["GET"])
@jwt_required()
def quote(lot_id):
    lot = active_lot(lot_id)
    minutes = query_int("minutes", minimum=0, maximum=MAX_QUOTE_MINUTES)
    if minutes is None:
        raise ApiError(400, "minutes is required")
    amount, breakdown = fee_for(timedelta(minutes=minutes), Tariff.of(lot))
    return {
        "minutes": minutes,
        "amount": amount,
        "currency": lot.currency,
        "tariff": tariff_to_dict(lot),
        "breakdown": breakdown,
    }


def query_date(name: str) -> date:
    raw = request.args.get(name)
    if not raw:
        raise ApiError(400, f"{name} is required (YYYY-MM-DD)")
    try:
        # fromisoformat alone would also take "20260115" and week dates like "2026-W03-4".
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a date in the form YYYY-MM-DD") from None


REPORT_COLUMNS = ("date", "tickets_started", "tickets_closed", "revenue", "average_stay_minutes")


@lru_cache(maxsize=64)
def report_statement(n_days: int):
    """The report's one aggregate query for n_days, built once and reused.

    bound0 .. bound{n_days} are the local midnights of the range in UTC
    (bound i starts day i). A ticket counts as started on the day of its
    check_in and as closed (with its amount and stay) on the day of its
    check_out: each half is one index range scan of the lot's tickets
    ((lot_id, check_in) and the covering (lot_id, check_out, amount_due,
    duration_minutes)) grouped by day number, the CASE that finds the day
    being cheaper than joining a table of days (measured: 4.4 -> 1.8 ms of
    PostgreSQL per 30-day report). Building this per request cost more than
    running it.
    """

    def bound(i: int):
        return bindparam(f"bound{i}", type_=UTCDateTime)

    def day_of(column):
        return case(*((column < bound(i + 1), i) for i in range(n_days))).label("day")

    of_lot = Ticket.lot_id == bindparam("lot_id", type_=Integer)
    started_day, closed_day = day_of(Ticket.check_in), day_of(Ticket.check_out)
    started = (
        select(
            literal(False).label("closed"),
            started_day,
            func.count().label("tickets"),
            null().label("revenue"),
            null().label("average_stay"),
        )
        .where(of_lot, Ticket.check_in >= bound(0), Ticket.check_in < bound(n_days))
        .group_by(started_day)
    )
    closed = (
        select(
            literal(True),
            closed_day,
            func.count(),
            func.sum(Ticket.amount_due),
            func.avg(Ticket.duration_minutes),
        )
        .where(of_lot, Ticket.check_out >= bound(0), Ticket.check_out < bound(n_days))
        .group_by(closed_day)
    )
    return union_all(started, closed)


# The lot (archived ones too: their history stays reportable) and its occupancy now.
REPORT_LOT = select(
    ParkingLot.name,
    ParkingLot.timezone,
    ParkingLot.currency,
    ParkingLot.spots_total,
    ParkingLot.spots_available,
    select(func.count())
    .where(ParkingSpot.lot_id == ParkingLot.id, ParkingSpot.status == "occupied")
    .scalar_subquery()
    .label("spots_occupied"),
).where(ParkingLot.id == bindparam("lot_id"))


@api.route("/parking-lots/<int:lot_id>/report", methods=["GET"])
@jwt_required()
@admin_required
@replica_reads
def lot_report(lot_id):
    """Per local day of the lot: tickets started and closed, revenue, average stay.

    Day boundaries are computed in the lot's time zone (so DST days have 23 or
    25 hours) and sent to the database as a small table; the aggregates run in
    SQL over the (lot_id, check_in) and (lot_id, check_out) indexes.
    """
    lot = run(REPORT_LOT, {"lot_id": lot_id}).first()
    if lot is None:
        raise ApiError(404, "Parking lot not found")
    start, end = query_date("from"), query_date("to")
    if end < start:
        raise ApiError(400, "to must not be before from")
    if (end - start).days + 1 > MAX_REPORT_DAYS:
        raise ApiError(400, f"A report covers at most {MAX_REPORT_DAYS} days")
    fmt = query_choice("format", ("json", "csv"), default="json")
    zone = ZoneInfo(lot.timezone)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]

    # Bound i is local midnight starting day i, in UTC; bound n ends the last day.
    bounds = [
        datetime.combine(start + timedelta(days=i), time(0), zone).astimezone(UTC)
        for i in range(len(days) + 1)
    ]
    params = {"lot_id": lot_id}
    params.update((f"bound{i}", value) for i, value in enumerate(bounds))
    rows = [
        {
            "date": day.isoformat(),
            "tickets_started": 0,
            "tickets_closed": 0,
            "revenue": 0,
            "average_stay_minutes": None,
        }
        for day in days
    ]
    for closed, day, tickets, revenue, average in run(report_statement(len(days)), params):
        row = rows[day]
        if not closed:
            row["tickets_started"] = tickets
        else:
            row["tickets_closed"] = tickets
            row["revenue"] = int(revenue or 0)
            row["average_stay_minutes"] = round(float(average), 1)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        filename = f"lot-{lot_id}-{start}-{end}.csv"
        return Response(
            out.getvalue(),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return {
        "lot_id": lot_id,
        "lot": lot.name,
        "timezone": lot.timezone,
        "currency": lot.currency,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "occupancy": {
            "total": lot.spots_total,
            "occupied": lot.spots_occupied,
            "available": lot.spots_available,
        },
        "days": rows,
        "totals": {
            "tickets_started": sum(r["tickets_started"] for r in rows),
            "tickets_closed": sum(r["tickets_closed"] for r in rows),
            "revenue": sum(r["revenue"] for r in rows),
        },
    }


# ===========================================================================
# Spots: /spots, /spots/<id>
# ===========================================================================


def spot_dict(id_, number, status, kind, lot_id, lot_name) -> dict:
    """A spot's JSON from its values, in spot_search()'s column order."""
    return {
        "id": id_,
        "spot_number": number,
        "status": status,
        "lot": lot_name,
        "lot_id": lot_id,
        "kind": kind,
    }


def spot_to_dict(spot: ParkingSpot, lot_name: str) -> dict:
    return spot_dict(spot.id, spot.spot_number, spot.status, spot.kind, spot.lot_id, lot_name)


def spots_query():
    return (
        select(ParkingSpot, ParkingLot.name)
        .join(ParkingLot, ParkingSpot.lot_id == ParkingLot.id)
        .where(ParkingLot.archived_at.is_(None))
    )


@cache
def spot_search(by_lot: bool, by_status: bool, by_kind: bool) -> PageQuery:
    """The public search, one statement per combination of filters."""
    # Plain rows, not ORM objects: this is the busiest public read.
    stmt = (
        select(
            ParkingSpot.id,
            ParkingSpot.spot_number,
            ParkingSpot.status,
            ParkingSpot.kind,
            ParkingSpot.lot_id,
            ParkingLot.name,
        )
        .join(ParkingLot, ParkingSpot.lot_id == ParkingLot.id)
        .where(ParkingLot.archived_at.is_(None))
    )
    if by_lot:
        stmt = stmt.where(ParkingSpot.lot_id == bindparam("lot_id"))
    if by_status:
        stmt = stmt.where(ParkingSpot.status == bindparam("status"))
    if by_kind:
        stmt = stmt.where(ParkingSpot.kind == bindparam("kind"))
    return PageQuery(stmt, ParkingSpot.id, plain=True)


@api.route("/spots", methods=["GET"])
@replica_reads
def list_spots():
    params = {
        "lot_id": query_int("lot_id", minimum=1),
        "status": query_choice("status", SPOT_STATUSES),
        "kind": query_choice("kind", SPOT_KINDS),
    }
    params = {name: value for name, value in params.items() if value is not None}
    query = spot_search("lot_id" in params, "status" in params, "kind" in params)
    rows, headers = paginate(query, params=params)
    spots = [spot_dict(*row) for row in rows]
    return jsonify(spots), 200, headers


@api.route("/spots/<int:spot_id>", methods=["GET"])
def get_spot(spot_id):
    row = db.session.execute(spots_query().where(ParkingSpot.id == spot_id)).first()
    if row is None:
        raise ApiError(404, "Spot not found")
    return spot_to_dict(*row)


@api.route("/spots/<int:spot_id>", methods=["PATCH"])
@jwt_required()
@admin_required
def update_spot(spot_id):
    row = db.session.execute(spots_query().where(ParkingSpot.id == spot_id)).first()
    if row is None:
        raise ApiError(404, "Spot not found")
    spot, lot_name = row
    data = json_body()
    if "spot_number" in data:
        spot.spot_number = get_str(data, "spot_number", max_length=SPOT_NUMBER_MAX, required=True)
    if "kind" in data:
        spot.kind = get_choice(data, "kind", SPOT_KINDS, default=spot.kind)
    status = get_choice(data, "status", ("available", "out_of_service"))
    commit_or(409, "Spot number already exists in this lot")
    if status is not None and status != spot.status:
        active_lot(spot.lot_id, lock=True)
        # Conditional on the current state: an occupied spot is never touched.
        source = "available" if status == "out_of_service" else "out_of_service"
        result = db.session.execute(
            update(ParkingSpot)
            .where(ParkingSpot.id == spot_id, ParkingSpot.status == source)
            .values(status=status)
        )
        db.session.commit()
        if result.rowcount == 0:
            raise ApiError(409, "Spot is occupied")
        db.session.refresh(spot)
    return spot_to_dict(spot, lot_name)


# ===========================================================================
# Tickets: /tickets, /tickets/<id>, /checkout/<id>
# ===========================================================================


def ticket_to_dict(ticket: Ticket, spot_number: str, lot_name: str) -> dict:
    """A ticket; an open one shows what is owed so far."""
    end = ticket.check_out or now()
    amount = ticket.amount_due
    if ticket.check_out is None:
        amount, _ = fee_for(end - ticket.check_in, Tariff.of(ticket))
    duration = ticket.duration_minutes
    if duration is None:
        duration = int((end - ticket.check_in).total_seconds() // 60)
    return {
        "id": ticket.id,
        "vehicle_id": ticket.vehicle_id,
        "spot_id": ticket.spot_id,
        "check_in": iso(ticket.check_in),
        "check_out": iso(ticket.check_out),
        "status": "open" if ticket.check_out is None else "closed",
        "user_id": ticket.user_id,
        "lot_id": ticket.lot_id,
        "lot": lot_name,
        "spot_number": spot_number,
        "duration_minutes": duration,
        "amount_due": amount,
        "currency": ticket.currency,
        "tariff": tariff_to_dict(ticket),
    }


def tickets_query():
    return (
        select(Ticket, ParkingSpot.spot_number, ParkingLot.name)
        .join(ParkingSpot, Ticket.spot_id == ParkingSpot.id)
        .join(ParkingLot, Ticket.lot_id == ParkingLot.id)
    )


# Booking and checkout run these statements, built once with bind parameters
# (building them per request cost as much CPU as the writes themselves).
# Bind names differ from the column names, which UPDATE reserves for SET.
DRIVERS_VEHICLE = exists().where(
    Vehicle.id == bindparam("vehicle"),
    Vehicle.user_id == bindparam("owner"),
    Vehicle.deleted_at.is_(None),
)
OWNS_VEHICLE = select(DRIVERS_VEHICLE)
# The chosen spot, its lot's tariff and whether the vehicle is the driver's, in one read.
BOOKABLE_SPOT = (
    select(
        ParkingSpot.spot_number,
        ParkingSpot.status,
        ParkingLot.id.label("lot_id"),
        ParkingLot.name.label("lot_name"),
        ParkingLot.currency,
        *(getattr(ParkingLot, name) for name in TARIFF_COLUMNS),
        DRIVERS_VEHICLE.label("drivers_vehicle"),
    )
    .join(ParkingLot, ParkingSpot.lot_id == ParkingLot.id)
    .where(ParkingSpot.id == bindparam("spot"), ParkingLot.archived_at.is_(None))
    .with_for_update(of=ParkingLot, key_share=True)  # lot first: see "Lock order"
)
OCCUPY_SPOT = (
    update(ParkingSpot)
    .where(ParkingSpot.id == bindparam("spot"), ParkingSpot.status == "available")
    .values(status="occupied")
    .execution_options(synchronize_session=False)
)
INSERT_TICKET = insert(Ticket).returning(Ticket.id)
VEHICLE_PARKED = select(
    exists().where(Ticket.vehicle_id == bindparam("vehicle"), Ticket.check_out.is_(None))
)


def open_ticket(vehicle_id: int, spot_id: int, lot_id: int, tariff_source) -> dict:
    """Insert and commit the ticket for a spot this transaction just marked
    occupied; `tariff_source` (a lot or its row) gives currency and tariff.
    The partial unique indexes refuse a second open ticket of the spot or the
    vehicle; the answer then says which."""
    ticket = {
        "vehicle_id": vehicle_id,
        "spot_id": spot_id,
        "user_id": current_user.id,
        "lot_id": lot_id,
        "check_in": now(),
        "currency": tariff_source.currency,
        **tariff_to_dict(tariff_source),
    }
    try:
        ticket["id"] = run(INSERT_TICKET, ticket).scalar_one()
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if run(VEHICLE_PARKED, {"vehicle": vehicle_id}).scalar():
            raise ApiError(409, "Vehicle already parked") from None
        raise ApiError(400, "Spot unavailable") from None
    return ticket


def book_spot(vehicle_id: int, spot_id: int, spot) -> dict:
    """Book a chosen spot: flip it to occupied only if it is still available.

    A parked vehicle is not checked up front: its second ticket fails on the
    unique index, which rolls the spot back and answers 409."""
    if run(OCCUPY_SPOT, {"spot": spot_id}).rowcount == 0:
        db.session.rollback()
        raise ApiError(400, "Spot unavailable")
    return open_ticket(vehicle_id, spot_id, spot.lot_id, spot)


def assign_spot(vehicle_id: int, lot_id: int, kind: str | None):
    """Give the vehicle any free spot of the lot (and kind), atomically.

    On PostgreSQL the candidate is picked with FOR UPDATE SKIP LOCKED, so
    concurrent arrivals each lock a different free spot instead of queueing on
    the same one; SQLite serialises writers, where the clause is dropped.
    The outer status check plus the partial unique index make a spot given
    twice impossible even if the pick were stale.
    """
    lot = active_lot(lot_id, lock=True)
    candidate = select(ParkingSpot.id).where(
        ParkingSpot.lot_id == lot_id, ParkingSpot.status == "available"
    )
    if kind is not None:
        candidate = candidate.where(ParkingSpot.kind == kind)
    candidate = candidate.order_by(ParkingSpot.id).limit(1).with_for_update(skip_locked=True)
    for _attempt in range(5):
        picked = db.session.execute(
            update(ParkingSpot)
            .where(ParkingSpot.id == candidate.scalar_subquery(), ParkingSpot.status == "available")
            .values(status="occupied")
            .returning(ParkingSpot.id, ParkingSpot.spot_number)
            .execution_options(synchronize_session=False)
        ).first()
        if picked is None:
            db.session.rollback()
            raise ApiError(409, "No spots available")
        try:
            ticket = open_ticket(vehicle_id, picked.id, lot.id, lot)
        except ApiError as error:
            if error.status == 409:
                raise
            continue  # the spot's index said no: pick another
        return ticket, picked.spot_number, lot.name
    raise ApiError(409, "No spots available")


@api.route("/tickets", methods=["POST"])
@jwt_required()
def create_ticket():
    data = json_body()
    # As in the seed, a missing (or zero) id is "required"; wrong types are refused below.
    if not data.get("vehicle_id") or not (data.get("parking_spot_id") or data.get("lot_id")):
        raise ApiError(400, "Vehicle ID and parking spot ID are required")
    vehicle_id = get_int(data, "vehicle_id", minimum=1, required=True)
    spot_id = get_int(data, "parking_spot_id", minimum=1)
    lot_id = get_int(data, "lot_id", minimum=1)
    kind = get_choice(data, "kind", SPOT_KINDS)
    params = {"vehicle": vehicle_id, "owner": current_user.id}
    if spot_id is not None:
        # The seed checks the spot before the vehicle; keep its order of errors.
        spot = run(BOOKABLE_SPOT, {**params, "spot": spot_id}).first()
        if spot is None or spot.status != "available":
            raise ApiError(400, "Spot unavailable")
        if not spot.drivers_vehicle:
            raise ApiError(400, "Vehicle not found")
        ticket = book_spot(vehicle_id, spot_id, spot)
        spot_number, lot_name = spot.spot_number, spot.lot_name
    else:
        if not run(OWNS_VEHICLE, params).scalar():
            raise ApiError(400, "Vehicle not found")
        # Checked first here, so a parked driver at a full lot hears why.
        if run(VEHICLE_PARKED, {"vehicle": vehicle_id}).scalar():
            raise ApiError(409, "Vehicle already parked")
        ticket, spot_number, lot_name = assign_spot(vehicle_id, lot_id, kind)
    return {
        "message": "Spot booked",
        "ticket_id": ticket["id"],
        "spot_id": ticket["spot_id"],
        "spot_number": spot_number,
        "lot": lot_name,
        "lot_id": ticket["lot_id"],
        "check_in": iso(ticket["check_in"]),
        "currency": ticket["currency"],
        "tariff": {name: ticket[name] for name in TARIFF_COLUMNS},
    }, 201


@api.route("/tickets", methods=["GET"])
@jwt_required()
def list_tickets():
    stmt = tickets_query()
    if not (query_bool("all", False) and current_user.is_admin):
        stmt = stmt.where(Ticket.user_id == current_user.id)
    active = query_bool("active")
    if active is not None:
        stmt = stmt.where(Ticket.check_out.is_(None) if active else Ticket.check_out.is_not(None))
    lot_id = query_int("lot_id", minimum=1)
    if lot_id is not None:
        stmt = stmt.where(Ticket.lot_id == lot_id)
    rows, headers = paginate(stmt, Ticket.check_in.desc(), Ticket.id.desc())
    return jsonify([ticket_to_dict(*row) for row in rows]), 200, headers


@api.route("/tickets/<int:ticket_id>", methods=["GET"])
@jwt_required()
def get_ticket(ticket_id):
    row = db.session.execute(tickets_query().where(Ticket.id == ticket_id)).first()
    if row is None or (row[0].user_id != current_user.id and not current_user.is_admin):
        raise ApiError(404, "Ticket not found")
    return ticket_to_dict(*row)


CHECKOUT_TICKET = (
    select(
        Ticket.user_id,
        Ticket.spot_id,
        Ticket.lot_id,
        Ticket.check_in,
        Ticket.check_out,
        Ticket.currency,
        *(getattr(Ticket, name) for name in TARIFF_COLUMNS),
        ParkingSpot.spot_number,
        ParkingLot.name.label("lot_name"),
    )
    .join(ParkingSpot, Ticket.spot_id == ParkingSpot.id)
    .join(ParkingLot, Ticket.lot_id == ParkingLot.id)
    .where(Ticket.id == bindparam("ticket"))
    .with_for_update(of=ParkingLot, key_share=True)  # lot first: see "Lock order"
)
CLOSE_TICKET = (
    update(Ticket)
    .where(Ticket.id == bindparam("ticket"), Ticket.check_out.is_(None))
    .values(
        check_out=bindparam("closed_at", type_=UTCDateTime()),
        amount_due=bindparam("amount", type_=BigInteger()),
        duration_minutes=bindparam("minutes", type_=Integer()),
    )
    .execution_options(synchronize_session=False)
)
FREE_SPOT = (
    update(ParkingSpot)
    .where(ParkingSpot.id == bindparam("spot"), ParkingSpot.status == "occupied")
    .values(status="available")
    .execution_options(synchronize_session=False)
)


@api.route("/checkout/<int:ticket_id>", methods=["PATCH"])
@jwt_required()
def checkout(ticket_id):
    """Close a ticket: owner or admin, once. The conditional UPDATE is the lock."""
    invalid = "Invalid ticket or already checked out"
    ticket = run(CHECKOUT_TICKET, {"ticket": ticket_id}).first()
    if ticket is None:
        raise ApiError(400, invalid)
    if ticket.user_id != current_user.id and not current_user.is_admin:
        raise ApiError(403, "You can only check out your own tickets")
    if ticket.check_out is not None:
        raise ApiError(400, invalid)
    check_out = now()
    stay = check_out - ticket.check_in
    amount, breakdown = fee_for(stay, Tariff.of(ticket))
    duration = int(stay.total_seconds() // 60)
    closed = run(
        CLOSE_TICKET,
        {"ticket": ticket_id, "closed_at": check_out, "amount": amount, "minutes": duration},
    )
    if closed.rowcount == 0:
        db.session.rollback()
        raise ApiError(400, invalid)
    run(FREE_SPOT, {"spot": ticket.spot_id})
    db.session.commit()
    return {
        "message": "Checked out",
        "ticket_id": ticket_id,
        "check_in": iso(ticket.check_in),
        "check_out": iso(check_out),
        "duration_minutes": duration,
        "amount_due": amount,
        "currency": ticket.currency,
        "lot": ticket.lot_name,
        "lot_id": ticket.lot_id,
        "spot_number": ticket.spot_number,
        "breakdown": breakdown,
    }


# ===========================================================================
# Docs: /openapi.json, /docs, /docs/<filename> (public; content in openapi.py)
# ===========================================================================
# openapi.py is imported inside the views because it reads this module's limits.
# Exempt from rate limits like /test-db: static content, nothing to protect.


@api.route("/openapi.json", methods=["GET"])
@limiter.exempt
def openapi_json():
    import openapi

    # "servers" is this host, so Swagger UI's "Try it out" calls the same server.
    return openapi.document_for(request.url_root)


@api.route("/docs", methods=["GET"])
@limiter.exempt
def docs():
    import openapi

    page = openapi.docs_page(
        url_for("api.openapi_json"), lambda name: url_for("api.docs_asset", filename=name)
    )
    return Response(page, mimetype="text/html")


@api.route("/docs/<filename>", methods=["GET"])
@limiter.exempt
def docs_asset(filename):
    import openapi

    return openapi.send_docs_asset(filename)
