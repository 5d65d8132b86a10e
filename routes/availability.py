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
from sqlalchemy import case, exists, func, literal, select

import schemas
from endpoints import endpoint
from models import ParkingLot, ParkingSpot
from replica import replica_reads
from routes.common import api, iso, run

MAX_AGE_SECONDS = 5
CACHE_CONTROL = f"public, max-age={MAX_AGE_SECONDS}"

# Spots that can be reserved arrive with reservations (parking_spots.reservable):
# then this becomes the lot's count of free reservable spots.
RESERVABLE_AVAILABLE = literal(0)

IN_SERVICE = exists().where(
    ParkingSpot.lot_id == ParkingLot.id, ParkingSpot.status != "out_of_service"
)
FEED = (
    select(
        ParkingLot.id,
        ParkingLot.name,
        ParkingLot.spots_total,
        ParkingLot.spots_available,
        RESERVABLE_AVAILABLE,
        # CLOSED: no spot in service (asked only of lots with no free spot).
        case(
            (ParkingLot.spots_available > 0, "SPACES_AVAILABLE"),
            (IN_SERVICE, "FULL"),
            else_="CLOSED",
        ),
        func.coalesce(ParkingLot.counts_updated_at, ParkingLot.created_at),
    )
    .where(ParkingLot.archived_at.is_(None))
    .order_by(ParkingLot.id)
)
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
    response=list[schemas.LotAvailability],
    description=(
        "`status` is `SPACES_AVAILABLE` (a free spot), `FULL` (spots in service, none "
        "free) or `CLOSED` (no spot in service). Answers carry an `ETag` and "
        "`Cache-Control: public, max-age=5`; send `If-None-Match` with the ETag to get "
        "`304 Not Modified` while nothing changed. Any origin may read it (CORS)."
    ),
)
@replica_reads
def availability():
    rows = run(FEED).all()
    return [dict(zip(KEYS, (*row[:-1], iso(row[-1])), strict=True)) for row in rows]
