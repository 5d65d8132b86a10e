"""The `/api` blueprint: every endpoint, grouped by resource.

Views query the models directly. Each section starts with a header comment;
search for the URL (e.g. `"/parking-lots/<int:lot_id>/report"`) to find a view.
Each view is declared with `@endpoint(...)` (endpoints.py): who may call it,
its body and query models and its answer (schemas.py). The view receives the
validated `body` / `query` and does only the work; the declaration is also its
entry in the OpenAPI document.

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
from datetime import UTC, datetime, time, timedelta
from functools import cache, lru_cache
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from flask_jwt_extended import (
    current_user,
    decode_token,
    get_jwt,
)
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

import openapi
import schemas
import tokens
from billing import Tariff, fee_for
from checks import cached_schema_problem
from database import RETRY_AFTER_SECONDS, bounded
from endpoints import ADMIN, REFRESH, USER, endpoint
from models import (
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
from pagination import PageQuery, paginate
from ratelimit import account_rate_limit, auth_rate_limits, limiter
from replica import replica_reads
from tokens import issue_tokens
from validation import ApiError, rollback_quietly

api = Blueprint("api", __name__)


def now() -> datetime:
    """The current UTC time; tests set config["CLOCK"] to control it."""
    return (current_app.config.get("CLOCK") or utcnow)()


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


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
@endpoint(
    tag="Health",
    summary="Check the database connection and schema (the health check)",
    response=schemas.Message,
    errors={
        503: "The database does not answer within a second (`Database connection failed: "
        "<error class>`), or its schema is behind the code's revision, e.g. `Database schema "
        "is at 0003, code expects 0006: run flask db upgrade`"
    },
)
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


@api.route("/register", methods=["POST"])
@endpoint(
    tag="Accounts",
    summary="Register a driver account",
    body=schemas.RegisterRequest,
    response=(schemas.Session, 201),
    limits=[auth_rate_limits],
    description="Always creates a `driver`; a `role` key in the body is ignored.",
)
def register(body: schemas.RegisterRequest):
    username, email, password = body.username, body.email, body.password

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
@endpoint(
    tag="Accounts",
    summary="Log in",
    body=schemas.LoginRequest,
    response=schemas.Session,
    errors={401: "Invalid email or password"},
    limits=[auth_rate_limits],
)
def login(body: schemas.LoginRequest):
    user = db.session.scalar(select(User).where(User.email == body.email))
    if not password_matches(user, body.password):
        raise ApiError(401, "Invalid email or password")
    return {"user": user_to_dict(user), **issue_tokens(user)}


@api.route("/token/refresh", methods=["POST"])
@endpoint(
    tag="Accounts",
    summary="Exchange a refresh token for a new token pair",
    auth=REFRESH,
    response=schemas.Tokens,
    description=(
        "Send the **refresh** token as the bearer token. It is rotated: the old "
        "one is revoked. Presenting it again within a few seconds (a retry) gives "
        "the same new pair; later, it revokes every token of the user."
    ),
)
def refresh_token():
    """Rotate: the presented refresh token is revoked and a new pair issued;
    a retry within the leeway gets the same pair, a later reuse revokes every
    token of the user (tokens.py)."""
    return tokens.rotate(get_jwt(), current_user)


@api.route("/logout", methods=["POST"])
@endpoint(
    tag="Accounts",
    summary="Revoke the access token (and optionally a refresh token)",
    auth=USER,
    body=schemas.LogoutRequest,
    response=schemas.Message,
)
def logout(body: schemas.LogoutRequest):
    refresh_payload = None
    refresh = body.refresh_token
    if refresh is not None:
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
@endpoint(tag="Accounts", summary="The authenticated user", auth=USER, response=schemas.User)
def me():
    return user_to_dict(current_user)


@api.route("/me/password", methods=["PATCH"])
@endpoint(
    tag="Accounts",
    summary="Change the password; every earlier token stops working",
    auth=USER,
    body=schemas.ChangePasswordRequest,
    response=schemas.PasswordChanged,
    limits=[account_rate_limit],
)
def change_password(body: schemas.ChangePasswordRequest):
    """Change the password; every token issued before stops working."""
    user = db.session.get(User, current_user.id)
    if not check_password_hash(user.password_hash, body.current_password):
        raise ApiError(400, "Current password is incorrect")
    user.password_hash = hash_password(body.new_password)
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


def own_vehicle(vehicle_id: int, message: str = "Vehicle not found") -> Vehicle:
    vehicle = db.session.get(Vehicle, vehicle_id)
    if vehicle is None or vehicle.deleted_at or vehicle.user_id != current_user.id:
        raise ApiError(404, message)
    return vehicle


@api.route("/vehicles", methods=["GET"])
@endpoint(
    tag="Vehicles",
    summary="List the caller's vehicles",
    auth=USER,
    query=schemas.Pagination,
    response=list[schemas.Vehicle],
    paginated=True,
)
def list_vehicles(query: schemas.Pagination):
    stmt = select(Vehicle).where(Vehicle.user_id == current_user.id, Vehicle.deleted_at.is_(None))
    rows, headers = paginate(stmt, Vehicle.id, pages=query)
    return jsonify([vehicle_to_dict(vehicle) for (vehicle,) in rows]), 200, headers


@api.route("/vehicles", methods=["POST"])
@endpoint(
    tag="Vehicles",
    summary="Register a vehicle",
    auth=USER,
    body=schemas.VehicleCreate,
    response=(schemas.Vehicle, 201),
    errors={409: "Vehicle already registered"},
)
def create_vehicle(body: schemas.VehicleCreate):
    vehicle = Vehicle(plate_number=body.plate_number, type=body.type, user_id=current_user.id)
    db.session.add(vehicle)
    commit_or(409, "Vehicle already registered")
    return vehicle_to_dict(vehicle), 201


@api.route("/vehicles/<int:vehicle_id>", methods=["GET"])
@endpoint(
    tag="Vehicles",
    summary="One of the caller's vehicles",
    auth=USER,
    response=schemas.Vehicle,
    errors={404: "Vehicle not found"},
)
def get_vehicle(vehicle_id):
    return vehicle_to_dict(own_vehicle(vehicle_id))


@api.route("/vehicles/<int:vehicle_id>", methods=["PATCH"])
@endpoint(
    tag="Vehicles",
    summary="Edit a vehicle's plate or type",
    auth=USER,
    body=schemas.VehicleUpdate,
    response=schemas.Vehicle,
    errors={404: "Vehicle not found", 409: "Vehicle already registered"},
)
def update_vehicle(vehicle_id, body: schemas.VehicleUpdate):
    vehicle = own_vehicle(vehicle_id)
    for name in body.model_fields_set:  # only the fields sent
        setattr(vehicle, name, getattr(body, name))
    commit_or(409, "Vehicle already registered")
    return vehicle_to_dict(vehicle)


@api.route("/vehicles/<int:vehicle_id>", methods=["DELETE"])
@endpoint(
    tag="Vehicles",
    summary="Delete a vehicle (its ticket history stays)",
    auth=USER,
    response=schemas.VehicleDeleted,
    errors={404: "Vehicle not found", 409: "Vehicle is parked"},
)
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


def set_lot_fields(lot: ParkingLot, body: schemas.LotFields) -> None:
    """Copy the editable fields the body sent onto `lot`."""
    for name in body.model_fields_set & schemas.LOT_FIELDS:
        setattr(lot, name, getattr(body, name))


def spot_rows(lot_id: int, numbers: list[str], kind: str) -> list[dict]:
    if len(set(numbers)) != len(numbers):
        raise ApiError(409, "Spot number already exists in this lot")
    return [
        {"lot_id": lot_id, "spot_number": n, "kind": kind, "status": "available"} for n in numbers
    ]


def spot_numbers(prefix: str | None, count: int) -> list[str]:
    return [f"{prefix or ''}{n}" for n in range(1, count + 1)]


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
@endpoint(
    tag="Parking lots",
    summary="List parking lots",
    auth=USER,
    query=schemas.Pagination,
    response=list[schemas.Lot],
    paginated=True,
)
@replica_reads
def list_lots(query: schemas.Pagination):
    rows, headers = paginate(lot_list(), pages=query)
    lots = [lot_dict(*row) for row in rows]
    return jsonify(lots), 200, headers


@api.route("/parking-lots", methods=["POST"])
@endpoint(
    tag="Parking lots",
    summary="Create a parking lot, optionally with spots (admin)",
    auth=ADMIN,
    body=schemas.LotCreate,
    response=(schemas.LotCreated, 201),
)
def create_lot(body: schemas.LotCreate):
    lot = ParkingLot(timezone="UTC", currency=current_app.config["DEFAULT_CURRENCY"])
    set_lot_fields(lot, body)
    numbers = spot_numbers(body.spot_prefix, body.spot_count)
    db.session.add(lot)
    db.session.flush()
    insert_spots(spot_rows(lot.id, numbers, body.kind))
    db.session.commit()
    return {
        "message": "Parking lot created",
        "lot_id": lot.id,
        "lot": lot_to_dict(lot, len(numbers), len(numbers)),
    }, 201


@api.route("/parking-lots/<int:lot_id>", methods=["GET"])
@endpoint(
    tag="Parking lots",
    summary="One lot with spot counts by status and kind",
    auth=USER,
    response=schemas.LotDetail,
    errors={404: "Parking lot not found"},
)
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
@endpoint(
    tag="Parking lots",
    summary="Edit a lot (admin)",
    auth=ADMIN,
    body=schemas.LotFields,
    response=schemas.Lot,
    errors={404: "Parking lot not found", 409: "Currency cannot change once the lot has tickets"},
)
def update_lot(lot_id, body: schemas.LotFields):
    lot = active_lot(lot_id)
    old_currency = lot.currency
    set_lot_fields(lot, body)
    if lot.currency != old_currency and db.session.scalar(
        select(exists().where(Ticket.lot_id == lot_id))
    ):
        raise ApiError(409, "Currency cannot change once the lot has tickets")
    db.session.commit()
    return lot_to_dict(lot, *lot_counts(lot_id))


@api.route("/parking-lots/<int:lot_id>", methods=["DELETE"])
@endpoint(
    tag="Parking lots",
    summary="Archive a lot; its ticket history stays (admin)",
    auth=ADMIN,
    response=schemas.LotArchived,
    errors={404: "Parking lot not found", 409: "Parking lot has open tickets"},
)
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
@endpoint(
    tag="Parking lots",
    summary="Add one spot or a numbered batch (admin)",
    auth=ADMIN,
    body=schemas.SpotsCreate,
    response=(list[schemas.Spot], 201),
    errors={404: "Parking lot not found", 409: "Spot number already exists in this lot"},
)
def create_spots(lot_id, body: schemas.SpotsCreate):
    active_lot(lot_id, lock=True)  # an archive in progress finishes first
    spots = body.root  # one spot or a batch, as the body says
    if isinstance(spots, schemas.OneSpot):
        numbers = [spots.spot_number]
    else:
        numbers = spot_numbers(spots.prefix, spots.count)
    kind = spots.kind
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
@endpoint(
    tag="Parking lots",
    summary="Price of a planned stay",
    auth=USER,
    query=schemas.QuoteQuery,
    response=schemas.Quote,
    errors={404: "Parking lot not found"},
)
def quote(lot_id, query: schemas.QuoteQuery):
    lot = active_lot(lot_id)
    minutes = query.minutes
    amount, breakdown = fee_for(timedelta(minutes=minutes), Tariff.of(lot))
    return {
        "minutes": minutes,
        "amount": amount,
        "currency": lot.currency,
        "tariff": tariff_to_dict(lot),
        "breakdown": breakdown,
    }


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
@endpoint(
    tag="Parking lots",
    summary="Daily tickets, revenue and average stay in the lot's time zone (admin)",
    auth=ADMIN,
    query=schemas.ReportQuery,
    response=schemas.Report,
    content={"text/csv": "or, with `format=csv`, the days as CSV rows"},
    errors={404: "Parking lot not found"},
)
@replica_reads
def lot_report(lot_id, query: schemas.ReportQuery):
    """Per local day of the lot: tickets started and closed, revenue, average stay.

    Day boundaries are computed in the lot's time zone (so DST days have 23 or
    25 hours) and sent to the database as a small table; the aggregates run in
    SQL over the (lot_id, check_in) and (lot_id, check_out) indexes.
    """
    lot = run(REPORT_LOT, {"lot_id": lot_id}).first()
    if lot is None:
        raise ApiError(404, "Parking lot not found")
    start, end, fmt = query.from_, query.to, query.format
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
@endpoint(
    tag="Spots",
    summary="Search spots (public)",
    query=schemas.SpotSearch,
    response=list[schemas.Spot],
    paginated=True,
)
@replica_reads
def list_spots(query: schemas.SpotSearch):
    params = {"lot_id": query.lot_id, "status": query.status, "kind": query.kind}
    params = {name: value for name, value in params.items() if value is not None}
    search = spot_search("lot_id" in params, "status" in params, "kind" in params)
    rows, headers = paginate(search, pages=query, params=params)
    spots = [spot_dict(*row) for row in rows]
    return jsonify(spots), 200, headers


@api.route("/spots/<int:spot_id>", methods=["GET"])
@endpoint(
    tag="Spots",
    summary="One spot (public)",
    response=schemas.Spot,
    errors={404: "Spot not found"},
)
def get_spot(spot_id):
    row = db.session.execute(spots_query().where(ParkingSpot.id == spot_id)).first()
    if row is None:
        raise ApiError(404, "Spot not found")
    return spot_to_dict(*row)


@api.route("/spots/<int:spot_id>", methods=["PATCH"])
@endpoint(
    tag="Spots",
    summary="Rename a spot, change its kind, or take it out of service (admin)",
    auth=ADMIN,
    body=schemas.SpotUpdate,
    response=schemas.Spot,
    errors={404: "Spot not found", 409: "Spot is occupied, or the number exists in this lot"},
)
def update_spot(spot_id, body: schemas.SpotUpdate):
    row = db.session.execute(spots_query().where(ParkingSpot.id == spot_id)).first()
    if row is None:
        raise ApiError(404, "Spot not found")
    spot, lot_name = row
    if body.spot_number is not None:
        spot.spot_number = body.spot_number
    if body.kind is not None:
        spot.kind = body.kind
    status = body.status
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
@endpoint(
    tag="Tickets",
    summary="Book a spot (create a ticket)",
    auth=USER,
    body=schemas.TicketCreate,
    response=(schemas.TicketBooked, 201),
    errors={
        400: "Vehicle ID and parking spot ID are required, Spot unavailable, "
        "Vehicle not found, or a field is invalid",
        404: "Parking lot not found",
        409: "Vehicle already parked, or No spots available",
    },
    description=(
        "Give `parking_spot_id` to book that spot, or `lot_id` (and `kind`) to be "
        "assigned any free spot of the lot."
    ),
)
def create_ticket(body: schemas.TicketCreate):
    vehicle_id, spot_id, lot_id, kind = (
        body.vehicle_id,
        body.parking_spot_id,
        body.lot_id,
        body.kind,
    )
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
@endpoint(
    tag="Tickets",
    summary="List the caller's tickets, newest first",
    auth=USER,
    query=schemas.TicketList,
    response=list[schemas.Ticket],
    paginated=True,
)
def list_tickets(query: schemas.TicketList):
    stmt = tickets_query()
    if not (query.all and current_user.is_admin):
        stmt = stmt.where(Ticket.user_id == current_user.id)
    if query.active is not None:
        closed = Ticket.check_out.is_not(None)
        stmt = stmt.where(Ticket.check_out.is_(None) if query.active else closed)
    if query.lot_id is not None:
        stmt = stmt.where(Ticket.lot_id == query.lot_id)
    rows, headers = paginate(stmt, Ticket.check_in.desc(), Ticket.id.desc(), pages=query)
    return jsonify([ticket_to_dict(*row) for row in rows]), 200, headers


@api.route("/tickets/<int:ticket_id>", methods=["GET"])
@endpoint(
    tag="Tickets",
    summary="One ticket (owner or admin); an open one shows the amount owed so far",
    auth=USER,
    response=schemas.Ticket,
    errors={404: "Ticket not found"},
)
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
@endpoint(
    tag="Tickets",
    summary="Check out: close the ticket and get the receipt (owner or admin)",
    auth=USER,
    response=schemas.Receipt,
    errors={
        400: "Invalid ticket or already checked out",
        403: "You can only check out your own tickets",
        404: "Not found (the id in the URL is not an integer)",
    },
)
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
# Exempt from rate limits like /test-db: static content, nothing to protect.


@api.route("/openapi.json", methods=["GET"])
@limiter.exempt
@endpoint(tag="Docs", summary="This OpenAPI document", response=schemas.OpenApiDocument)
def openapi_json():
    # "servers" is this host, so Swagger UI's "Try it out" calls the same server.
    return openapi.document_for(current_app, request.url_root)


@api.route("/docs", methods=["GET"])
@limiter.exempt
@endpoint(
    tag="Docs",
    summary="Interactive documentation (Swagger UI)",
    content={"text/html": "The HTML page"},
)
def docs():
    page = openapi.docs_page(
        url_for("api.openapi_json"), lambda name: url_for("api.docs_asset", filename=name)
    )
    return Response(page, mimetype="text/html")


@api.route("/docs/<filename>", methods=["GET"])
@limiter.exempt
@endpoint(
    tag="Docs",
    summary="A Swagger UI asset, served by the app (no CDN)",
    content=dict.fromkeys(sorted(set(openapi.DOCS_ASSETS.values())), "The file"),
    path={"filename": {"type": "string", "enum": sorted(openapi.DOCS_ASSETS)}},
    errors={404: "Not found"},
)
def docs_asset(filename):
    return openapi.send_docs_asset(filename)
