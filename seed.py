"""Demo data: the admin the seed project documents and "Lot A" with spots A1-A10.

For trying the API locally (`make run` runs it) and for CI, never for a real
deployment: the admin's password, `adminpass`, is public. A real deployment
gets its first admin from `flask create-admin`.

Run after `flask db upgrade` (it never creates tables; on an unmigrated
database it says so in one line). Each item is created only when it does not
exist yet, the admin by e-mail and the lot by name, and nothing that exists is
changed: a renamed or deleted spot of Lot A, a changed password or role stay
as they are. It prints what it created and what was already there.
"""

import sys

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from werkzeug.security import generate_password_hash

from app import create_app
from checks import ConfigError, connection_problem, schema_problem
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


def seed_admin() -> str:
    email, username = ADMIN["email"], ADMIN["username"]
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        return f"Already there: user {email} (left as it is; its password may not be adminpass)"
    if db.session.scalar(select(User.id).where(func.lower(User.username) == username)):
        return f"Not created: the demo admin {email} (username {username!r} is another account's)"
    method = current_app.config["PASSWORD_HASH_METHOD"]
    db.session.add(
        User(
            username=username,
            email=email,
            role="admin",
            password_hash=generate_password_hash(ADMIN["password"], method=method),
        )
    )
    return f"Created: admin {email} / {ADMIN['password']} (demo only: the password is public)"


def seed_lot() -> str:
    if db.session.scalar(select(ParkingLot.id).where(ParkingLot.name == LOT["name"])):
        return f"Already there: lot {LOT['name']} (left as it is, spots included)"
    lot = ParkingLot(**LOT, timezone="Africa/Nairobi", currency="KES", **TARIFF)
    db.session.add(lot)
    db.session.flush()
    db.session.add_all(ParkingSpot(lot_id=lot.id, spot_number=n) for n in SPOTS)
    return f"Created: lot {LOT['name']} ({LOT['location']}) with spots {SPOTS[0]}-{SPOTS[-1]}"


def seed() -> list[str]:
    """Create what is missing, in one transaction; one line per item on what happened."""
    report = [seed_admin(), seed_lot()]
    db.session.commit()
    return report


def main() -> None:
    try:
        app = create_app()
    except ConfigError as error:
        sys.exit(str(error))
    with app.app_context():
        try:
            problem = schema_problem(db.session.connection())
        except OperationalError as error:
            sys.exit(connection_problem(error, db.engine.url))
        if problem:
            sys.exit(problem)
        for line in seed():
            print(line)


if __name__ == "__main__":
    main()
