"""Vehicles: /vehicles, /vehicles/<id> (a driver's own)."""

from flask import jsonify
from flask_jwt_extended import (
    current_user,
)
from sqlalchemy import (
    exists,
    select,
    update,
)

import schemas
from endpoints import USER, endpoint
from models import (
    Ticket,
    Vehicle,
    db,
)
from pagination import paginate
from routes.common import api, commit_or, now
from validation import ApiError

# ===========================================================================
# Vehicles: /vehicles, /vehicles/<id>
# ===========================================================================


def vehicle_to_dict(vehicle: Vehicle) -> dict:
    return {
        "id": vehicle.id,
        "plate_number": vehicle.plate_number,
        "type": vehicle.type,
        "user_id": vehicle.user_id,
    }


def own_vehicle(vehicle_id: int, message: str = "Vehicle not found") -> Vehicle:
    vehicle = db.session.get(Vehicle, vehicle_id)
    if vehicle is None or vehicle.deleted_at or vehicle.user_id != current_user.id:
        raise ApiError(404, message)
    return vehicle


@api.route("/vehicles", methods=["GET"])
@endpoint(
    tag="Vehicles",
    summary="List the caller's vehicles",
    auth=USER,
    query=schemas.Pagination,
    response=list[schemas.Vehicle],
    paginated=True,
)
def list_vehicles(query: schemas.Pagination):
    stmt = select(Vehicle).where(Vehicle.user_id == current_user.id, Vehicle.deleted_at.is_(None))
    rows, headers = paginate(stmt, Vehicle.id, pages=query)
    return jsonify([vehicle_to_dict(vehicle) for (vehicle,) in rows]), 200, headers


@api.route("/vehicles", methods=["POST"])
@endpoint(
    tag="Vehicles",
    summary="Register a vehicle",
    auth=USER,
    body=schemas.VehicleCreate,
    response=(schemas.Vehicle, 201),
    errors={409: "Vehicle already registered"},
)
def create_vehicle(body: schemas.VehicleCreate):
    vehicle = Vehicle(plate_number=body.plate_number, type=body.type, user_id=current_user.id)
    db.session.add(vehicle)
    commit_or(409, "Vehicle already registered")
    return vehicle_to_dict(vehicle), 201


@api.route("/vehicles/<int:vehicle_id>", methods=["GET"])
@endpoint(
    tag="Vehicles",
    summary="One of the caller's vehicles",
    auth=USER,
    response=schemas.Vehicle,
    errors={404: "Vehicle not found"},
)
def get_vehicle(vehicle_id):
    return vehicle_to_dict(own_vehicle(vehicle_id))


@api.route("/vehicles/<int:vehicle_id>", methods=["PATCH"])
@endpoint(
    tag="Vehicles",
    summary="Edit a vehicle's plate or type",
    auth=USER,
    body=schemas.VehicleUpdate,
    response=schemas.Vehicle,
    errors={404: "Vehicle not found", 409: "Vehicle already registered"},
)
def update_vehicle(vehicle_id, body: schemas.VehicleUpdate):
    vehicle = own_vehicle(vehicle_id)
    for name in body.model_fields_set:  # only the fields sent
        setattr(vehicle, name, getattr(body, name))
    commit_or(409, "Vehicle already registered")
    return vehicle_to_dict(vehicle)


@api.route("/vehicles/<int:vehicle_id>", methods=["DELETE"])
@endpoint(
    tag="Vehicles",
    summary="Delete a vehicle (its ticket history stays)",
    auth=USER,
    response=schemas.VehicleDeleted,
    errors={404: "Vehicle not found", 409: "Vehicle is parked"},
)
def delete_vehicle(vehicle_id):
    """Hide the vehicle from its owner; its tickets and receipts stay."""
    own_vehicle(vehicle_id)
    parked = exists().where(Ticket.vehicle_id == vehicle_id, Ticket.check_out.is_(None))
    result = db.session.execute(
        update(Vehicle)
        .where(Vehicle.id == vehicle_id, Vehicle.deleted_at.is_(None), ~parked)
        .values(deleted_at=now())
    )
    db.session.commit()
    if result.rowcount == 0:
        raise ApiError(409, "Vehicle is parked; check out first")
    return {"message": "Vehicle deleted", "vehicle_id": vehicle_id}
