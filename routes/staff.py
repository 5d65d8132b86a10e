"""Staff and devices (admins): /users, /parking-lots/<id>/staff, /parking-lots/<id>/devices, /audit.

Roles are driver, attendant and admin; an admin changes them here (or
`flask promote EMAIL --role ...`), assigns attendants to lots and issues gate
devices' keys (shown once, stored as a SHA-256). The audit log records every
write by staff or a device; nothing here changes or deletes an entry.
"""

from flask import jsonify
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

import parking
import schemas
from endpoints import ADMIN, endpoint
from models import AuditEntry, Device, LotStaff, User, db
from pagination import paginate
from routes.accounts import user_to_dict
from routes.common import active_lot, api, iso, now
from validation import ApiError


def device_dict(device: Device) -> dict:
    return {
        "id": device.id,
        "name": device.name,
        "lot_id": device.lot_id,
        "created_at": iso(device.created_at),
        "revoked_at": iso(device.revoked_at),
    }


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise ApiError(404, "User not found")
    return user


# ===========================================================================
# Users and roles
# ===========================================================================


@api.route("/users", methods=["GET"])
@endpoint(
    tag="Staff",
    summary="List users, by id; filter by role (admin)",
    auth=ADMIN,
    query=schemas.UserList,
    response=list[schemas.User],
    paginated=True,
)
def list_users(query: schemas.UserList):
    stmt = select(User)
    if query.role is not None:
        stmt = stmt.where(User.role == query.role)
    rows, headers = paginate(stmt, User.id, pages=query)
    return jsonify([user_to_dict(user) for (user,) in rows]), 200, headers


@api.route("/users/<int:user_id>", methods=["PATCH"])
@endpoint(
    tag="Staff",
    summary="Change a user's role (admin)",
    auth=ADMIN,
    body=schemas.UserUpdate,
    response=schemas.User,
    errors={404: "User not found", 409: "Cannot demote the last admin"},
    description="Takes effect at once: roles are read from the database on every request.",
)
def update_user(user_id, body: schemas.UserUpdate):
    # Every admin row is locked first, so two admins demoting each other at
    # once are serialised and the second sees that it would leave none.
    admins = list(db.session.scalars(select(User.id).where(User.role == "admin").with_for_update()))
    user = get_user(user_id)
    if user.role == "admin" and body.role != "admin" and admins == [user.id]:
        raise ApiError(409, "Cannot demote the last admin")
    previous = user.role
    if body.role != previous:
        db.session.execute(update(User).where(User.id == user_id).values(role=body.role))
        parking.audit(
            parking.current_actor(),
            "user.role",
            detail=f"user {user_id}: {previous} -> {body.role}",
        )
    db.session.commit()
    db.session.refresh(user)
    return user_to_dict(user)


# ===========================================================================
# Attendants of a lot
# ===========================================================================


@api.route("/parking-lots/<int:lot_id>/staff", methods=["GET"])
@endpoint(
    tag="Staff",
    summary="The attendants assigned to a lot (admin)",
    auth=ADMIN,
    query=schemas.Pagination,
    response=list[schemas.StaffMember],
    paginated=True,
    errors={404: "Parking lot not found"},
)
def list_staff(lot_id, query: schemas.Pagination):
    active_lot(lot_id)
    stmt = (
        select(User, LotStaff.assigned_at)
        .join(LotStaff, LotStaff.user_id == User.id)
        .where(LotStaff.lot_id == lot_id)
    )
    rows, headers = paginate(stmt, User.id, pages=query)
    staff = [{**user_to_dict(user), "assigned_at": iso(at)} for user, at in rows]
    return jsonify(staff), 200, headers


@api.route("/parking-lots/<int:lot_id>/staff/<int:user_id>", methods=["PUT"])
@endpoint(
    tag="Staff",
    summary="Assign an attendant to a lot; assigning twice is harmless (admin)",
    auth=ADMIN,
    response=schemas.StaffAssigned,
    errors={
        404: "Parking lot not found, or User not found",
        409: "Only attendants can be assigned to a lot",
    },
)
def assign_staff(lot_id, user_id):
    active_lot(lot_id)
    user = get_user(user_id)
    if user.role != "attendant":
        raise ApiError(409, "Only attendants can be assigned to a lot")
    insert = (
        postgresql_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    )
    created = db.session.execute(
        insert(LotStaff)
        .values(lot_id=lot_id, user_id=user_id, assigned_at=now())
        .on_conflict_do_nothing(index_elements=["lot_id", "user_id"])
    ).rowcount
    if created:
        parking.audit(
            parking.current_actor(), "staff.assign", lot_id=lot_id, detail=f"user {user_id}"
        )
    db.session.commit()
    return {"message": "Attendant assigned", "lot_id": lot_id, "user_id": user_id}


@api.route("/parking-lots/<int:lot_id>/staff/<int:user_id>", methods=["DELETE"])
@endpoint(
    tag="Staff",
    summary="Unassign an attendant from a lot (admin)",
    auth=ADMIN,
    response=schemas.StaffAssigned,
    errors={404: "Parking lot not found, or Attendant not assigned to this lot"},
)
def unassign_staff(lot_id, user_id):
    active_lot(lot_id)
    removed = db.session.execute(
        delete(LotStaff).where(LotStaff.lot_id == lot_id, LotStaff.user_id == user_id)
    ).rowcount
    if not removed:
        raise ApiError(404, "Attendant not assigned to this lot")
    parking.audit(
        parking.current_actor(), "staff.unassign", lot_id=lot_id, detail=f"user {user_id}"
    )
    db.session.commit()
    return {"message": "Attendant unassigned", "lot_id": lot_id, "user_id": user_id}


# ===========================================================================
# Gate devices
# ===========================================================================


@api.route("/parking-lots/<int:lot_id>/devices", methods=["POST"])
@endpoint(
    tag="Staff",
    summary="Issue a gate device's key, shown once (admin)",
    auth=ADMIN,
    body=schemas.DeviceCreate,
    response=(schemas.DeviceCreated, 201),
    errors={404: "Parking lot not found"},
    description=(
        "A device (barrier controller, plate camera, pay station) sends "
        "`Authorization: Device <key>` and may call only the entries, exits, payments "
        "and checks of its own lot. Only a hash of the key is stored."
    ),
)
def create_device(lot_id, body: schemas.DeviceCreate):
    active_lot(lot_id)
    key = parking.new_device_key()
    device = Device(lot_id=lot_id, name=body.name, key_hash=parking.hash_key(key), created_at=now())
    db.session.add(device)
    db.session.flush()
    parking.audit(
        parking.current_actor(), "device.create", lot_id=lot_id, detail=f"device {device.id}"
    )
    db.session.commit()
    return {**device_dict(device), "key": key}, 201


@api.route("/parking-lots/<int:lot_id>/devices", methods=["GET"])
@endpoint(
    tag="Staff",
    summary="A lot's gate devices, never their keys (admin)",
    auth=ADMIN,
    query=schemas.Pagination,
    response=list[schemas.Device],
    paginated=True,
    errors={404: "Parking lot not found"},
)
def list_devices(lot_id, query: schemas.Pagination):
    active_lot(lot_id)
    stmt = select(Device).where(Device.lot_id == lot_id)
    rows, headers = paginate(stmt, Device.id, pages=query)
    return jsonify([device_dict(device) for (device,) in rows]), 200, headers


@api.route("/parking-lots/<int:lot_id>/devices/<int:device_id>", methods=["DELETE"])
@endpoint(
    tag="Staff",
    summary="Revoke a gate device's key: it answers 401 from now on (admin)",
    auth=ADMIN,
    response=schemas.Device,
    errors={404: "Parking lot not found, or Device not found"},
)
def revoke_device(lot_id, device_id):
    device = db.session.get(Device, device_id)
    if device is None or device.lot_id != lot_id:
        raise ApiError(404, "Device not found")
    if device.revoked_at is None:
        device.revoked_at = now()
        parking.audit(
            parking.current_actor(), "device.revoke", lot_id=lot_id, detail=f"device {device_id}"
        )
        db.session.commit()
    return device_dict(device)


# ===========================================================================
# The audit log
# ===========================================================================


def audit_dict(entry: AuditEntry) -> dict:
    return {
        "id": entry.id,
        "at": iso(entry.at),
        "actor": {"type": entry.actor_type, "id": entry.actor_id, "name": entry.actor_name},
        "action": entry.action,
        "lot_id": entry.lot_id,
        "ticket_id": entry.ticket_id,
        "amount": entry.amount,
        "plate_number": entry.plate_number,
        "detail": entry.detail,
    }


@api.route("/audit", methods=["GET"])
@endpoint(
    tag="Staff",
    summary="The audit log, newest first (admin)",
    auth=ADMIN,
    query=schemas.AuditQuery,
    response=list[schemas.AuditEntry],
    paginated=True,
    description=(
        "Every write by staff or a device, and every enforcement check: who (a user or "
        "a device), what, when, which lot, ticket and amount. Append-only: the API has "
        "no way to change or delete an entry."
    ),
)
def list_audit(query: schemas.AuditQuery):
    stmt = select(AuditEntry)
    if query.lot_id is not None:
        stmt = stmt.where(AuditEntry.lot_id == query.lot_id)
    if query.actor is not None:
        actor_type, actor_id = query.actor.split(":")
        stmt = stmt.where(AuditEntry.actor_type == actor_type, AuditEntry.actor_id == int(actor_id))
    if query.from_ is not None:
        stmt = stmt.where(AuditEntry.at >= query.from_)
    if query.to is not None:
        stmt = stmt.where(AuditEntry.at < query.to)
    rows, headers = paginate(stmt, AuditEntry.at.desc(), AuditEntry.id.desc(), pages=query)
    return jsonify([audit_dict(entry) for (entry,) in rows]), 200, headers
