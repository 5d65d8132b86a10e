"""Sample data: the admin account and "Lot A" with spots A1-A10.

Run after `flask db upgrade` (it never creates or drops tables). Idempotent:
running it again changes nothing. The admin's password is the seed project's
documented `adminpass`; change it on any server others can reach.
"""

from flask import current_app
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from app import create_app
from models import ParkingLot, ParkingSpot, User, db

ADMIN = {"username": "admin", "email": "admin@example.com", "password": "adminpass"}
LOT = {"name": "Lot A", "location": "Nairobi CBD"}
# KES 100.00 an hour, billed per started hour, 10 free minutes, KES 800.00 a day at most.
TARIFF = {
    "hourly_rate": 10000,
    "billing_increment_minutes": 60,
    "grace_minutes": 10,
    "daily_max": 80000,
}
SPOTS = [f"A{n}" for n in range(1, 11)]


def seed() -> None:
    admin = db.session.scalar(select(User).where(User.email == ADMIN["email"]))
    if admin is None:
        method = current_app.config["PASSWORD_HASH_METHOD"]
        db.session.add(
            User(
                username=ADMIN["username"],
                email=ADMIN["email"],
                role="admin",
                password_hash=generate_password_hash(ADMIN["password"], method=method),
            )
        )
    elif admin.role != "admin":
        admin.role = "admin"

    lot = db.session.scalar(select(ParkingLot).where(ParkingLot.name == LOT["name"]))
    if lot is None:
        lot = ParkingLot(**LOT, timezone="Africa/Nairobi", currency="KES", **TARIFF)
        db.session.add(lot)
        db.session.flush()
    existing = set(
        db.session.scalars(select(ParkingSpot.spot_number).where(ParkingSpot.lot_id == lot.id))
    )
    db.session.add_all(
        ParkingSpot(lot_id=lot.id, spot_number=n) for n in SPOTS if n not in existing
    )
    db.session.commit()


if __name__ == "__main__":
    with create_app().app_context():
        seed()
        print("Seeded: admin@example.com / adminpass (admin), Lot A with spots A1-A10")
