"""Parking lots: /parking-lots, /parking-lots/<id>, its spots, quote and report."""

import csv
import io
from datetime import timedelta
from functools import cache

from flask import Response, current_app, jsonify
from sqlalchemy import (
    Date,
    bindparam,
    case,
    exists,
    func,
    insert,
    select,
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
        }
        for day in days
    ]
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
        },
    }
