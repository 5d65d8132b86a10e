"""Tickets: /tickets (book, list), /tickets/<id>, /checkout/<id>.

A ticket is one stay of one car on one spot. Drivers open theirs in the app
(here); the gate opens them by plate (routes/gate.py). Both go through
parking.py, which keeps one open ticket per car and per spot (the partial
unique indexes), freezes the tariff on the ticket and says what a stay owes.
"""

from flask import jsonify
from flask_jwt_extended import current_user
from sqlalchemy import bindparam, exists, func, select

import parking
import schemas
from billing import TARIFF_COLUMNS, tariff_to_dict
from endpoints import USER, endpoint
from models import LotStaff, ParkingLot, ParkingSpot, Payment, Ticket, Vehicle, db
from pagination import paginate
from routes.common import active_lot, api, iso, now, run
from validation import ApiError


def ticket_to_dict(row, at, permits: parking.Permits) -> dict:
    """A ticket (a row of tickets_query()); an open one shows what it owes so far."""
    ticket, plate_number, spot_number, lot_name, timezone = row[:5]
    return parking.ticket_json(
        ticket,
        plate_number=plate_number,
        spot_number=spot_number,
        lot_name=lot_name,
        timezone=timezone,
        due=parking.charge(ticket, at, permits),
        end=ticket.check_out or at,
    )


def tickets_query():
    return (
        select(
            Ticket,
            Vehicle.plate_number,
            ParkingSpot.spot_number,
            ParkingLot.name.label("lot_name"),
            ParkingLot.timezone,
        )
        .join(Vehicle, Ticket.vehicle_id == Vehicle.id)
        .join(ParkingSpot, Ticket.spot_id == ParkingSpot.id)
        .join(ParkingLot, Ticket.lot_id == ParkingLot.id)
    )


def tickets_to_dicts(rows) -> list[dict]:
    """A page of tickets; the permits of its open ones are read in one statement."""
    at = now()
    open_ones = [row[0] for row in rows if row[0].check_out is None]
    start = min((ticket.check_in for ticket in open_ones), default=at)
    permits = parking.Permits((ticket.plate_key for ticket in open_ones), start, at)
    return [ticket_to_dict(row, at, permits) for row in rows]


# Booking runs these statements, built once with bind parameters (building
# them per request cost as much CPU as the writes themselves).
DRIVERS_VEHICLE = (
    Vehicle.id == bindparam("vehicle"),
    Vehicle.user_id == bindparam("owner"),
    Vehicle.deleted_at.is_(None),
)
DRIVERS_PLATE = select(Vehicle.plate_key).where(*DRIVERS_VEHICLE).scalar_subquery()
DRIVERS_PLATE_NUMBER = select(Vehicle.plate_number).where(*DRIVERS_VEHICLE).scalar_subquery()
OWNS_VEHICLE = select(Vehicle.plate_key, Vehicle.plate_number).where(*DRIVERS_VEHICLE)
# The chosen spot, its lot's tariff and the driver's vehicle's plate, in one
# read that takes the lot's row lock first (see "Lock order" in routes/).
BOOKABLE_SPOT = (
    select(
        ParkingSpot.spot_number,
        ParkingSpot.status,
        ParkingSpot.reservable,
        ParkingLot.id.label("lot_id"),
        ParkingLot.name.label("lot_name"),
        ParkingLot.currency,
        ParkingLot.timezone,
        ParkingLot.exit_grace_minutes,
        *(getattr(ParkingLot, name) for name in TARIFF_COLUMNS),
        DRIVERS_PLATE.label("plate_key"),
        DRIVERS_PLATE_NUMBER.label("plate_number"),
    )
    .join(ParkingLot, ParkingSpot.lot_id == ParkingLot.id)
    .where(ParkingSpot.id == bindparam("spot"), ParkingLot.archived_at.is_(None))
    .with_for_update(of=ParkingLot, key_share=True)
)
CHECKOUT_TICKET = parking.CLOSABLE_TICKET.where(Ticket.id == bindparam("ticket"))


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
        "assigned any free spot of the lot. One open ticket per car: a car that "
        "came in at a gate, or whose plate another account parked, is 409."
    ),
)
def create_ticket(body: schemas.TicketCreate):
    params = {"vehicle": body.vehicle_id, "owner": current_user.id}
    # The check-in time is read once the lot's row lock is held (below), as
    # checkout reads its time: a booking that waited on the lock for a
    # checkout of the same spot otherwise started before that stay ended
    # (make bench's storm found overlapping stays on a spot).
    if body.parking_spot_id is not None:
        # The seed checks the spot before the vehicle; keep its order of errors.
        spot = run(BOOKABLE_SPOT, {**params, "spot": body.parking_spot_id}).first()
        at = now()
        if spot is None or spot.status != "available" or spot.reservable:
            raise ApiError(400, "Spot unavailable")  # reservable spots: reservations only
        if spot.plate_key is None:
            raise ApiError(400, "Vehicle not found")
        car = parking.Car(body.vehicle_id, current_user.id, spot.plate_number, spot.plate_key)
        # A parked car is not checked up front: its second ticket fails on the
        # unique index, which rolls the spot back and answers 409.
        parking.take_spot(body.parking_spot_id)
        spot_number, lot_name = spot.spot_number, spot.lot_name
        ticket = parking.insert_ticket(
            car,
            body.parking_spot_id,
            spot.lot_id,
            spot,
            at,
            spot_number=spot_number,
            lot_name=lot_name,
        )
    else:
        owned = run(OWNS_VEHICLE, params).first()
        if owned is None:
            raise ApiError(400, "Vehicle not found")
        key = owned.plate_key
        car = parking.Car(body.vehicle_id, current_user.id, owned.plate_number, key)
        # Checked first here, so a parked driver at a full lot hears why.
        if run(parking.CAR_PARKED, {"key": key, "vehicle": body.vehicle_id}).scalar():
            raise ApiError(409, "Vehicle already parked")
        lot = active_lot(body.lot_id, lock=True)
        at = now()
        spot_id, spot_number = parking.pick_spot(lot.id, body.kind)
        lot_name = lot.name
        ticket = parking.insert_ticket(
            car, spot_id, lot.id, lot, at, spot_number=spot_number, lot_name=lot_name
        )
    db.session.commit()
    return {
        "message": "Spot booked",
        "ticket_id": ticket["id"],
        "spot_id": ticket["spot_id"],
        "spot_number": spot_number,
        "lot": lot_name,
        "lot_id": ticket["lot_id"],
        "check_in": iso(ticket["check_in"]),
        "currency": ticket["currency"],
        "tariff": tariff_to_dict(spot if body.parking_spot_id is not None else lot),
    }, 201


@api.route("/tickets", methods=["GET"])
@endpoint(
    tag="Tickets",
    summary="List the caller's tickets, newest first",
    auth=USER,
    query=schemas.TicketList,
    response=list[schemas.Ticket],
    paginated=True,
    errors={403: "Admin privileges required (all=true)"},
)
def list_tickets(query: schemas.TicketList):
    where = []
    if query.all:
        if not current_user.is_admin:
            raise ApiError(403, "Admin privileges required")
    else:
        where.append(Ticket.user_id == current_user.id)
    if query.active is not None:
        where.append(Ticket.check_out.is_(None) if query.active else Ticket.check_out.is_not(None))
    if query.lot_id is not None:
        where.append(Ticket.lot_id == query.lot_id)
    rows, headers = paginate(
        tickets_query().where(*where),
        Ticket.check_in.desc(),
        Ticket.id.desc(),
        pages=query,
        # Everyone's: the lots' counters. A driver's: their tickets alone (the
        # joins follow non-null foreign keys), at most COUNT_CAP of them.
        total=everyones_total(query) if query.all else None,
        count_of=select(Ticket.id).where(*where),
    )
    return jsonify(tickets_to_dicts(rows)), 200, headers


def everyones_total(query: schemas.TicketList):
    """The total of an admin's list, from the per-lot counters the database
    keeps (migration 0009): a sum over lots, not a count over the history.
    A driver's own list is counted (at most COUNT_CAP rows, on its index)."""
    open_ = ParkingLot.tickets_open
    counted = {True: open_, False: ParkingLot.tickets_total - open_, None: ParkingLot.tickets_total}
    stmt = select(func.coalesce(func.sum(counted[query.active]), 0))
    if query.lot_id is not None:
        stmt = stmt.where(ParkingLot.id == query.lot_id)
    return lambda: db.session.scalar(stmt)


@api.route("/tickets/<int:ticket_id>", methods=["GET"])
@endpoint(
    tag="Tickets",
    summary="One ticket with its payments (owner, the lot's attendants, admin)",
    auth=USER,
    response=schemas.TicketDetail,
    errors={404: "Ticket not found"},
    description=(
        "An open ticket shows what it owes so far: `amount_due` (the fee up to now, "
        "or up to a payment made while parked, within the lot's exit grace), "
        "`amount_paid` and `balance`."
    ),
)
def get_ticket(ticket_id):
    attendant_here = exists().where(
        LotStaff.lot_id == Ticket.lot_id, LotStaff.user_id == current_user.id
    )
    row = db.session.execute(
        tickets_query().add_columns(attendant_here.label("attendant")).where(Ticket.id == ticket_id)
    ).first()
    allowed = row is not None and (
        row.Ticket.user_id == current_user.id
        or current_user.is_admin
        or (current_user.role == "attendant" and row.attendant)
    )
    if not allowed:
        raise ApiError(404, "Ticket not found")
    ticket = tickets_to_dicts([row])[0]
    payments = db.session.scalars(
        select(Payment).where(Payment.ticket_id == ticket_id).order_by(Payment.id)
    )
    return {
        **ticket,
        "paid_until": iso(row.Ticket.paid_until),
        "payments": [parking.payment_dict(payment) for payment in payments],
    }


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
    description=(
        "Closes the ticket whatever it owes (the seed's contract): what it leaves "
        "unpaid is the ticket's `balance`, which the gate asks for at the exit."
    ),
)
def checkout(ticket_id):
    """Close a ticket: owner or admin, once (its row lock and the conditional
    UPDATE decide between racing checkouts and gate exits)."""
    invalid = "Invalid ticket or already checked out"
    ticket = run(CHECKOUT_TICKET, {"ticket": ticket_id}).first()
    if ticket is None:
        raise ApiError(400, invalid)
    if ticket.user_id != current_user.id and not current_user.is_admin:
        raise ApiError(403, "You can only check out your own tickets")
    if ticket.check_out is not None:
        raise ApiError(400, invalid)
    check_out = now()
    due = parking.close_ticket(ticket, check_out)
    if due is None:
        db.session.rollback()
        raise ApiError(400, invalid)
    if ticket.user_id != current_user.id:  # an admin closing someone's ticket: staff write
        parking.audit(
            parking.current_actor(), "checkout", lot_id=ticket.lot_id, ticket_id=ticket.id
        )
    db.session.commit()
    return parking.receipt(ticket, due, check_out)
