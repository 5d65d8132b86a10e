"""Spots: /spots (the public search), /spots/<id>."""

from functools import cache

from flask import jsonify
from sqlalchemy import (
    bindparam,
    exists,
    func,
    select,
    update,
)

import parking
import schemas
from endpoints import ADMIN, endpoint
from models import (
    ACTIVE_RESERVATION,
    ParkingLot,
    ParkingSpot,
    Reservation,
    db,
)
from pagination import PageQuery, paginate
from replica import replica_reads
from routes.common import active_lot, api, commit_or, now, run
from validation import ApiError

# ===========================================================================
# Spots: /spots, /spots/<id>
# ===========================================================================


def spot_dict(id_, number, status, kind, lot_id, lot_name, reservable) -> dict:
    """A spot's JSON from its values, in spot_search()'s column order."""
    return {
        "id": id_,
        "spot_number": number,
        "status": status,
        "lot": lot_name,
        "lot_id": lot_id,
        "kind": kind,
        "reservable": reservable,
    }


def spot_to_dict(spot: ParkingSpot, lot_name: str) -> dict:
    return spot_dict(
        spot.id, spot.spot_number, spot.status, spot.kind, spot.lot_id, lot_name, spot.reservable
    )


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
            ParkingSpot.reservable,
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


@cache
def spot_counter(by_lot: bool, status: str | None):
    """The search's total from the lots' spot counters (migration 0003), when
    they count what it asks for: all spots, or the available ones; else None
    (the rows are counted, at most COUNT_CAP of them)."""
    if status not in (None, "available"):
        return None
    counted = ParkingLot.spots_available if status == "available" else ParkingLot.spots_total
    stmt = select(func.coalesce(func.sum(counted), 0)).where(ParkingLot.archived_at.is_(None))
    if by_lot:
        stmt = stmt.where(ParkingLot.id == bindparam("lot_id"))
    return stmt


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
    counter = spot_counter("lot_id" in params, query.status) if query.kind is None else None
    total = (lambda: run(counter, params).scalar()) if counter is not None else None
    rows, headers = paginate(search, pages=query, params=params, total=total)
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
    if body.reservable is False and spot.reservable:
        active_lot(spot.lot_id, lock=True)  # bookings of the lot wait, and see the change
        held = select(Reservation.id).where(
            Reservation.spot_id == spot_id,
            Reservation.status.in_(ACTIVE_RESERVATION),
            Reservation.end_at > now(),
        )
        if db.session.scalar(select(exists(held))):
            db.session.rollback()
            raise ApiError(409, "Spot has active reservations")
    if body.reservable is not None:
        spot.reservable = body.reservable
    status = body.status
    changed = ", ".join(sorted(body.model_fields_set))
    parking.audit(
        parking.current_actor(),
        "spot.update",
        lot_id=spot.lot_id,
        detail=f"spot {spot_id}: {changed}",
    )
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
