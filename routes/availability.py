"""The live availability feed: /availability (public, cacheable, any origin).

One query over the lots' counters (kept by the triggers of migrations 0003
and 0007), read from the replica when there is one. Clients poll it: it
answers with an ETag and `Cache-Control: public, max-age=5` (the one JSON
answer that may be cached; app.py's security headers leave it alone), and
`If-None-Match` with the current ETag gets an empty 304.
"""

import hashlib
from functools import wraps

from flask import current_app, request
from sqlalchemy import and_, bindparam, case, exists, func, or_, select

import schemas
from endpoints import endpoint
from models import ParkingLot, ParkingSpot, Reservation
from replica import replica_reads
from routes.common import api, iso, now, run

MAX_AGE_SECONDS = 5
CACHE_CONTROL = f"public, max-age={MAX_AGE_SECONDS}"

# Reservable spots host reservations only (routes/reservations.py): a lot's
# free ones are not free for a walk-in. `available` is what a driver arriving
# without a reservation can get; `reservable_available` the free reservable
# spots no reservation holds now (what can be reserved from now). Each is a
# count over the lot's reservable spots only (ix_parking_spots_reservable).
FREE_RESERVABLE = (
    select(func.count())
    .where(
        ParkingSpot.lot_id == ParkingLot.id,
        ParkingSpot.reservable,
        ParkingSpot.status == "available",
    )
    .correlate(ParkingLot)
)
HELD_NOW = exists().where(
    Reservation.spot_id == ParkingSpot.id,
    Reservation.start_at <= bindparam("now"),
    Reservation.end_at > bindparam("now"),
    or_(
        Reservation.status == "checked_in",
        and_(Reservation.status == "confirmed", Reservation.no_show_at > bindparam("now")),
    ),
)
WALK_IN_AVAILABLE = ParkingLot.spots_available - FREE_RESERVABLE.scalar_subquery()
RESERVABLE_AVAILABLE = FREE_RESERVABLE.where(~HELD_NOW).scalar_subquery()

IN_SERVICE = exists().where(
    ParkingSpot.lot_id == ParkingLot.id, ParkingSpot.status != "out_of_service"
)
FEED = (
    select(
        ParkingLot.id,
        ParkingLot.name,
        ParkingLot.spots_total,
        WALK_IN_AVAILABLE,
        RESERVABLE_AVAILABLE,
        # CLOSED: no spot in service (asked only of lots with no free spot).
        case(
            (WALK_IN_AVAILABLE > 0, "SPACES_AVAILABLE"),
            (IN_SERVICE, "FULL"),
            else_="CLOSED",
        ),
        func.coalesce(ParkingLot.counts_updated_at, ParkingLot.created_at),
    )
    .where(ParkingLot.archived_at.is_(None))
    .order_by(ParkingLot.id)
)
ONE_LOT = FEED.where(ParkingLot.id == bindparam("lot_id"))
KEYS = ("lot_id", "name", "total", "available", "reservable_available", "status", "updated_at")


def conditional(view):
    """Outside @endpoint (whose checks see the 200): an ETag of the body, and
    304 without a body when If-None-Match names it."""

    @wraps(view)
    def wrapper(**kwargs):
        response = current_app.make_response(view(**kwargs))
        if response.status_code != 200:
            return response
        response.set_etag(hashlib.sha256(response.get_data()).hexdigest()[:32])
        response.headers["Cache-Control"] = CACHE_CONTROL
        return response.make_conditional(request)

    return wrapper


@api.route("/availability", methods=["GET"])
@conditional
@endpoint(
    tag="Availability",
    summary="Live availability of every active lot (public; cacheable for 5 s)",
    query=schemas.AvailabilityFeedQuery,
    response=list[schemas.LotAvailability],
    description=(
        "`status` is `SPACES_AVAILABLE` (a free spot), `FULL` (spots in service, none "
        "free) or `CLOSED` (no spot in service). Answers carry an `ETag` and "
        "`Cache-Control: public, max-age=5`; send `If-None-Match` with the ETag to get "
        "`304 Not Modified` while nothing changed. Any origin may read it (CORS). "
        "`lot_id` narrows it to one lot (a sign at its entrance): the whole feed "
        "grows with the number of lots, one lot's does not."
    ),
)
@replica_reads
def availability(query: schemas.AvailabilityFeedQuery):
    if query.lot_id is None:
        rows = run(FEED, {"now": now()}).all()
    else:
        rows = run(ONE_LOT, {"now": now(), "lot_id": query.lot_id}).all()
    return [dict(zip(KEYS, (*row[:-1], iso(row[-1])), strict=True)) for row in rows]
