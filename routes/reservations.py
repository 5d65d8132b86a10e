"""Reservations: /reservations, /reservations/<id> (cancel, check-in), and a
lot's /parking-lots/<id>/availability.

The promise: a driver who holds a confirmed reservation and arrives within
its window gets a spot of the kind booked. An operator marks spots
`reservable`; those host reservations only (walk-ins never get one), and a
reservation holds one of them for the half-open window [start, end).

No double booking: a booking takes its lot's row lock (the lock order of
routes/), picks a reservable spot with no active reservation overlapping the
window, and inserts. On PostgreSQL two exclusion constraints (migration 0010)
guarantee it whatever the app does: no two active reservations of one spot,
or of one vehicle, overlap, and back-to-back windows do not overlap. SQLite
serialises writers, so the same check in the writing transaction holds there.

No-shows without a scheduler: a confirmed reservation not checked in by
`no_show_at` (start + the lot's no_show_minutes) *is* a no-show. Reads show it
so; every booking and check-in first marks the lot's (and the vehicle's)
overdue ones `no_show` in its own transaction, so the constraints never hold
a window a no-show freed; `flask expire-reservations` records the rest.

Money: the window's price (the lot's fee rule over its length, no grace
period) is frozen on the reservation and recorded at booking as a payment
with method `reservation`. A reserved stay's ticket bills only what the
window does not cover (billing.reserved_stay_charge).
"""

from datetime import timedelta
from types import SimpleNamespace

from flask import jsonify
from flask_jwt_extended import current_user
from sqlalchemy import and_, bindparam, case, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError

import events
import parking
import schemas
from billing import Tariff, fee_for, tariff_to_dict
from database import lock_row
from endpoints import USER, endpoint
from models import (
    ACTIVE_RESERVATION,
    ParkingLot,
    ParkingSpot,
    Payment,
    Reservation,
    Vehicle,
    db,
    local_day,
)
from pagination import paginate
from routes.common import active_lot, api, iso, now, run
from validation import ApiError

PAST_TOLERANCE = timedelta(minutes=1)
NOT_FOUND = "Reservation not found"
NO_SPOTS = "No reservable spots for this window"
VEHICLE_BUSY = "Vehicle already has a reservation for this window"
NO_SPOT_AT_CHECK_IN = "No spot available for this reservation"
STATUS_TEXT = {
    "checked_in": "Reservation already checked in",
    "completed": "Reservation is completed",
    "cancelled": "Reservation is cancelled",
    "no_show": "Reservation is a no-show",
}


def price(tariff_source, start, end) -> int:
    """The window's price: the fee rule over its length without a grace
    period (a reserved window is bought whole, never a short free stay)."""
    t = Tariff.of(tariff_source)
    no_grace = Tariff(t.hourly_rate, t.billing_increment_minutes, 0, t.daily_max)
    return fee_for(end - start, no_grace)[0]


def overlaps(start, end):
    """The reservation's window overlaps [start, end) (half-open: touching is fine)."""
    return and_(Reservation.start_at < end, Reservation.end_at > start)


def holds_spot(at):
    """A reservation that holds its spot at `at`: checked in, or confirmed and
    not yet a no-show (whatever its status column says yet)."""
    return or_(
        Reservation.status == "checked_in",
        and_(Reservation.status == "confirmed", Reservation.no_show_at > at),
    )


def shown_status(reservation, at) -> str:
    if reservation.status == "confirmed" and reservation.no_show_at <= at:
        return "no_show"
    return reservation.status


def reservations_query():
    return (
        select(
            Reservation,
            ParkingLot.name.label("lot_name"),
            ParkingLot.timezone,
            Vehicle.plate_number,
            ParkingSpot.spot_number,
        )
        .join(ParkingLot, Reservation.lot_id == ParkingLot.id)
        .join(Vehicle, Reservation.vehicle_id == Vehicle.id)
        .join(ParkingSpot, Reservation.spot_id == ParkingSpot.id)
    )


def reservation_dict(row, at) -> dict:
    r, lot_name, zone, plate_number, spot_number = row
    return {
        "id": r.id,
        "lot_id": r.lot_id,
        "lot": lot_name,
        "vehicle_id": r.vehicle_id,
        "plate_number": plate_number,
        "user_id": r.user_id,
        "spot_id": r.spot_id,
        "spot_number": spot_number,
        "kind": r.kind,
        "start": iso(r.start_at),
        "end": iso(r.end_at),
        "start_local": parking.local_iso(r.start_at, zone),
        "end_local": parking.local_iso(r.end_at, zone),
        "status": shown_status(r, at),
        "amount": r.amount,
        "currency": r.currency,
        "cancel_free_until": iso(r.cancel_free_until),
        "late_cancel_fee": r.late_cancel_fee,
        "check_in_from": iso(r.start_at - timedelta(minutes=r.early_minutes)),
        "no_show_at": iso(r.no_show_at),
        "ticket_id": r.ticket_id,
        "refund": r.refund,
        "created_at": iso(r.created_at),
        "cancelled_at": iso(r.cancelled_at),
    }


def read_one(reservation_id: int) -> dict | None:
    row = db.session.execute(reservations_query().where(Reservation.id == reservation_id)).first()
    return reservation_dict(row, now()) if row is not None else None


def expire_overdue(at, *, lot_id: int | None = None, vehicle=None) -> int:
    """Record as no-shows the confirmed reservations not checked in by their
    no_show_at: of a lot, or of a vehicle (`(vehicle_id, ends_after)`: only
    its windows ending after that moment, the ones a new window can
    overlap), or all. Emits reservation.no_show for each. In the caller's
    transaction; returns how many."""
    stmt = update(Reservation).where(
        Reservation.status == "confirmed", Reservation.no_show_at <= at
    )
    if lot_id is not None:
        stmt = stmt.where(Reservation.lot_id == lot_id)
    if vehicle is not None:
        vehicle_id, ends_after = vehicle
        stmt = stmt.where(Reservation.vehicle_id == vehicle_id, Reservation.end_at > ends_after)
    ids = run(
        stmt.values(status="no_show")
        .returning(Reservation.id)
        .execution_options(synchronize_session=False)
    ).scalars()
    ids = list(ids)
    for reservation_id in ids:
        events.emit("reservation.no_show", read_one(reservation_id))
    return len(ids)


# ---------------------------------------------------------------------------
# Availability and booking
# ---------------------------------------------------------------------------


def reservable_spots(lot_id: int, kind: str):
    return select(ParkingSpot.id).where(
        ParkingSpot.lot_id == lot_id,
        ParkingSpot.reservable,
        ParkingSpot.kind == kind,
        ParkingSpot.status != "out_of_service",
    )


@api.route("/parking-lots/<int:lot_id>/availability", methods=["GET"])
@endpoint(
    tag="Reservations",
    summary="Reservable spots free for a window, and its price (public)",
    query=schemas.AvailabilityQuery,
    response=schemas.Availability,
    errors={
        400: "start and end are required, end must be after start",
        404: "Parking lot not found",
    },
)
def reservable_availability(lot_id, query: schemas.AvailabilityQuery):
    lot = active_lot(lot_id)
    at = now()
    held = exists().where(
        Reservation.spot_id == ParkingSpot.id, holds_spot(at), overlaps(query.start, query.end)
    )
    spots = reservable_spots(lot_id, query.kind).subquery()
    total, free = db.session.execute(
        select(
            func.count(ParkingSpot.id),
            func.count(case((~held, 1))),
        ).where(ParkingSpot.id.in_(select(spots.c.id)))
    ).one()
    return {
        "start": iso(query.start),
        "end": iso(query.end),
        "kind": query.kind,
        "reservable_total": total,
        "available": free,
        "amount": price(lot, query.start, query.end),
        "currency": lot.currency,
    }


OWNED_VEHICLE = select(Vehicle.id, Vehicle.plate_key).where(
    Vehicle.id == bindparam("vehicle"),
    Vehicle.user_id == bindparam("owner"),
    Vehicle.deleted_at.is_(None),
)


@api.route("/reservations", methods=["POST"])
@endpoint(
    tag="Reservations",
    summary="Reserve a spot for a window, paid now (the vehicle's owner)",
    auth=USER,
    body=schemas.ReservationCreate,
    response=(schemas.Reservation, 201),
    errors={
        400: "Vehicle not found, start must not be in the past, end must be after start, "
        "the window is too long or too far ahead, or a field is invalid",
        404: "Parking lot not found",
        409: (
            schemas.ReservationConflict,
            "Price changed (with `amount`), No reservable spots for this window, "
            "or Vehicle already has a reservation for this window",
        ),
    },
    description=(
        "Holds one reservable spot of `kind` for [start, end) (back-to-back windows are "
        "fine). The amount is the window's price under the lot's tariff (no grace "
        "period), frozen and recorded as a payment with method `reservation`. Give "
        "`expected_amount` (the price the driver saw): if the price differs the answer "
        'is 409 `{"error": "Price changed", "amount": ...}` and nothing is booked.'
    ),
)
def create_reservation(body: schemas.ReservationCreate):
    at = now()
    start, end = body.start, body.end
    if start < at - PAST_TOLERANCE:
        raise ApiError(400, "start must not be in the past")
    vehicle = run(OWNED_VEHICLE, {"vehicle": body.vehicle_id, "owner": current_user.id}).first()
    if vehicle is None:
        raise ApiError(400, "Vehicle not found")
    lot = active_lot(body.lot_id, lock=True)  # bookings at a lot run one at a time
    if end - start > timedelta(days=lot.reservation_max_days):
        raise ApiError(400, f"A reservation lasts at most {lot.reservation_max_days} days")
    if start > at + timedelta(days=lot.reservation_horizon_days):
        raise ApiError(400, f"start must be at most {lot.reservation_horizon_days} days ahead")
    amount = price(lot, start, end)
    if body.expected_amount is not None and body.expected_amount != amount:
        raise ApiError(409, "Price changed", extra={"amount": amount})
    expire_overdue(at, lot_id=lot.id)
    expire_overdue(at, vehicle=(vehicle.id, start))
    vehicle_busy = exists().where(
        Reservation.vehicle_id == vehicle.id,
        Reservation.status.in_(ACTIVE_RESERVATION),
        overlaps(start, end),
    )
    if db.session.scalar(select(vehicle_busy)):
        raise ApiError(409, VEHICLE_BUSY)
    held = exists().where(
        Reservation.spot_id == ParkingSpot.id,
        Reservation.status.in_(ACTIVE_RESERVATION),
        overlaps(start, end),
    )
    spot = db.session.execute(
        select(ParkingSpot.id)
        .where(ParkingSpot.id.in_(reservable_spots(lot.id, body.kind)), ~held)
        .order_by(ParkingSpot.id)
        .limit(1)
    ).first()
    if spot is None:
        raise ApiError(409, NO_SPOTS)
    reservation = Reservation(
        lot_id=lot.id,
        spot_id=spot.id,
        vehicle_id=vehicle.id,
        user_id=current_user.id,
        plate_key=vehicle.plate_key,
        kind=body.kind,
        start_at=start,
        end_at=end,
        status="confirmed",
        amount=amount,
        currency=lot.currency,
        **tariff_to_dict(lot),
        exit_grace_minutes=lot.exit_grace_minutes,
        early_minutes=lot.early_minutes,
        cancel_free_until=start - timedelta(minutes=lot.cancel_free_minutes),
        late_cancel_fee=amount if lot.late_cancel_fee is None else min(lot.late_cancel_fee, amount),
        no_show_at=start + timedelta(minutes=lot.no_show_minutes),
        created_at=at,
        created_day=local_day(at, lot.timezone),
        start_day=local_day(start, lot.timezone),
    )
    db.session.add(reservation)
    try:
        db.session.flush()
    except IntegrityError:  # the exclusion constraints: a racing booking of the vehicle won
        db.session.rollback()
        raise ApiError(409, VEHICLE_BUSY) from None
    if amount:
        db.session.add(
            Payment(
                reservation_id=reservation.id,
                lot_id=lot.id,
                amount=amount,
                currency=lot.currency,
                method="reservation",
                actor_type="user",
                actor_id=current_user.id,
                created_at=at,
            )
        )
        db.session.flush()
    answer = read_one(reservation.id)
    events.emit("reservation.created", answer)
    db.session.commit()
    return answer, 201


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


@api.route("/reservations", methods=["GET"])
@endpoint(
    tag="Reservations",
    summary="List your reservations (admins: everyone's with all=true), latest window first",
    auth=USER,
    query=schemas.ReservationList,
    response=list[schemas.Reservation],
    paginated=True,
    errors={403: "Admin privileges required (all=true)"},
)
def list_reservations(query: schemas.ReservationList):
    where = []
    if query.all:
        if not current_user.is_admin:
            raise ApiError(403, "Admin privileges required")
    else:
        where.append(Reservation.user_id == current_user.id)
    at = now()
    if query.status == "no_show":
        where.append(
            or_(
                Reservation.status == "no_show",
                and_(Reservation.status == "confirmed", Reservation.no_show_at <= at),
            )
        )
    elif query.status == "confirmed":
        where.append(and_(Reservation.status == "confirmed", Reservation.no_show_at > at))
    elif query.status is not None:
        where.append(Reservation.status == query.status)
    if query.lot_id is not None:
        where.append(Reservation.lot_id == query.lot_id)
    if query.from_ is not None:
        where.append(Reservation.end_at > query.from_)
    if query.to is not None:
        where.append(Reservation.start_at < query.to)
    rows, headers = paginate(
        reservations_query().where(*where),
        Reservation.start_at.desc(),
        Reservation.id.desc(),
        pages=query,
        count_of=select(Reservation.id).where(*where),
    )
    return jsonify([reservation_dict(row, at) for row in rows]), 200, headers


def own_or_admin(reservation_id: int) -> Reservation:
    reservation = db.session.get(Reservation, reservation_id)
    if reservation is None or (
        reservation.user_id != current_user.id and not current_user.is_admin
    ):
        raise ApiError(404, NOT_FOUND)
    return reservation


@api.route("/reservations/<int:reservation_id>", methods=["GET"])
@endpoint(
    tag="Reservations",
    summary="One reservation (its driver or an admin)",
    auth=USER,
    response=schemas.Reservation,
    errors={404: NOT_FOUND},
)
def get_reservation(reservation_id):
    own_or_admin(reservation_id)
    return read_one(reservation_id)


# ---------------------------------------------------------------------------
# Cancelling
# ---------------------------------------------------------------------------


@api.route("/reservations/<int:reservation_id>/cancel", methods=["POST"])
@endpoint(
    tag="Reservations",
    summary="Cancel a reservation before its window starts (its driver or an admin)",
    auth=USER,
    response=schemas.ReservationCancelled,
    errors={
        404: NOT_FOUND,
        409: "Reservation already started, or Reservation is cancelled (completed, a no-show, "
        "already checked in)",
    },
    description=(
        "Before `cancel_free_until` (start minus the lot's cancel_free_minutes) the whole "
        "amount is refunded; later, `late_cancel_fee` is kept and the rest refunded. "
        "The answer's `refund` states it; it is recorded as a negative payment."
    ),
)
def cancel_reservation(reservation_id):
    reservation = own_or_admin(reservation_id)
    lock_row(ParkingLot.__table__, reservation.lot_id)  # the lot's bookings wait for us
    reservation = db.session.get(Reservation, reservation_id, populate_existing=True)
    at = now()
    status = shown_status(reservation, at)
    if status == "confirmed" and at >= reservation.start_at:
        raise ApiError(409, "Reservation already started")
    if status != "confirmed":
        raise ApiError(409, STATUS_TEXT[status])
    if at < reservation.cancel_free_until:
        refund = reservation.amount
    else:
        refund = reservation.amount - reservation.late_cancel_fee
    zone = db.session.scalar(select(ParkingLot.timezone).where(ParkingLot.id == reservation.lot_id))
    reservation.status = "cancelled"
    reservation.cancelled_at = at
    reservation.cancelled_day = local_day(at, zone)
    reservation.refund = refund
    actor = parking.current_actor()
    if refund:
        db.session.add(
            Payment(
                reservation_id=reservation.id,
                lot_id=reservation.lot_id,
                amount=-refund,
                currency=reservation.currency,
                method="reservation",
                reason="Reservation cancelled",
                actor_type=actor.type,
                actor_id=actor.id,
                created_at=at,
            )
        )
    if reservation.user_id != current_user.id:  # an admin cancelling someone's: a staff write
        parking.audit(
            actor,
            "reservation.cancel",
            lot_id=reservation.lot_id,
            amount=-refund,
            detail=f"reservation {reservation.id}",
        )
    db.session.flush()
    answer = read_one(reservation.id)
    events.emit("reservation.cancelled", answer)
    db.session.commit()
    return {"message": "Reservation cancelled", **answer}


# ---------------------------------------------------------------------------
# Checking in (the driver in the app, or the gate by plate)
# ---------------------------------------------------------------------------


def check_in_window(reservation) -> tuple:
    opens = reservation.start_at - timedelta(minutes=reservation.early_minutes)
    return opens, min(reservation.end_at, reservation.no_show_at)


def due_for_check_in(lot, key: str, at) -> Reservation | None:
    """The plate's confirmed reservation at the lot whose check-in window holds
    `at` (its row locked), or None."""
    candidates = db.session.scalars(
        select(Reservation)
        .where(
            Reservation.lot_id == lot.id,
            Reservation.plate_key == key,
            Reservation.status == "confirmed",
            Reservation.no_show_at > at,
            Reservation.end_at > at,
            Reservation.start_at <= at + timedelta(days=1),  # early_minutes is at most a day
        )
        .order_by(Reservation.start_at)
        .with_for_update()
    )
    for reservation in candidates:
        opens, closes = check_in_window(reservation)
        if opens <= at < closes:
            return reservation
    return None


OCCUPY = (
    update(ParkingSpot)
    .where(ParkingSpot.id == bindparam("spot"), ParkingSpot.status == "available")
    .values(status="occupied")
    .returning(ParkingSpot.spot_number)
    .execution_options(synchronize_session=False)
)


def relocate(reservation) -> str:
    """The reserved spot is taken (its previous holder overstayed) or out of
    service: take another free reservable spot of the kind that no other
    reservation holds during this one's window, else any free spot of the
    kind; the reservation moves there. 409 if there is none."""
    held = exists().where(
        Reservation.spot_id == ParkingSpot.id,
        Reservation.id != reservation.id,
        Reservation.status.in_(ACTIVE_RESERVATION),
        overlaps(reservation.start_at, reservation.end_at),
    )
    for reservable in (True, False):
        candidate = (
            select(ParkingSpot.id)
            .where(
                ParkingSpot.lot_id == reservation.lot_id,
                ParkingSpot.kind == reservation.kind,
                ParkingSpot.status == "available",
                ParkingSpot.reservable == reservable,
                ~held,
            )
            .order_by(ParkingSpot.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        picked = run(
            update(ParkingSpot)
            .where(ParkingSpot.id == candidate.scalar_subquery(), ParkingSpot.status == "available")
            .values(status="occupied")
            .returning(ParkingSpot.id, ParkingSpot.spot_number)
            .execution_options(synchronize_session=False)
        ).first()
        if picked is not None:
            reservation.spot_id = picked.id
            return picked.spot_number
    db.session.rollback()
    raise ApiError(409, NO_SPOT_AT_CHECK_IN)


def check_in(reservation, lot, car: parking.Car, at) -> tuple[dict, str]:
    """Open the reserved stay's ticket (the caller holds the lot's row lock
    and commits): on the reserved spot, or where relocate() moves it."""
    expire_overdue(at, lot_id=lot.id)  # no-shows hold no spot a relocation could use
    spot_number = run(OCCUPY, {"spot": reservation.spot_id}).scalar()
    if spot_number is None:
        spot_number = relocate(reservation)
    frozen = SimpleNamespace(
        timezone=lot.timezone,
        currency=reservation.currency,
        exit_grace_minutes=reservation.exit_grace_minutes,
        **tariff_to_dict(reservation),
    )
    spot_id = reservation.spot_id
    ticket = parking.insert_ticket(
        car,
        spot_id,
        lot.id,
        frozen,
        at,
        reserved=reservation,
        spot_number=spot_number,
        lot_name=lot.name,
    )
    reservation.status = "checked_in"
    reservation.checked_in_at = at
    reservation.ticket_id = ticket["id"]
    db.session.flush()
    return ticket, spot_number


@api.route("/reservations/<int:reservation_id>/check-in", methods=["POST"])
@endpoint(
    tag="Reservations",
    summary="Arrive: open the reserved stay's ticket (the reservation's driver)",
    auth=USER,
    response=(schemas.ReservationCheckedIn, 201),
    errors={
        404: NOT_FOUND,
        409: (
            schemas.CheckInWindow,
            "Check-in is allowed from ... until ... (with both times), Vehicle already "
            "parked, No spot available for this reservation, or the reservation is "
            "cancelled, a no-show, completed or already checked in",
        ),
    },
    description=(
        "Allowed from `check_in_from` (start minus the lot's early_minutes) until the "
        "window's end or `no_show_at`, whichever is first. If the reserved spot is still "
        "occupied, another free reservable spot of the kind is used (or any free spot of "
        "the kind), and the reservation moves there."
    ),
)
def check_in_reservation(reservation_id):
    reservation = db.session.get(Reservation, reservation_id)
    if reservation is None or reservation.user_id != current_user.id:
        raise ApiError(404, NOT_FOUND)
    lot = active_lot(reservation.lot_id, lock=True)
    reservation = db.session.get(
        Reservation, reservation_id, with_for_update=True, populate_existing=True
    )
    at = now()
    status = shown_status(reservation, at)
    if status != "confirmed":
        raise ApiError(409, STATUS_TEXT[status])
    opens, closes = check_in_window(reservation)
    if not opens <= at < closes:
        local = parking.local_iso
        raise ApiError(
            409,
            f"Check-in is allowed from {local(opens, lot.timezone)} "
            f"until {local(closes, lot.timezone)}",
            extra={"check_in_from": iso(opens), "check_in_until": iso(closes)},
        )
    plate = db.session.scalar(
        select(Vehicle.plate_number).where(Vehicle.id == reservation.vehicle_id)
    )
    car = parking.Car(reservation.vehicle_id, reservation.user_id, plate, reservation.plate_key)
    if run(parking.CAR_PARKED, {"key": car.plate_key, "vehicle": car.vehicle_id}).scalar():
        raise ApiError(409, "Vehicle already parked")
    ticket, spot_number = check_in(reservation, lot, car, at)
    db.session.commit()
    return {
        "message": "Checked in",
        "reservation": read_one(reservation_id),
        "ticket_id": ticket["id"],
        "spot_id": ticket["spot_id"],
        "spot_number": spot_number,
        "lot": lot.name,
        "lot_id": lot.id,
        "check_in": iso(at),
        "check_in_local": parking.local_iso(at, lot.timezone),
        "currency": ticket["currency"],
        "tariff": tariff_to_dict(SimpleNamespace(**ticket)),
    }, 201
