"""Parking lots: /parking-lots, /parking-lots/<id>, its spots, quote and report."""

import csv
import io
from datetime import timedelta
from functools import cache

from flask import Response, current_app, jsonify
from sqlalchemy import (
    Date,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
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
    LotDay,
    ParkingLot,
    ParkingSpot,
    Reservation,
    Ticket,
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
    reservable,
    max_days,
    horizon_days,
    cancel_free,
    late_cancel_fee,
    early,
    no_show,
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
        "reservable_spots": reservable,
        "reservations": {
            "max_days": max_days,
            "horizon_days": horizon_days,
            "cancel_free_minutes": cancel_free,
            "late_cancel_fee": late_cancel_fee,
            "early_minutes": early,
            "no_show_minutes": no_show,
        },
    }


POLICY_COLUMNS = (
    "reservation_max_days",
    "reservation_horizon_days",
    "cancel_free_minutes",
    "late_cancel_fee",
    "early_minutes",
    "no_show_minutes",
)
# A lot's reservable spots: an index-only count on the partial index
# ix_parking_spots_reservable, as many entries as the lot has such spots.
RESERVABLE_COUNT = (
    select(func.count())
    .where(ParkingSpot.lot_id == ParkingLot.id, ParkingSpot.reservable)
    .correlate(ParkingLot)
    .scalar_subquery()
)
# `available_spots` is what a driver can book now: free spots that are not
# reservable (reservable ones host reservations only).
FREE_RESERVABLE = (
    select(func.count())
    .where(
        ParkingSpot.lot_id == ParkingLot.id,
        ParkingSpot.reservable,
        ParkingSpot.status == "available",
    )
    .correlate(ParkingLot)
    .scalar_subquery()
)


def lot_to_dict(lot: ParkingLot, total: int, available: int, reservable: int) -> dict:
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
        reservable,
        *(getattr(lot, name) for name in POLICY_COLUMNS),
    )


def set_lot_fields(lot: ParkingLot, body: schemas.LotFields) -> None:
    """Copy the editable fields the body sent onto `lot`."""
    for name in body.model_fields_set & schemas.LOT_FIELDS:
        setattr(lot, name, getattr(body, name))


def spot_rows(lot_id: int, numbers: list[str], kind: str) -> list[dict]:
    if len(set(numbers)) != len(numbers):
        raise ApiError(409, "Spot number already exists in this lot")
    return [
        {
            "lot_id": lot_id,
            "spot_number": n,
            "kind": kind,
            "status": "available",
            "reservable": False,
        }
        for n in numbers
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


def lot_counts(lot_id: int) -> tuple[int, int, int]:
    """Spots, bookable free spots (not reservable), reservable spots."""
    free = ParkingSpot.status == "available"
    total, available, reservable = db.session.execute(
        select(
            func.count(ParkingSpot.id),
            func.count(case((free & ~ParkingSpot.reservable, 1))),
            func.count(case((ParkingSpot.reservable, 1))),
        ).where(ParkingSpot.lot_id == lot_id)
    ).one()
    return total, available, reservable


@cache
def lot_list() -> PageQuery:
    # Plain rows with the counters the database keeps (migration 0003): no
    # spot is counted and no ORM object built per request.
    stmt = select(
        ParkingLot.id,
        ParkingLot.name,
        ParkingLot.location,
        ParkingLot.spots_total,
        ParkingLot.spots_available - FREE_RESERVABLE,
        ParkingLot.timezone,
        ParkingLot.currency,
        ParkingLot.hourly_rate,
        ParkingLot.billing_increment_minutes,
        ParkingLot.grace_minutes,
        ParkingLot.daily_max,
        ParkingLot.exit_grace_minutes,
        RESERVABLE_COUNT,
        *(getattr(ParkingLot, name) for name in POLICY_COLUMNS),
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
    rows = spot_rows(lot.id, numbers, body.kind)
    for row in rows[len(rows) - body.reservable_count :] if body.reservable_count else ():
        row["reservable"] = True
    insert_spots(rows)
    parking.audit(parking.current_actor(), "lot.create", lot_id=lot.id, detail=lot.name)
    db.session.commit()
    return {
        "message": "Parking lot created",
        "lot_id": lot.id,
        "lot": lot_to_dict(
            lot, len(numbers), len(numbers) - body.reservable_count, body.reservable_count
        ),
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
        select(ParkingSpot.kind, ParkingSpot.status, ParkingSpot.reservable, func.count())
        .where(ParkingSpot.lot_id == lot_id)
        .group_by(ParkingSpot.kind, ParkingSpot.status, ParkingSpot.reservable)
    ).all()
    counts = dict.fromkeys(SPOT_STATUSES, 0)
    kinds: dict[str, dict] = {}
    reservable = bookable = 0
    for kind, status, is_reservable, n in rows:
        counts[status] += n
        per_kind = kinds.setdefault(kind, {"total": 0, **dict.fromkeys(SPOT_STATUSES, 0)})
        per_kind["total"] += n
        per_kind[status] += n
        reservable += n if is_reservable else 0
        bookable += n if status == "available" and not is_reservable else 0
    total = sum(counts.values())
    return {
        **lot_to_dict(lot, total, bookable, reservable),
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
    errors={
        404: "Parking lot not found",
        409: "Currency (or Time zone) cannot change once the lot has tickets",
    },
)
def update_lot(lot_id, body: schemas.LotFields):
    lot = active_lot(lot_id)
    old_currency, old_zone = lot.currency, lot.timezone
    set_lot_fields(lot, body)
    if (lot.currency, lot.timezone) != (old_currency, old_zone) and db.session.scalar(
        select(exists().where(Ticket.lot_id == lot_id))
    ):
        # Tickets froze the currency; the daily rollups counted them on this zone's days.
        changed = "Currency" if lot.currency != old_currency else "Time zone"
        raise ApiError(409, f"{changed} cannot change once the lot has tickets")
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
    errors={
        404: "Parking lot not found",
        409: "Parking lot has open tickets, or upcoming reservations",
    },
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
    at = now()
    upcoming = exists().where(
        Reservation.lot_id == lot_id,
        Reservation.status == "confirmed",
        Reservation.no_show_at > at,
    )
    if db.session.scalar(select(upcoming)):
        db.session.rollback()  # a promise to a driver: cancel (and refund) it first
        raise ApiError(409, "Parking lot has upcoming reservations; cancel them first")
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
    rows = spot_rows(lot_id, numbers, kind)
    for row in rows:
        row["reservable"] = spots.reservable
    insert_spots(rows)
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


RESERVATION_COLUMNS = (
    "reservations_made",
    "reservation_revenue",
    "cancellations",
    "refunds",
    "no_shows",
)
REPORT_COLUMNS = (
    "date",
    "tickets_started",
    "tickets_closed",
    "revenue",
    "average_stay_minutes",
    *(f"paid_{method}" for method in PAYMENT_METHODS),
    "outstanding",
    "permit_sessions",
    *RESERVATION_COLUMNS,
)
# The lot's days in the range: one row per day that had anything, kept by
# triggers in the writing transactions (models.LotDay, migration 0009).
# Plain tuples in a fixed order, unpacked: a year is 365 rows, and building
# LotDay objects (or reading Row attributes by name) cost more than the
# statement (make bench-scale, bench/README.md).
REPORT_DAYS = (
    select(
        LotDay.day,
        LotDay.tickets_started,
        LotDay.tickets_closed,
        LotDay.revenue,
        LotDay.stay_minutes,
        LotDay.outstanding,
        LotDay.permit_sessions,
        *(getattr(LotDay, f"paid_{method}") for method in PAYMENT_METHODS),
    )
    .where(
        LotDay.lot_id == bindparam("lot_id"),
        LotDay.day >= bindparam("first", type_=Date),
        LotDay.day <= bindparam("last", type_=Date),
    )
    .order_by(LotDay.day)
)


# The lot's reservations per local day in the range: made (and their
# amounts), cancelled (and the refunds), and no-shows by the window's start
# day (a confirmed one past its no_show_at counts, recorded or not). One
# statement built once, three grouped parts; each reads only the range's rows,
# on the (lot_id, <day>) indexes (bench/explain_reservations.py).
RESERVATION_MADE, RESERVATION_CANCELLED, RESERVATION_NO_SHOW = 0, 1, 2
_LOT_RESERVATIONS = Reservation.lot_id == bindparam("lot_id")


def _reservations_by(kind: int, day, amount, *where):
    return (
        select(literal(kind).label("kind"), day.label("day"), func.count(), amount)
        .where(
            _LOT_RESERVATIONS,
            day.between(bindparam("first", type_=Date), bindparam("last", type_=Date)),
            *where,
        )
        .group_by(day)
    )


RESERVATION_DAYS = union_all(
    _reservations_by(RESERVATION_MADE, Reservation.created_day, func.sum(Reservation.amount)),
    _reservations_by(
        RESERVATION_CANCELLED, Reservation.cancelled_day, func.sum(Reservation.refund)
    ),
    _reservations_by(
        RESERVATION_NO_SHOW,
        Reservation.start_day,
        literal(0),
        or_(
            Reservation.status == "no_show",
            and_(Reservation.status == "confirmed", Reservation.no_show_at <= bindparam("at")),
        ),
    ),
)
RESERVATION_DAY_NAMES = {
    RESERVATION_MADE: ("reservations_made", "reservation_revenue"),
    RESERVATION_CANCELLED: ("cancellations", "refunds"),
    RESERVATION_NO_SHOW: ("no_shows", None),
}


def reservation_days(lot_id: int, first, last, at) -> dict:
    per_day: dict = {}
    params = {"lot_id": lot_id, "first": first, "last": last, "at": at}
    for kind, day, count, amount in run(RESERVATION_DAYS, params):
        row = per_day.setdefault(day, dict.fromkeys(RESERVATION_COLUMNS, 0))
        counted, summed = RESERVATION_DAY_NAMES[kind]
        row[counted] = count
        if summed:
            row[summed] = int(amount or 0)
    return per_day


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
    """Per local day of the lot: tickets started and closed, revenue, average
    stay, payments by method, what is still owed, permit sessions.

    Days are the lot's local days (so DST days have 23 or 25 hours). They are
    read from the daily rollups (lot_days): one primary-key range scan of as
    many rows as days asked for, whatever the lot's history.
    """
    lot = run(REPORT_LOT, {"lot_id": lot_id}).first()
    if lot is None:
        raise ApiError(404, "Parking lot not found")
    start, end, fmt = query.from_, query.to, query.format
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
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
            **dict.fromkeys(RESERVATION_COLUMNS, 0),
        }
        for day in days
    ]
    for day, counted in reservation_days(lot_id, start, end, now()).items():
        rows[(day - start).days].update(counted)
    kept = run(REPORT_DAYS, {"lot_id": lot_id, "first": start, "last": end}).all()
    for day, started, closed, revenue, stay, outstanding, permits, *paid in kept:
        row = rows[(day - start).days]
        row["tickets_started"] = started
        row["tickets_closed"] = closed
        row["revenue"] = revenue
        row["outstanding"] = outstanding
        row["permit_sessions"] = permits
        row["payments"] = dict(zip(PAYMENT_METHODS, paid, strict=True))
        if closed:
            row["average_stay_minutes"] = round(stay / closed, 1)
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
            **{name: sum(r[name] for r in rows) for name in RESERVATION_COLUMNS},
        },
    }
