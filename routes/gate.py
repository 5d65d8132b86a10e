"""The gate: /parking-lots/<id>/entries, /exits, /check, and /tickets/<id>/payments.

Called by the lot's attendants, its gate devices (plate cameras, barriers,
pay stations: `Authorization: Device <key>`) and admins. A car is its plate,
matched on letters and digits (parking.car_for_plate); one open session per
car, across lots and both ways in (the app and the gate), enforced by the
database. Every write and every check is written to the audit log in the
same transaction.

Concurrency, on top of the lock order of routes/: an entry, an exit and a
checkout take the lot's row lock first, so two gates at one lot never give
one spot twice and a car never enters or leaves twice; a payment locks its
ticket's row, so concurrent payments never pay more than the balance.
"""

from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy import and_, bindparam, select

import parking
import schemas
from billing import tariff_to_dict
from endpoints import GATE, endpoint
from models import ParkingSpot, Ticket, Vehicle, db, plate_key
from routes import reservations
from routes.common import active_lot, api, iso, now, run
from validation import ApiError

PAYMENT_REQUIRED = "Payment required"
NO_SESSION = "No open session for this plate"

# A spot of this lot that a walk-in may be given (free, the lot active).
CHOSEN_SPOT = select(ParkingSpot.spot_number, ParkingSpot.status, ParkingSpot.reservable).where(
    ParkingSpot.id == bindparam("spot"), ParkingSpot.lot_id == bindparam("lot")
)


@api.route("/parking-lots/<int:lot_id>/entries", methods=["POST"])
@endpoint(
    tag="Gate",
    summary="A car enters by plate: open its ticket (the lot's attendants, devices, admins)",
    auth=GATE,
    body=schemas.EntryCreate,
    response=(schemas.Entry, 201),
    errors={
        400: "Plate number is required, Spot unavailable, or a field is invalid",
        404: "Parking lot not found",
        409: "Vehicle already parked, No spots available, or No spot available for this "
        "reservation",
    },
    description=(
        "If exactly one account registered the plate (matched on letters and digits), "
        "the ticket is that driver's; otherwise it belongs to the plate's unowned "
        "vehicle record. One open session per car: a camera that fires twice, or a "
        "driver who also booked in the app, is 409 `Vehicle already parked`. A plate "
        "with a confirmed reservation here, inside its check-in window, is checked in "
        "to it (`reservation_id`): the reserved spot, or another if it is taken."
    ),
)
def create_entry(lot_id, body: schemas.EntryCreate):
    actor = parking.current_actor()
    lot = active_lot(lot_id, lock=True)
    car = parking.car_for_plate(body.plate_number)
    at = now()
    if body.spot_id is not None:
        spot = run(CHOSEN_SPOT, {"spot": body.spot_id, "lot": lot_id}).first()
        if spot is None or spot.status != "available" or spot.reservable:
            raise ApiError(400, "Spot unavailable")
        parking.take_spot(body.spot_id)
        spot_id, spot_number = body.spot_id, spot.spot_number
    else:
        if run(parking.CAR_PARKED, {"key": car.plate_key, "vehicle": car.vehicle_id}).scalar():
            raise ApiError(409, "Vehicle already parked")  # before "No spots available"
        reserved = reservations.due_for_check_in(lot, car.plate_key, at)
        if reserved is not None:  # the plate's reservation here: check it in, as its driver's
            car = parking.Car(
                reserved.vehicle_id, reserved.user_id, car.plate_number, car.plate_key
            )
            ticket, spot_number = reservations.check_in(reserved, lot, car, at)
            parking.audit(
                actor, "entry", lot_id=lot_id, ticket_id=ticket["id"], plate=car.plate_number
            )
            db.session.commit()
            return entry_answer(ticket, car, lot, spot_number, at), 201
        spot_id, spot_number = parking.pick_spot(lot_id, body.kind)
    ticket = parking.insert_ticket(
        car, spot_id, lot_id, lot, at, spot_number=spot_number, lot_name=lot.name
    )
    parking.audit(actor, "entry", lot_id=lot_id, ticket_id=ticket["id"], plate=car.plate_number)
    db.session.commit()
    return entry_answer(ticket, car, lot, spot_number, at), 201


def entry_answer(ticket: dict, car: parking.Car, lot, spot_number: str, at) -> dict:
    return {
        "message": "Vehicle entered",
        "ticket_id": ticket["id"],
        "plate_number": car.plate_number,
        "vehicle_id": car.vehicle_id,
        "user_id": car.user_id,
        "spot_id": ticket["spot_id"],
        "spot_number": spot_number,
        "lot_id": lot.id,
        "lot": lot.name,
        "check_in": iso(at),
        "check_in_local": parking.local_iso(at, lot.timezone),
        "currency": ticket["currency"],
        "tariff": tariff_to_dict(SimpleNamespace(**ticket)),
        "reservation_id": ticket.get("reservation_id"),
    }


# The plate's latest ticket at this lot, its lot and ticket rows locked
# (ix_tickets_lot_plate_key_check_in: one index probe, however long the history).
LATEST_TICKET = (
    parking.CLOSABLE_TICKET.where(
        Ticket.lot_id == bindparam("lot"), Ticket.plate_key == bindparam("key")
    )
    .order_by(Ticket.check_in.desc())
    .limit(1)
)
# The lot's open sessions (ix_tickets_open_lot), for plates a camera misread.
OPEN_SESSIONS = (
    select(
        Ticket.id, Ticket.plate_key, Vehicle.plate_number, ParkingSpot.spot_number, Ticket.check_in
    )
    .join(Vehicle, Ticket.vehicle_id == Vehicle.id)
    .join(ParkingSpot, Ticket.spot_id == ParkingSpot.id)
    .where(Ticket.lot_id == bindparam("lot"), Ticket.check_out.is_(None))
)


def one_edit_apart(a: str, b: str) -> bool:
    """True when b is a with exactly one character replaced, added or removed."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long = sorted((a, b), key=len)
    i = next((i for i, (x, y) in enumerate(zip(short, long, strict=False)) if x != y), len(short))
    return short[i:] == long[i + 1 :]


def payment_required(ticket, due: parking.Charge) -> ApiError:
    return ApiError(
        402,
        PAYMENT_REQUIRED,
        extra={"ticket_id": ticket.id, **due.to_dict(), "currency": ticket.currency},
    )


@api.route("/parking-lots/<int:lot_id>/exits", methods=["POST"])
@endpoint(
    tag="Gate",
    summary="A car leaves by plate: open the gate if nothing is owed",
    auth=GATE,
    body=schemas.ExitCreate,
    response=schemas.ExitReceipt,
    errors={
        402: (schemas.PaymentRequired, "Payment required: the session stays open"),
        404: (schemas.NoSession, "No open session for this plate, with `candidates`"),
    },
    description=(
        "With a zero balance (paid, within the grace period, or covered by a permit) "
        'the ticket is closed and the answer is its receipt with `"gate": "open"`. '
        "A plate whose session here was closed (in the app, say) within the lot's "
        "`exit_grace_minutes` leaves the same way. Otherwise 402 with the balance."
    ),
)
def create_exit(lot_id, body: schemas.ExitCreate):
    actor = parking.current_actor()
    key = plate_key(body.plate_number)
    at = now()
    ticket = run(LATEST_TICKET, {"lot": lot_id, "key": key}).first()
    if ticket is not None and ticket.check_out is None:
        due = parking.charge(ticket, at)
        if due.balance > 0:
            raise payment_required(ticket, due)
        closed = parking.close_ticket(ticket, at)
        if closed is not None:
            parking.audit(
                actor, "exit", lot_id=lot_id, ticket_id=ticket.id, plate=ticket.plate_number
            )
            db.session.commit()
            return {**parking.receipt(ticket, closed, at), "gate": "open"}
        db.session.rollback()  # closed meanwhile: it leaves as a recently closed session
        ticket = run(LATEST_TICKET, {"lot": lot_id, "key": key}).first()
    if ticket is not None and ticket.check_out >= at - timedelta(minutes=ticket.exit_grace_minutes):
        due = parking.charge(ticket, at)
        if due.balance > 0:
            raise payment_required(ticket, due)
        parking.audit(actor, "exit", lot_id=lot_id, ticket_id=ticket.id, plate=ticket.plate_number)
        db.session.commit()
        return {**parking.receipt(ticket, due, ticket.check_out), "gate": "open"}
    candidates = [
        {
            "ticket_id": row.id,
            "plate_number": row.plate_number,
            "spot_number": row.spot_number,
            "check_in": iso(row.check_in),
        }
        for row in run(OPEN_SESSIONS, {"lot": lot_id})
        if row.plate_key and one_edit_apart(key, row.plate_key)
    ]
    raise ApiError(404, NO_SESSION, extra={"candidates": candidates})


@api.route("/tickets/<int:ticket_id>/payments", methods=["POST"])
@endpoint(
    tag="Gate",
    summary="Record a payment or (admins) a refund against a ticket",
    auth=GATE,
    body=schemas.PaymentCreate,
    response=(schemas.PaymentRecorded, 201),
    also={200: (schemas.PaymentRecorded, "The first payment with this reference (a retry)")},
    errors={
        400: "amount must not be 0, reason is required for a refund, or a field is invalid",
        403: "Not assigned to this lot, Refunds need an admin, or App payments are "
        "recorded by the payment backend",
        404: "Ticket not found",
        409: (
            schemas.PaymentConflict,
            "Payment exceeds the balance (with `balance`), or Refund exceeds the amount "
            "paid (with `amount_paid`)",
        ),
    },
    description=(
        "The API records payments; it moves no money. Paying while parked fixes the "
        "fee up to now; the driver then has the lot's `exit_grace_minutes` to leave. "
        "A repeated `reference` for the ticket is recorded once: the repeat answers "
        "200 with the first payment, even after the ticket is paid. `app` payments "
        "come from the operator's payment backend (an admin or a device)."
    ),
)
def create_payment(ticket_id, body: schemas.PaymentCreate):
    actor = parking.current_actor()
    ticket = parking.lock_ticket(ticket_id)
    if ticket is None:
        raise ApiError(404, "Ticket not found")
    parking.authorize_lot(actor, ticket.lot_id)
    if body.amount < 0:
        if not actor.is_admin:
            raise ApiError(403, "Refunds need an admin")
        if not body.reason:
            raise ApiError(400, "reason is required for a refund")
    if body.method == "app" and actor.type == "user" and not actor.is_admin:
        raise ApiError(403, "App payments are recorded by the payment backend")
    payment, created = parking.record_payment(
        ticket,
        amount=body.amount,
        method=body.method,
        reference=body.reference,
        reason=body.reason,
        actor=actor,
        at=now(),
    )
    db.session.commit()
    db.session.refresh(ticket)  # amount_paid, as the payments trigger left it
    due = parking.charge(ticket, now())
    answer = {**parking.payment_dict(payment), "ticket": due.to_dict()}
    return answer, 201 if created else 200


@api.route("/parking-lots/<int:lot_id>/check", methods=["GET"])
@endpoint(
    tag="Gate",
    summary="Enforcement: may this plate be here now?",
    auth=GATE,
    query=schemas.CheckQuery,
    response=schemas.CheckResult,
    errors={404: "Parking lot not found"},
    description=(
        "`allowed` when the plate has an open session at this lot (`reason: session`) "
        "or a permit valid here and now (`reason: permit`). Every check is written "
        "to the audit log."
    ),
)
def check_plate(lot_id, query: schemas.CheckQuery):
    actor = parking.current_actor()
    lot = active_lot(lot_id)
    key = plate_key(query.plate)
    at = now()
    permits = parking.Permits([key], at, at + timedelta(microseconds=1))
    permit = permits.at(key, lot_id, at)
    result = {
        "plate_number": query.plate,
        "allowed": False,
        "reason": None,
        "ticket_id": None,
        "permit_id": permit[0] if permit else None,
        "since": None,
        "until": None,
        "balance": None,
    }
    session = db.session.scalar(
        select(Ticket).where(
            and_(Ticket.lot_id == lot.id, Ticket.plate_key == key, Ticket.check_out.is_(None))
        )
    )
    if session is not None:
        result.update(
            allowed=True,
            reason="session",
            ticket_id=session.id,
            since=iso(session.check_in),
            balance=parking.charge(session, at).balance,
        )
    elif permit is not None:
        result.update(allowed=True, reason="permit", since=iso(permit[1]), until=iso(permit[2]))
    detail = f"allowed: {result['reason']}" if result["allowed"] else "not allowed"
    parking.audit(
        actor,
        "check",
        lot_id=lot_id,
        ticket_id=result["ticket_id"],
        plate=query.plate,
        detail=detail,
    )
    db.session.commit()
    return result
