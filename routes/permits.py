"""Permits (season passes, admins): /permits, /permits/<id>.

A permit lets its plates park without paying at its lots (or, with no
lot_ids, every lot) in [valid_from, valid_to). A stay it covers costs 0; if
it ends during a stay, the rest is billed under the lot's tariff from its end
(parking.charge). Ending a permit keeps it: its history stays.
"""

from flask import jsonify
from sqlalchemy import exists, or_, select

import parking
import schemas
from endpoints import ADMIN, endpoint
from models import ParkingLot, Permit, PermitLot, PermitPlate, db, plate_key
from pagination import paginate
from routes.common import api, iso, now
from validation import ApiError


def permit_dicts(permits: list[Permit]) -> list[dict]:
    """Permits with their plates and lots (two statements for any number)."""
    ids = [permit.id for permit in permits]
    plates: dict[int, list[str]] = {id_: [] for id_ in ids}
    lots: dict[int, list[int]] = {id_: [] for id_ in ids}
    if ids:
        for permit_id, number in db.session.execute(
            select(PermitPlate.permit_id, PermitPlate.plate_number)
            .where(PermitPlate.permit_id.in_(ids))
            .order_by(PermitPlate.permit_id, PermitPlate.plate_number)
        ):
            plates[permit_id].append(number)
        for permit_id, lot_id in db.session.execute(
            select(PermitLot.permit_id, PermitLot.lot_id)
            .where(PermitLot.permit_id.in_(ids))
            .order_by(PermitLot.permit_id, PermitLot.lot_id)
        ):
            lots[permit_id].append(lot_id)
    at = now()
    return [
        {
            "id": permit.id,
            "plate_numbers": plates[permit.id],
            "lot_ids": lots[permit.id],
            "all_lots": permit.all_lots,
            "valid_from": iso(permit.valid_from),
            "valid_to": iso(permit.valid_to),
            "note": permit.note,
            "active": permit.valid_from <= at < permit.valid_to,
            "created_at": iso(permit.created_at),
            "ended_at": iso(permit.ended_at),
        }
        for permit in permits
    ]


@api.route("/permits", methods=["POST"])
@endpoint(
    tag="Permits",
    summary="Issue a permit (season pass) for plates at lots (admin)",
    auth=ADMIN,
    body=schemas.PermitCreate,
    response=(schemas.Permit, 201),
    errors={
        400: "valid_from must carry a UTC offset, valid_to must be after valid_from, "
        "or a field is invalid",
        404: "Parking lot not found",
    },
)
def create_permit(body: schemas.PermitCreate):
    if body.lot_ids:
        known = set(
            db.session.scalars(select(ParkingLot.id).where(ParkingLot.id.in_(body.lot_ids)))
        )
        if known != set(body.lot_ids):
            raise ApiError(404, "Parking lot not found")
    actor = parking.current_actor()
    permit = Permit(
        valid_from=body.valid_from,
        valid_to=body.valid_to,
        all_lots=not body.lot_ids,
        note=body.note,
        created_by=actor.id,
        created_at=now(),
    )
    db.session.add(permit)
    db.session.flush()
    keys = {}
    for number in body.plate_numbers:
        keys.setdefault(plate_key(number), number)  # one plate per key, as first given
    db.session.add_all(
        PermitPlate(permit_id=permit.id, plate_key=key, plate_number=number)
        for key, number in keys.items()
    )
    db.session.add_all(PermitLot(permit_id=permit.id, lot_id=lot_id) for lot_id in body.lot_ids)
    parking.audit(actor, "permit.create", detail=f"permit {permit.id}: {', '.join(keys.values())}")
    db.session.commit()
    return permit_dicts([permit])[0], 201


@api.route("/permits", methods=["GET"])
@endpoint(
    tag="Permits",
    summary="List permits, newest first; filter by plate, lot, active (admin)",
    auth=ADMIN,
    query=schemas.PermitList,
    response=list[schemas.Permit],
    paginated=True,
)
def list_permits(query: schemas.PermitList):
    stmt = select(Permit)
    if query.plate is not None:
        stmt = stmt.where(
            exists().where(
                PermitPlate.permit_id == Permit.id, PermitPlate.plate_key == plate_key(query.plate)
            )
        )
    if query.lot_id is not None:
        stmt = stmt.where(
            or_(
                Permit.all_lots,
                exists().where(PermitLot.permit_id == Permit.id, PermitLot.lot_id == query.lot_id),
            )
        )
    if query.active is not None:
        at = now()
        valid = (Permit.valid_from <= at) & (Permit.valid_to > at)
        stmt = stmt.where(valid if query.active else ~valid)
    rows, headers = paginate(stmt, Permit.id.desc(), pages=query)
    return jsonify(permit_dicts([permit for (permit,) in rows])), 200, headers


@api.route("/permits/<int:permit_id>", methods=["DELETE"])
@endpoint(
    tag="Permits",
    summary="End a permit now; it stays in the list, no longer active (admin)",
    auth=ADMIN,
    response=schemas.Permit,
    errors={404: "Permit not found"},
)
def end_permit(permit_id):
    permit = db.session.get(Permit, permit_id)
    if permit is None:
        raise ApiError(404, "Permit not found")
    at = now()
    if permit.ended_at is None and permit.valid_to > at:
        # One that has not started yet ends where it starts: it never applies.
        permit.valid_to = max(at, permit.valid_from)
        permit.ended_at = at
        parking.audit(parking.current_actor(), "permit.end", detail=f"permit {permit_id}")
        db.session.commit()
    return permit_dicts([permit])[0]
