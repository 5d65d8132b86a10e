"""What the resource modules share: the blueprint, the clock, tariffs, lots.

`active_lot(lot_id, lock=True)` is where the lock order of the package
docstring starts: the lot's row first.
"""

from datetime import datetime

from flask import Blueprint
from sqlalchemy import (
    update,
)
from sqlalchemy.exc import IntegrityError

from billing import TARIFF_COLUMNS, tariff_to_dict
from database import run
from models import (
    ParkingLot,
    db,
)
from parking import now
from validation import ApiError

# Re-exported for the resource modules.
__all__ = ["TARIFF_COLUMNS", "now", "run", "tariff_to_dict"]

api = Blueprint("api", __name__)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def commit_or(status: int, message: str) -> None:
    """Commit; a constraint violation means another request won: answer status."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ApiError(status, message) from None


def active_lot(lot_id: int, lock: bool = False) -> ParkingLot:
    """The lot, unless unknown or archived (404). `lock=True` first takes the
    lot's row lock for the rest of the transaction (see "Lock order" in routes/)."""
    if lock and db.session.get_bind().dialect.name == "sqlite":
        # SQLite locks the whole database for the first write; take it now.
        db.session.execute(
            update(ParkingLot)
            .where(ParkingLot.id == lot_id)
            .values(archived_at=ParkingLot.archived_at)
            .execution_options(synchronize_session=False)
        )
    lot = db.session.get(
        ParkingLot,
        lot_id,
        with_for_update={"key_share": True} if lock else None,
        populate_existing=lock,
    )
    if lot is None or lot.archived_at is not None:
        raise ApiError(404, "Parking lot not found")
    return lot
