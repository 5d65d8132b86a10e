"""Tickets: /tickets (book, list), /tickets/<id>, /checkout/<id>."""

from flask import jsonify
from flask_jwt_extended import (
    current_user,
)
from sqlalchemy import (
    BigInteger,
    Integer,
    bindparam,
    exists,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

import events
import schemas
from billing import Tariff, fee_for
from endpoints import USER, endpoint
from models import (
    ParkingLot,
    ParkingSpot,
    Ticket,
    UTCDateTime,
    Vehicle,
    db,
)
from pagination import paginate
from routes.common import TARIFF_COLUMNS, active_lot, api, iso, now, run, tariff_to_dict
from validation import ApiError

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
        events.emit_ticket("ticket.opened", ticket["id"])
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
    events.emit_ticket("ticket.closed", ticket_id)
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
