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
from datetime import datetime

from flask import g
from flask_jwt_extended import current_user
from sqlalchemy import and_, bindparam, exists, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from billing import Tariff, stay_charge
from database import lock_row, run
from models import (
    AuditEntry,
    Device,
    LotStaff,
    Payment,
    Permit,
    PermitLot,
    PermitPlate,
    Ticket,
    Vehicle,
    db,
    plate_key,
    utcnow,
)
from validation import ApiError

NOT_ASSIGNED = "Not assigned to this lot"
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
            at=utcnow(),
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
            .values(plate_number=plate_number, plate_key=key, user_id=None, created_at=utcnow())
            .on_conflict_do_nothing(
                index_elements=["plate_key"], index_where=Vehicle.user_id.is_(None)
            )
        )
        row = run(UNOWNED_VEHICLE, {"key": key}).first()  # ours, or a racing request's
    return Car(row.id, None, row.plate_number, key)


# ---------------------------------------------------------------------------
# Permits
# ---------------------------------------------------------------------------

PERMITS_OF_PLATE = (
    select(Permit.id, Permit.valid_from, Permit.valid_to)
    .join(PermitPlate, PermitPlate.permit_id == Permit.id)
    .where(
        PermitPlate.plate_key == bindparam("key"),
        Permit.valid_to > bindparam("start"),
        Permit.valid_from <= bindparam("end"),
        or_(
            Permit.all_lots,
            exists().where(PermitLot.permit_id == Permit.id, PermitLot.lot_id == bindparam("lot")),
        ),
    )
    .order_by(Permit.valid_from, Permit.id)
)


def permit_coverage(
    key: str | None, lot_id: int, start: datetime, end: datetime
) -> tuple[datetime | None, int | None]:
    """Until when permits valid at this lot cover the plate without a break
    from `start` (None: not covered at `start`), and the permit covering `start`."""
    if not key:
        return None, None
    covered, first = start, None
    for permit_id, valid_from, valid_to in run(
        PERMITS_OF_PLATE, {"key": key, "lot": lot_id, "start": start, "end": end}
    ):
        if valid_from <= covered < valid_to:
            covered, first = valid_to, first or permit_id
    return (covered, first) if first else (None, None)


def permit_now(key: str, lot_id: int, at: datetime) -> tuple[int, datetime, datetime] | None:
    """A permit valid for the plate at this lot at `at`: (id, valid_from, valid_to)."""
    row = run(PERMITS_OF_PLATE, {"key": key, "lot": lot_id, "start": at, "end": at}).first()
    return tuple(row) if row else None


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


def charge(ticket, at: datetime) -> Charge:
    """What `ticket` (a Ticket or a row with its columns) owes at `at`; a
    closed ticket owes what its checkout fixed."""
    if ticket.check_out is not None:
        return Charge(
            ticket.amount_due or 0, ticket.amount_paid, [], ticket.check_out, ticket.permit_id
        )
    covered_until, permit_id = permit_coverage(ticket.plate_key, ticket.lot_id, ticket.check_in, at)
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
    return payment, True


def lock_ticket(ticket_id: int) -> Ticket | None:
    """The ticket, its row locked for the rest of the transaction (None: no such ticket)."""
    if not lock_row(Ticket.__table__, ticket_id):
        return None
    return db.session.get(Ticket, ticket_id, populate_existing=True)
