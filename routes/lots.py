"""Parking lots: /parking-lots, /parking-lots/<id>, its spots, quote and report."""

import csv
import io
from datetime import UTC, datetime, time, timedelta
from functools import cache, lru_cache
from zoneinfo import ZoneInfo

from flask import Response, current_app, jsonify
from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    String,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError

import parking
import schemas
from billing import Tariff, fee_for
from endpoints import ADMIN, USER, endpoint
from models import (
    PAYMENT_METHODS,
    SPOT_STATUSES,
    ParkingLot,
    ParkingSpot,
    Payment,
    Ticket,
    UTCDateTime,
    db,
)
from pagination import PageQuery, paginate
from replica import replica_reads
from routes.common import TARIFF_COLUMNS, active_lot, api, commit_or, now, run, tariff_to_dict
from routes.spots import spot_to_dict
from validation import ApiError

# ===========================================================================
# Parking lots: /parking-lots, /parking-lots/<id>, spots, quote, report
# ===========================================================================


def lot_dict(
    id_,
    name,
    location,
    total,
    available,
    zone,
    currency,
    rate,
    increment,
    grace,
    daily_max,
    exit_grace,
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
        "exit_grace_minutes": exit_grace,
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
        lot.exit_grace_minutes,
    )


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
        ParkingLot.exit_grace_minutes,
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
    parking.audit(parking.current_actor(), "lot.create", lot_id=lot.id, detail=lot.name)
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
    changed = ", ".join(sorted(body.model_fields_set))
    parking.audit(parking.current_actor(), "lot.update", lot_id=lot_id, detail=changed)
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
    parking.audit(parking.current_actor(), "lot.archive", lot_id=lot_id)
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
    parking.audit(
        parking.current_actor(), "spots.create", lot_id=lot_id, detail=f"{len(numbers)} {kind}"
    )
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


REPORT_COLUMNS = (
    "date",
    "tickets_started",
    "tickets_closed",
    "revenue",
    "average_stay_minutes",
    *(f"paid_{method}" for method in PAYMENT_METHODS),
    "outstanding",
    "permit_sessions",
)
STARTED, CLOSED, PAID = 0, 1, 2


@lru_cache(maxsize=64)
def report_statement(n_days: int):
    """The report's one aggregate query for n_days, built once and reused.

    bound0 .. bound{n_days} are the local midnights of the range in UTC
    (bound i starts day i). A ticket counts as started on the day of its
    check_in and as closed (with its amount, stay, what is still owed and
    whether a permit covered it) on the day of its check_out; a payment on
    the day it was recorded. Each part is one index range scan of the lot's
    rows ((lot_id, check_in), the covering (lot_id, check_out, amount_due,
    duration_minutes, amount_paid, permit_id) and the covering (lot_id,
    created_at, method, amount) of payments) grouped by day number, the CASE
    that finds the day being cheaper than joining a table of days (measured:
    4.4 -> 1.8 ms of PostgreSQL per 30-day report). Building this per request
    cost more than running it.
    """

    def bound(i: int):
        return bindparam(f"bound{i}", type_=UTCDateTime)

    def day_of(column):
        return case(*((column < bound(i + 1), i) for i in range(n_days))).label("day")

    def within(column):
        return (column >= bound(0)) & (column < bound(n_days))

    lot = bindparam("lot_id", type_=Integer)
    started_day, closed_day, paid_day = (
        day_of(Ticket.check_in),
        day_of(Ticket.check_out),
        day_of(Payment.created_at),
    )
    nothing = null().cast(BigInteger)
    started = (
        select(
            literal(STARTED).label("part"),
            started_day,
            null().cast(String).label("method"),
            func.count().label("n"),
            nothing.label("amount"),
            null().cast(Float).label("average_stay"),
            nothing.label("outstanding"),
            nothing.label("permits"),
        )
        .where(Ticket.lot_id == lot, within(Ticket.check_in))
        .group_by(started_day)
    )
    owed = case(
        (Ticket.amount_due > Ticket.amount_paid, Ticket.amount_due - Ticket.amount_paid), else_=0
    )
    closed = (
        select(
            literal(CLOSED),
            closed_day,
            null().cast(String),
            func.count(),
            func.sum(Ticket.amount_due),
            func.avg(Ticket.duration_minutes).cast(Float),
            func.sum(owed),
            func.count(Ticket.permit_id).cast(BigInteger),
        )
        .where(Ticket.lot_id == lot, within(Ticket.check_out))
        .group_by(closed_day)
    )
    paid = (
        select(
            literal(PAID),
            paid_day,
            Payment.method,
            func.count(),
            func.sum(Payment.amount),
            null().cast(Float),
            nothing,
            nothing,
        )
        .where(Payment.lot_id == lot, within(Payment.created_at))
        .group_by(paid_day, Payment.method)
    )
    return union_all(started, closed, paid)


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
            "payments": dict.fromkeys(PAYMENT_METHODS, 0),
            "outstanding": 0,
            "permit_sessions": 0,
        }
        for day in days
    ]
    for part, day, method, n, amount, average, outstanding, permits in run(
        report_statement(len(days)), params
    ):
        row = rows[day]
        if part == STARTED:
            row["tickets_started"] = n
        elif part == CLOSED:
            row["tickets_closed"] = n
            row["revenue"] = int(amount or 0)
            row["average_stay_minutes"] = round(float(average), 1)
            row["outstanding"] = int(outstanding or 0)
            row["permit_sessions"] = int(permits or 0)
        else:
            row["payments"][method] = int(amount or 0)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(
            {
                **{k: v for k, v in row.items() if k != "payments"},
                **{f"paid_{method}": amount for method, amount in row["payments"].items()},
            }
            for row in rows
        )
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
            "out_of_service": lot.spots_total - lot.spots_occupied - lot.spots_available,
        },
        "days": rows,
        "totals": {
            "tickets_started": sum(r["tickets_started"] for r in rows),
            "tickets_closed": sum(r["tickets_closed"] for r in rows),
            "revenue": sum(r["revenue"] for r in rows),
            "payments": {
                method: sum(r["payments"][method] for r in rows) for method in PAYMENT_METHODS
            },
            "outstanding": sum(r["outstanding"] for r in rows),
            "permit_sessions": sum(r["permit_sessions"] for r in rows),
        },
    }
