"""The gate: who acts at a lot, cars by plate, what a stay owes, payments.

Views in routes/ call these; they run in the request's transaction and
never commit, except where a docstring says so.

Who: an `Actor` is the user of a bearer token or a gate device (a credential
scoped to one lot, `Authorization: Device <key>`). Admins act everywhere,
attendants at the lots they are assigned to, devices at their own lot;
everyone else hears 403 "Not assigned to this lot". Every write by staff or a
device, and every enforcement check, is written to the audit log in the same
transaction.

Cars: plates are matched on `models.plate_key`. A plate registered by exactly
one account is that driver's car; any other plate (no account, or several
claiming it) is an unowned vehicle record, one per plate.

Money: what a stay owes is billing.stay_charge() over the ticket's frozen
tariff, with the fee fixed by a payment while parked (paid_until, then
exit_grace_minutes to leave) and the part a permit covered free. The balance
is what it owes minus tickets.amount_paid, which a trigger keeps equal to the
sum of the ticket's payments. Payments lock the ticket row first, so
concurrent payments see each other and never pay more than the balance.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from flask import current_app, g
from flask_jwt_extended import current_user
from sqlalchemy import (
    BigInteger,
    Date,
    Integer,
    and_,
    bindparam,
    exists,
    false,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

import events
from billing import TARIFF_COLUMNS, Tariff, reserved_stay_charge, stay_charge, tariff_to_dict
from database import lock_row, run
from models import (
    AuditEntry,
    Device,
    LotStaff,
    ParkingLot,
    ParkingSpot,
    Payment,
    Permit,
    PermitLot,
    PermitPlate,
    Reservation,
    Ticket,
    UTCDateTime,
    Vehicle,
    db,
    local_day,
    plate_key,
    utcnow,
)
from validation import ApiError

NOT_ASSIGNED = "Not assigned to this lot"


def now() -> datetime:
    """The current UTC time; tests set config["CLOCK"] to control it."""
    return (current_app.config.get("CLOCK") or utcnow)()


DEVICE_KEY_PREFIX = "dk_"

# ---------------------------------------------------------------------------
# Who acts
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Actor:
    type: str  # "user" or "device"
    id: int
    name: str
    role: str | None = None  # a user's role
    lot_id: int | None = None  # a device's lot

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def to_dict(self) -> dict:
        return {"type": self.type, "id": self.id, "name": self.name}


def new_device_key() -> str:
    return DEVICE_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


DEVICE_BY_KEY = select(Device.id, Device.name, Device.lot_id, Device.revoked_at).where(
    Device.key_hash == bindparam("key_hash")
)


def authenticate_device(key: str) -> Actor:
    """The device holding `key`, or 401."""
    row = run(DEVICE_BY_KEY, {"key_hash": hash_key(key.strip())}).first()
    if row is None:
        raise ApiError(401, "Invalid device key")
    if row.revoked_at is not None:
        raise ApiError(401, "Device key has been revoked")
    return Actor("device", row.id, row.name, lot_id=row.lot_id)


def current_actor() -> Actor:
    """The device (set by the auth check) or the token's user."""
    device = g.get("device")
    if device is not None:
        return device
    return Actor("user", current_user.id, current_user.username, role=current_user.role)


IS_STAFF = select(
    exists().where(LotStaff.lot_id == bindparam("lot_id"), LotStaff.user_id == bindparam("user_id"))
)


def authorize_lot(actor: Actor, lot_id: int) -> None:
    """403 unless the actor may act at the lot."""
    if actor.type == "device":
        allowed = actor.lot_id == lot_id
    elif actor.is_admin:
        allowed = True
    else:
        allowed = (
            actor.role == "attendant"
            and run(IS_STAFF, {"lot_id": lot_id, "user_id": actor.id}).scalar()
        )
    if not allowed:
        raise ApiError(403, NOT_ASSIGNED)


def audit(
    actor: Actor,
    action: str,
    *,
    lot_id: int | None = None,
    ticket_id: int | None = None,
    amount: int | None = None,
    plate: str | None = None,
    detail: str | None = None,
) -> None:
    """Append to the audit log, in the current transaction."""
    db.session.add(
        AuditEntry(
            at=now(),
            actor_type=actor.type,
            actor_id=actor.id,
            actor_name=actor.name[:64],
            action=action,
            lot_id=lot_id,
            ticket_id=ticket_id,
            amount=amount,
            plate_number=plate,
            detail=detail[:255] if detail else None,
        )
    )


# ---------------------------------------------------------------------------
# Cars by plate
# ---------------------------------------------------------------------------

REGISTERED_OWNERS = (
    select(Vehicle.id, Vehicle.user_id, Vehicle.plate_number)
    .where(
        Vehicle.plate_key == bindparam("key"),
        Vehicle.user_id.is_not(None),
        Vehicle.deleted_at.is_(None),
    )
    .order_by(Vehicle.id)
    .limit(2)
)
UNOWNED_VEHICLE = select(Vehicle.id, Vehicle.plate_number).where(
    Vehicle.plate_key == bindparam("key"), Vehicle.user_id.is_(None)
)


@dataclass(frozen=True, slots=True)
class Car:
    vehicle_id: int
    user_id: int | None
    plate_number: str  # as first registered
    plate_key: str


def car_for_plate(plate_number: str) -> Car:
    """The driver's vehicle if exactly one account registered the plate, else
    the plate's unowned vehicle record (created on first sight)."""
    key = plate_key(plate_number)
    owners = run(REGISTERED_OWNERS, {"key": key}).all()
    if len(owners) == 1:
        vehicle_id, user_id, shown = owners[0]
        return Car(vehicle_id, user_id, shown, key)
    row = run(UNOWNED_VEHICLE, {"key": key}).first()
    if row is None:
        dialect = db.session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        run(
            insert(Vehicle)
            .values(plate_number=plate_number, plate_key=key, user_id=None, created_at=now())
            .on_conflict_do_nothing(
                index_elements=["plate_key"], index_where=Vehicle.user_id.is_(None)
            )
        )
        row = run(UNOWNED_VEHICLE, {"key": key}).first()  # ours, or a racing request's
    return Car(row.id, None, row.plate_number, key)


# ---------------------------------------------------------------------------
# Permits
# ---------------------------------------------------------------------------

PERMITS_OF_PLATES = (
    select(
        PermitPlate.plate_key,
        Permit.id,
        Permit.valid_from,
        Permit.valid_to,
        Permit.all_lots,
        PermitLot.lot_id,
    )
    .join(Permit, PermitPlate.permit_id == Permit.id)
    .outerjoin(PermitLot, PermitLot.permit_id == Permit.id)
    .where(
        PermitPlate.plate_key.in_(bindparam("keys", expanding=True)),
        Permit.valid_to > bindparam("start"),
        Permit.valid_from <= bindparam("end"),
    )
    .order_by(Permit.valid_from, Permit.id)
)


class Permits:
    """The permits of some plates over a time range, read in one statement,
    to answer for each ticket what covered it (lists stay one query)."""

    def __init__(self, keys, start: datetime, end: datetime):
        keys = sorted({key for key in keys if key}) if start < end else []
        self.rows = (
            run(PERMITS_OF_PLATES, {"keys": keys, "start": start, "end": end}).all() if keys else []
        )

    def valid(self, key: str | None, lot_id: int):
        """(id, valid_from, valid_to) of the plate's permits valid at the lot, by start."""
        seen = set()
        for plate, permit_id, valid_from, valid_to, all_lots, permit_lot in self.rows:
            if plate == key and (all_lots or permit_lot == lot_id) and permit_id not in seen:
                seen.add(permit_id)
                yield permit_id, valid_from, valid_to

    def coverage(self, key, lot_id: int, start: datetime) -> tuple[datetime | None, int | None]:
        """Until when the plate's permits cover it at the lot without a break
        from `start` (None: not covered at `start`), and the permit covering `start`."""
        covered, first = start, None
        for permit_id, valid_from, valid_to in self.valid(key, lot_id):
            if valid_from <= covered < valid_to:
                covered, first = valid_to, first or permit_id
        return (covered, first) if first else (None, None)

    def at(self, key, lot_id: int, moment: datetime):
        """(id, valid_from, valid_to) of a permit valid at `moment`, or None."""
        for permit in self.valid(key, lot_id):
            if permit[1] <= moment < permit[2]:
                return permit
        return None


# ---------------------------------------------------------------------------
# What a stay owes
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Charge:
    amount_due: int
    amount_paid: int
    breakdown: list
    until: datetime  # the moment the fee runs to
    permit_id: int | None

    @property
    def balance(self) -> int:
        return max(self.amount_due - self.amount_paid, 0)

    def to_dict(self) -> dict:
        return {
            "amount_due": self.amount_due,
            "amount_paid": self.amount_paid,
            "balance": self.balance,
        }


def charge(ticket, at: datetime, permits: Permits | None = None) -> Charge:
    """What `ticket` (a Ticket or a row with its columns) owes at `at`; a
    closed ticket owes what its checkout fixed. `permits` (read once for a
    page of tickets) saves the statement that reads the plate's permits."""
    if ticket.check_out is not None:
        return Charge(
            ticket.amount_due or 0, ticket.amount_paid, [], ticket.check_out, ticket.permit_id
        )
    if ticket.reserved_until is not None:  # a reserved stay: its permits play no part
        amount, breakdown, until = reserved_stay_charge(
            ticket.check_in,
            at,
            Tariff.of(ticket),
            reserved_from=ticket.reserved_from,
            reserved_until=ticket.reserved_until,
            prepaid=ticket.prepaid or 0,
            paid_until=ticket.paid_until,
            exit_grace_minutes=ticket.exit_grace_minutes,
        )
        return Charge(amount, ticket.amount_paid, breakdown, until, None)
    if permits is None:
        # A row that says no permit ever named its plate after check-in skips the read.
        has_permit = getattr(ticket, "has_permit", True)
        permits = Permits([ticket.plate_key] if has_permit else [], ticket.check_in, at)
    covered_until, permit_id = permits.coverage(ticket.plate_key, ticket.lot_id, ticket.check_in)
    amount, breakdown, until = stay_charge(
        ticket.check_in,
        at,
        Tariff.of(ticket),
        paid_until=ticket.paid_until,
        exit_grace_minutes=ticket.exit_grace_minutes,
        covered_until=covered_until,
    )
    return Charge(amount, ticket.amount_paid, breakdown, until, permit_id)


# ---------------------------------------------------------------------------
# Payments
# ---------------------------------------------------------------------------


def payment_dict(payment: Payment) -> dict:
    return {
        "id": payment.id,
        "ticket_id": payment.ticket_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "method": payment.method,
        "reference": payment.reference,
        "reason": payment.reason,
        "created_at": payment.created_at.isoformat(),
        "actor": {"type": payment.actor_type, "id": payment.actor_id},
    }


def payments_of(ticket_id: int) -> list[Payment]:
    return list(
        db.session.scalars(
            select(Payment).where(Payment.ticket_id == ticket_id).order_by(Payment.id)
        )
    )


def record_payment(
    ticket: Ticket,
    *,
    amount: int,
    method: str,
    reference: str | None,
    reason: str | None,
    actor: Actor,
    at: datetime,
) -> tuple[Payment, bool]:
    """Record a payment (or, negative, a refund) against a ticket whose row
    the caller locked; (payment, created). A repeated reference returns the
    first payment, whatever the balance is now."""
    if reference is not None:
        earlier = db.session.scalar(
            select(Payment).where(
                and_(Payment.ticket_id == ticket.id, Payment.reference == reference)
            )
        )
        if earlier is not None:
            return earlier, False
    due = charge(ticket, at)
    if amount > 0 and amount > due.balance:
        raise ApiError(409, "Payment exceeds the balance", extra={"balance": due.balance})
    if amount < 0 and -amount > ticket.amount_paid:
        raise ApiError(
            409, "Refund exceeds the amount paid", extra={"amount_paid": ticket.amount_paid}
        )
    payment = Payment(
        ticket_id=ticket.id,
        lot_id=ticket.lot_id,
        amount=amount,
        currency=ticket.currency,
        method=method,
        reference=reference,
        reason=reason,
        actor_type=actor.type,
        actor_id=actor.id,
        created_at=at,
    )
    db.session.add(payment)
    if amount > 0 and ticket.check_out is None:
        # Paying while parked fixes the fee up to now (exit_grace_minutes to leave).
        ticket.paid_until = due.until
    action = "refund" if amount < 0 else "payment"
    audit(actor, action, lot_id=ticket.lot_id, ticket_id=ticket.id, amount=amount, detail=method)
    db.session.flush()
    events.emit("payment.recorded", payment_dict(payment))  # the outbox, same transaction
    return payment, True


def lock_ticket(ticket_id: int) -> Ticket | None:
    """The ticket, its row locked for the rest of the transaction (None: no such ticket)."""
    if not lock_row(Ticket.__table__, ticket_id):
        return None
    return db.session.get(Ticket, ticket_id, populate_existing=True)


# ---------------------------------------------------------------------------
# Tickets: opening and closing (the caller holds the lot's row lock and commits)
# ---------------------------------------------------------------------------

INSERT_TICKET = insert(Ticket).returning(Ticket.id)
# One open session per car: by plate, and (for tickets adopted without a
# plate key) by vehicle.
CAR_PARKED = select(
    exists().where(
        or_(Ticket.plate_key == bindparam("key"), Ticket.vehicle_id == bindparam("vehicle")),
        Ticket.check_out.is_(None),
    )
)
OCCUPY_SPOT = (
    update(ParkingSpot)
    .where(ParkingSpot.id == bindparam("spot"), ParkingSpot.status == "available")
    .values(status="occupied")
    .execution_options(synchronize_session=False)
)


def insert_ticket(
    car: Car,
    spot_id: int,
    lot_id: int,
    tariff_source,
    at: datetime,
    reserved=None,
    *,
    spot_number: str,
    lot_name: str,
) -> dict:
    """Insert the ticket of a car on a spot this transaction marked occupied
    (not committed). `tariff_source` (the lot or its row) gives the currency,
    tariff and exit grace frozen on the ticket, and the time zone of its day.
    The partial unique indexes refuse a second open ticket of the spot or the
    car: 409 "Vehicle already parked" or 400 "Spot unavailable", with the
    transaction rolled back."""
    ticket = {
        "vehicle_id": car.vehicle_id,
        "spot_id": spot_id,
        "user_id": car.user_id,
        "lot_id": lot_id,
        "plate_key": car.plate_key,
        "check_in": at,
        "check_in_day": local_day(at, tariff_source.timezone),
        "currency": tariff_source.currency,
        "exit_grace_minutes": tariff_source.exit_grace_minutes,
        **tariff_to_dict(tariff_source),
    }
    if reserved is not None:  # a Reservation being checked in: its window and prepayment
        ticket.update(
            reservation_id=reserved.id,
            reserved_from=reserved.start_at,
            reserved_until=reserved.end_at,
            prepaid=reserved.amount,
        )
    try:
        ticket["id"] = run(INSERT_TICKET, ticket).scalar_one()
    except IntegrityError:
        db.session.rollback()
        if run(CAR_PARKED, {"key": car.plate_key, "vehicle": car.vehicle_id}).scalar():
            raise ApiError(409, "Vehicle already parked") from None
        raise ApiError(400, "Spot unavailable") from None
    # The outbox, same transaction: the ticket as GET /api/tickets shows it,
    # built from what was just written (a new ticket owes nothing yet).
    opened = SimpleNamespace(**{"reservation_id": None, **ticket, "check_out": None})
    events.emit(
        "ticket.opened",
        ticket_json(
            opened,
            plate_number=car.plate_number,
            spot_number=spot_number,
            lot_name=lot_name,
            timezone=tariff_source.timezone,
            due=Charge(0, 0, [], at, None),
            end=at,
        ),
    )
    return ticket


def take_spot(spot_id: int) -> None:
    """Mark a chosen spot occupied, only if it is still available (else 400)."""
    if run(OCCUPY_SPOT, {"spot": spot_id}).rowcount == 0:
        db.session.rollback()
        raise ApiError(400, "Spot unavailable")


def pick_spot(lot_id: int, kind: str | None) -> tuple[int, str]:
    """Take any free spot of the lot (and kind), whose row lock the caller
    holds: (spot id, number), or 409 "No spots available".

    On PostgreSQL the candidate is picked with FOR UPDATE SKIP LOCKED, so a
    spot another transaction is changing is skipped, not waited for; SQLite
    serialises writers, where the clause is dropped."""
    candidate = select(ParkingSpot.id).where(
        ParkingSpot.lot_id == lot_id,
        ParkingSpot.status == "available",
        ParkingSpot.reservable == false(),  # reservable spots host reservations only
    )
    if kind is not None:
        candidate = candidate.where(ParkingSpot.kind == kind)
    candidate = candidate.order_by(ParkingSpot.id).limit(1).with_for_update(skip_locked=True)
    picked = run(
        update(ParkingSpot)
        .where(ParkingSpot.id == candidate.scalar_subquery(), ParkingSpot.status == "available")
        .values(status="occupied")
        .returning(ParkingSpot.id, ParkingSpot.spot_number)
        .execution_options(synchronize_session=False)
    ).first()
    if picked is None:
        db.session.rollback()
        raise ApiError(409, "No spots available")
    return picked.id, picked.spot_number


CLOSE_TICKET = (
    update(Ticket)
    .where(Ticket.id == bindparam("ticket"), Ticket.check_out.is_(None))
    .values(
        check_out=bindparam("closed_at", type_=UTCDateTime()),
        check_out_day=bindparam("closed_on", type_=Date()),
        amount_due=bindparam("amount", type_=BigInteger()),
        duration_minutes=bindparam("minutes", type_=Integer()),
        permit_id=bindparam("permit", type_=Integer()),
    )
    .execution_options(synchronize_session=False)
)
COMPLETE_RESERVATION = (
    update(Reservation)
    .where(Reservation.id == bindparam("reservation"), Reservation.status == "checked_in")
    .values(status="completed")
    .execution_options(synchronize_session=False)
)
FREE_SPOT = (
    update(ParkingSpot)
    .where(ParkingSpot.id == bindparam("spot"), ParkingSpot.status == "occupied")
    .values(status="available")
    .execution_options(synchronize_session=False)
)


def stay_minutes(check_in: datetime, end: datetime) -> int:
    """A stay's length in started minutes: a 2-second stay is 1 minute, as
    its receipt bills it (billing rounds every part up the same way)."""
    return -(-(end - check_in) // timedelta(minutes=1))


def close_ticket(ticket, at: datetime) -> Charge | None:
    """Close an open ticket at `at` (a row of CLOSABLE_TICKET; the caller
    holds the lot's row lock),
    fixing what it owes, and free its spot; None if another request closed it
    first. Not committed."""
    due = charge(ticket, at)
    closed = run(
        CLOSE_TICKET,
        {
            "ticket": ticket.id,
            "closed_at": at,
            "closed_on": local_day(at, ticket.timezone),
            "amount": due.amount_due,
            "minutes": stay_minutes(ticket.check_in, at),
            "permit": due.permit_id,
        },
    )
    if closed.rowcount == 0:
        return None
    run(FREE_SPOT, {"spot": ticket.spot_id})
    if ticket.reservation_id is not None:
        run(COMPLETE_RESERVATION, {"reservation": ticket.reservation_id})
    closed = SimpleNamespace(**{**ticket._mapping, "check_out": at})
    events.emit(  # the outbox, same transaction: the ticket as GET /api/tickets shows it
        "ticket.closed",
        ticket_json(
            closed,
            plate_number=ticket.plate_number,
            spot_number=ticket.spot_number,
            lot_name=ticket.lot_name,
            timezone=ticket.timezone,
            due=due,
            end=at,
        ),
    )
    return due


def local_iso(value: datetime | None, zone: str) -> str | None:
    """A UTC time in the lot's time zone, ISO 8601 with that zone's offset."""
    return value.astimezone(ZoneInfo(zone)).isoformat() if value else None


def ticket_json(
    t, *, plate_number: str, spot_number: str, lot_name: str, timezone: str, due: Charge, end
) -> dict:
    """A ticket as the API shows it (GET /api/tickets, and the ticket events):
    `t` has the ticket's columns, `due` is what it owes at `end` (now, or its
    check-out)."""
    return {
        "id": t.id,
        "vehicle_id": t.vehicle_id,
        "plate_number": plate_number,
        "spot_id": t.spot_id,
        "check_in": t.check_in.isoformat(),
        "check_out": t.check_out.isoformat() if t.check_out else None,
        "check_in_local": local_iso(t.check_in, timezone),
        "check_out_local": local_iso(t.check_out, timezone),
        "status": "open" if t.check_out is None else "closed",
        "user_id": t.user_id,
        "lot_id": t.lot_id,
        "lot": lot_name,
        "spot_number": spot_number,
        "duration_minutes": stay_minutes(t.check_in, end),
        **due.to_dict(),
        "currency": t.currency,
        "tariff": tariff_to_dict(t),
        "reservation_id": t.reservation_id,
    }


def receipt(ticket, due: Charge, check_out: datetime) -> dict:
    """What a checkout or a gate exit answers. `ticket` is a row with the
    ticket's columns plus spot_number, lot_name, timezone and plate_number."""
    return {
        "message": "Checked out",
        "ticket_id": ticket.id,
        "plate_number": ticket.plate_number,
        "check_in": ticket.check_in.isoformat(),
        "check_out": check_out.isoformat(),
        "check_in_local": local_iso(ticket.check_in, ticket.timezone),
        "check_out_local": local_iso(check_out, ticket.timezone),
        "duration_minutes": stay_minutes(ticket.check_in, check_out),
        **due.to_dict(),
        "currency": ticket.currency,
        "lot": ticket.lot_name,
        "lot_id": ticket.lot_id,
        "spot_number": ticket.spot_number,
        "breakdown": due.breakdown,
    }


# The ticket with everything a checkout or an exit needs, its lot's row locked
# first (see "Lock order" in routes/), and the ticket's own row after.
CLOSABLE_TICKET = (
    select(
        Ticket.id,
        Ticket.vehicle_id,
        Ticket.user_id,
        Ticket.spot_id,
        Ticket.lot_id,
        Ticket.plate_key,
        Ticket.check_in,
        Ticket.check_out,
        Ticket.currency,
        *(getattr(Ticket, name) for name in TARIFF_COLUMNS),
        Ticket.exit_grace_minutes,
        Ticket.paid_until,
        Ticket.amount_paid,
        Ticket.amount_due,
        Ticket.permit_id,
        Ticket.reservation_id,
        Ticket.reserved_from,
        Ticket.reserved_until,
        Ticket.prepaid,
        Vehicle.plate_number,
        ParkingSpot.spot_number,
        ParkingLot.name.label("lot_name"),
        ParkingLot.timezone,
    )
    .add_columns(
        exists()
        .where(
            PermitPlate.plate_key == Ticket.plate_key,
            PermitPlate.permit_id == Permit.id,
            Permit.valid_to > Ticket.check_in,
        )
        .label("has_permit")
    )
    .join(Vehicle, Ticket.vehicle_id == Vehicle.id)
    .join(ParkingSpot, Ticket.spot_id == ParkingSpot.id)
    .join(ParkingLot, Ticket.lot_id == ParkingLot.id)
    .with_for_update(of=[ParkingLot, Ticket], key_share=True)
)
