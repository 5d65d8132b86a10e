"""The database schema: SQLAlchemy 2.0 typed models and nothing else.

Table and column names follow the seed project (`users`, `vehicles`,
`parking_lots`, `parking_spots`, `tickets`) so a database made by its code can
be adopted with `flask db stamp 0001 && flask db upgrade`.

The rules that must hold across workers and servers live here as constraints:
one open ticket per spot and per vehicle (partial unique indexes), unique spot
numbers within a lot, case-insensitive unique usernames and e-mails.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    event,
    false,
    func,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from replica import RoutingSession

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("driver", "attendant", "admin")
SPOT_STATUSES = ("available", "occupied", "out_of_service")
REVOCATION_REASONS = ("logout", "rotated")
# How a payment was made; "reservation" is recorded by the API itself.
PAYMENT_METHODS = ("cash", "card", "app", "reservation")
ACTOR_TYPES = ("user", "device")
SPOT_KINDS = ("standard", "compact", "large", "motorcycle", "ev", "accessible")
RESERVATION_STATUSES = ("confirmed", "checked_in", "completed", "cancelled", "no_show")
# The statuses that hold a spot for a window (the exclusion constraints, 0010).
ACTIVE_RESERVATION = ("confirmed", "checked_in")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# expire_on_commit=False: a view reads what it just wrote without reloading it.
# RoutingSession sends the statements of @replica_reads views to the read replica.
db = SQLAlchemy(
    model_class=Base, session_options={"expire_on_commit": False, "class_": RoutingSession}
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def plate_key(plate: str) -> str:
    """The canonical key a plate is matched on: upper case, letters and digits
    only, so "KCB 123A", "kcb-123a" and "KCB123A" are one car."""
    return "".join(ch for ch in plate.upper() if ch.isalnum())


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so values are
    stored as naive UTC and given their UTC offset back when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role"),
        Index("ux_users_username_lower", func.lower(text("username")), unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    # Stored trimmed and lower-case, so a plain unique constraint is case-insensitive.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default="driver", server_default="driver")
    # Bumped to invalidate every token issued before (password change, token theft).
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )

    vehicles: Mapped[list["Vehicle"]] = relationship(back_populates="owner")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class AuthUser:
    """The user of an authenticated request (`current_user`): read once per
    request from a plain row, with the token check, not as an ORM object.
    A view that changes the user loads its `User` row."""

    id: int
    username: str
    email: str
    role: str
    token_version: int
    created_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _plate_key_default(context) -> str:
    """plate_key of an inserted vehicle that names only its plate_number."""
    return plate_key(context.get_current_parameters()["plate_number"])


class Vehicle(db.Model):
    """A car: a driver's registered vehicle, or (user_id NULL) the record of a
    plate seen at a gate that no single account owns."""

    __tablename__ = "vehicles"
    __table_args__ = (
        # A driver cannot register the same plate twice (deleted vehicles excepted).
        Index(
            "ux_vehicles_owner_plate_key_active",
            "user_id",
            "plate_key",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
        # One unowned record per plate.
        Index(
            "ux_vehicles_unowned_plate_key",
            "plate_key",
            unique=True,
            postgresql_where=text("user_id IS NULL"),
            sqlite_where=text("user_id IS NULL"),
        ),
        Index("ix_vehicles_plate_key", "plate_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The API accepts 16 characters; the column keeps longer plates adopted from the seed.
    # Shown as registered; matched on plate_key (see plate_key()).
    plate_number: Mapped[str] = mapped_column(String(32))
    plate_key: Mapped[str] = mapped_column(String(32), default=_plate_key_default)
    type: Mapped[str | None] = mapped_column(String(32))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )
    # Deleting a vehicle hides it; its tickets and receipts stay.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    owner: Mapped[User | None] = relationship(back_populates="vehicles")

    @validates("plate_number")
    def _keep_plate_key(self, _name, value: str) -> str:
        self.plate_key = plate_key(value)
        return value


class ParkingLot(db.Model):
    __tablename__ = "parking_lots"
    __table_args__ = (
        CheckConstraint("hourly_rate >= 0", name="hourly_rate"),
        CheckConstraint("billing_increment_minutes > 0", name="billing_increment"),
        CheckConstraint("grace_minutes >= 0", name="grace_minutes"),
        CheckConstraint("daily_max IS NULL OR daily_max >= 0", name="daily_max"),
        CheckConstraint("exit_grace_minutes >= 0", name="exit_grace_minutes"),
        # PostgreSQL only (migration 0007): the counters can never leave [0, total].
        CheckConstraint("spots_available >= 0 AND spots_available <= spots_total", name="counts"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    location: Mapped[str] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    currency: Mapped[str] = mapped_column(String(3), default="KES", server_default="KES")
    # Tariff, in the currency's minor unit (see billing.py).
    hourly_rate: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    billing_increment_minutes: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    grace_minutes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    daily_max: Mapped[int | None] = mapped_column(Integer)
    # Minutes a driver has to leave after paying; later, the extra time is owed.
    exit_grace_minutes: Mapped[int] = mapped_column(Integer, default=15, server_default="15")
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )
    # Archived lots leave lists and bookings; their ticket history stays.
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How many spots the lot has, and how many are 'available': kept by
    # triggers on parking_spots (migration 0003) in the same transaction as
    # every spot change. The app reads them and never writes them.
    spots_total: Mapped[int] = mapped_column(Integer, server_default="0")
    spots_available: Mapped[int] = mapped_column(Integer, server_default="0")
    # How many tickets the lot has had, and how many are open: kept by a
    # trigger on tickets (migration 0009), for the ticket list's totals.
    tickets_total: Mapped[int] = mapped_column(Integer, server_default="0")
    tickets_open: Mapped[int] = mapped_column(Integer, server_default="0")
    # When the counters last changed: set by a trigger on parking_lots
    # (migration 0007), which also writes lot.full / lot.available events.
    counts_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)
    # Reservations (migration 0010): the lot's policy, frozen on each reservation.
    reservation_max_days: Mapped[int] = mapped_column(Integer, server_default="30", default=30)
    reservation_horizon_days: Mapped[int] = mapped_column(Integer, server_default="90", default=90)
    cancel_free_minutes: Mapped[int] = mapped_column(Integer, server_default="60", default=60)
    # Charged for a cancellation after cancel_free_until; null: the full amount.
    late_cancel_fee: Mapped[int | None] = mapped_column(BigInteger)
    early_minutes: Mapped[int] = mapped_column(Integer, server_default="15", default=15)
    no_show_minutes: Mapped[int] = mapped_column(Integer, server_default="30", default=30)

    spots: Mapped[list["ParkingSpot"]] = relationship(back_populates="lot")


class ParkingSpot(db.Model):
    __tablename__ = "parking_spots"
    __table_args__ = (
        CheckConstraint(_in("status", SPOT_STATUSES), name="status"),
        CheckConstraint(_in("kind", SPOT_KINDS), name="kind"),
        db.UniqueConstraint("lot_id", "spot_number"),
        # Serves the public search and auto-assignment: lot, then status, then kind.
        Index("ix_parking_spots_lot_status_kind", "lot_id", "status", "kind"),
        # A lot's spots in id order (the search by lot, its keyset pages; 0009).
        Index("ix_parking_spots_lot_id_id", "lot_id", "id"),
        # The search by kind across lots: its pages in id order, and its count
        # read from the index alone (lot_id joins the active lots; 0012).
        Index("ix_parking_spots_kind_id_lot_id", "kind", "id", "lot_id"),
        # A lot's reservable spots by kind (reservations, availability; 0010).
        Index(
            "ix_parking_spots_reservable",
            "lot_id",
            "kind",
            postgresql_where=text("reservable"),
            sqlite_where=text("reservable"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    spot_number: Mapped[str] = mapped_column(String(32))
    # "occupied" is written in the same transaction that opens or closes the
    # spot's ticket, so it always agrees with the open tickets.
    status: Mapped[str] = mapped_column(String(16), default="available", server_default="available")
    kind: Mapped[str] = mapped_column(String(16), default="standard", server_default="standard")
    lot_id: Mapped[int] = mapped_column(ForeignKey("parking_lots.id"))
    # Hosts reservations only: walk-ins (app bookings, auto-assignment, the
    # gate) are never given one.
    reservable: Mapped[bool] = mapped_column(default=False, server_default=false())

    lot: Mapped[ParkingLot] = relationship(back_populates="spots")


class Ticket(db.Model):
    __tablename__ = "tickets"
    __table_args__ = (
        # The guarantees: one open ticket per spot and one per vehicle.
        Index(
            "ux_tickets_open_spot",
            "spot_id",
            unique=True,
            postgresql_where=text("check_out IS NULL"),
            sqlite_where=text("check_out IS NULL"),
        ),
        Index(
            "ux_tickets_open_vehicle",
            "vehicle_id",
            unique=True,
            postgresql_where=text("check_out IS NULL"),
            sqlite_where=text("check_out IS NULL"),
        ),
        # One open session per car (canonical plate), however it came in:
        # an app booking, a gate entry, several accounts with the same plate.
        Index(
            "ux_tickets_open_plate_key",
            "plate_key",
            unique=True,
            postgresql_where=text("check_out IS NULL"),
            sqlite_where=text("check_out IS NULL"),
        ),
        # The gate's lookups: a lot's open sessions, and a plate's recent ones.
        Index(
            "ix_tickets_open_lot",
            "lot_id",
            postgresql_where=text("check_out IS NULL"),
            sqlite_where=text("check_out IS NULL"),
        ),
        Index("ix_tickets_lot_plate_key_check_in", "lot_id", "plate_key", "check_in"),
        # A reservation opens at most one ticket (migration 0010).
        Index("ux_tickets_reservation_id", "reservation_id", unique=True),
        CheckConstraint("amount_paid >= 0", name="amount_paid"),
        # The ticket lists, newest first (check_in DESC, id DESC), read backwards:
        # everyone's, open ones, a driver's, a lot's (migration 0009).
        Index("ix_tickets_check_in_id", "check_in", "id"),
        Index(
            "ix_tickets_open_check_in_id",
            "check_in",
            "id",
            postgresql_where=text("check_out IS NULL"),
            sqlite_where=text("check_out IS NULL"),
        ),
        Index("ix_tickets_user_check_in_id", "user_id", "check_in", "id"),
        # A driver's tickets at one lot (?lot_id=), and its count (migration 0011).
        Index("ix_tickets_user_lot_check_in_id", "user_id", "lot_id", "check_in", "id"),
        Index("ix_tickets_lot_check_in_id", "lot_id", "check_in", "id"),
        # Covers the report's closed-ticket sums (migration 0004): no table visits.
        Index(
            "ix_tickets_lot_check_out_totals",
            "lot_id",
            "check_out",
            "amount_due",
            "duration_minutes",
            "amount_paid",
            "permit_id",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), index=True)
    spot_id: Mapped[int] = mapped_column(ForeignKey("parking_spots.id"), index=True)
    # Denormalised at check-in: the owner, lot and plate never change for a
    # ticket, and lists and reports filter on them without joins. No owner:
    # a car without an account, or whose plate several accounts registered.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    lot_id: Mapped[int] = mapped_column(ForeignKey("parking_lots.id"))
    # Null only for tickets adopted from before plates were matched, whose
    # plate another open ticket already had (migration 0006).
    plate_key: Mapped[str | None] = mapped_column(String(32))
    check_in: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    check_out: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The lot's tariff, frozen at check-in: later price changes never apply.
    currency: Mapped[str] = mapped_column(String(3), default="KES", server_default="KES")
    hourly_rate: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    billing_increment_minutes: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    grace_minutes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    daily_max: Mapped[int | None] = mapped_column(Integer)
    exit_grace_minutes: Mapped[int] = mapped_column(Integer, default=15, server_default="15")
    # The lot's local days of check-in and check-out, which the daily rollups
    # (lot_days) count them on: written with the times (migration 0009).
    check_in_day: Mapped[date | None] = mapped_column(Date)
    check_out_day: Mapped[date | None] = mapped_column(Date)
    # Set at checkout.
    amount_due: Mapped[int | None] = mapped_column(BigInteger)
    duration_minutes: Mapped[int | None] = mapped_column(Integer)
    # The sum of the ticket's payments, kept by a trigger on payments
    # (migration 0006) in the same transaction as each payment.
    amount_paid: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # A payment while parked fixes the fee up to this moment; leaving within
    # exit_grace_minutes after it costs nothing more.
    paid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The permit that covered the stay's start, found at checkout.
    permit_id: Mapped[int | None] = mapped_column(ForeignKey("permits.id"))
    # A reserved stay (migration 0010): the reservation's window and what was
    # paid for it at booking, copied at check-in so billing needs no join.
    reservation_id: Mapped[int | None] = mapped_column(Integer)
    reserved_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reserved_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    prepaid: Mapped[int | None] = mapped_column(BigInteger)

    vehicle: Mapped[Vehicle] = relationship()
    spot: Mapped[ParkingSpot] = relationship()
    lot: Mapped[ParkingLot] = relationship()


class LotStaff(db.Model):
    """An attendant assigned to a lot: may act at that lot only."""

    __tablename__ = "lot_staff"

    lot_id: Mapped[int] = mapped_column(ForeignKey("parking_lots.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Device(db.Model):
    """A gate device (barrier controller, plate camera, pay station): a
    credential scoped to one lot. Only a SHA-256 of its key is stored; keys
    are 256-bit random, so a fast hash is enough and lets one indexed lookup
    find the device."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("parking_lots.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# SQLite autoincrements only an INTEGER primary key; PostgreSQL gets 64 bits.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Payment(db.Model):
    """Money recorded against a ticket (the API records payments; it moves no
    money). Refunds are negative. A repeated (ticket, reference) is one payment.
    A reservation's payment (method "reservation") and its refund belong to
    the reservation (reservation_id; ticket_id null): payments are append-only."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(_in("method", PAYMENT_METHODS), name="method"),
        CheckConstraint("amount <> 0", name="amount"),
        CheckConstraint(_in("actor_type", ACTOR_TYPES), name="actor_type"),
        Index(
            "ux_payments_ticket_reference",
            "ticket_id",
            "reference",
            unique=True,
            postgresql_where=text("reference IS NOT NULL"),
            sqlite_where=text("reference IS NOT NULL"),
        ),
        # The report's revenue by method per day: an index range scan, no table.
        Index("ix_payments_lot_created_method", "lot_id", "created_at", "method", "amount"),
        CheckConstraint(
            "(ticket_id IS NULL) <> (reservation_id IS NULL)", name="ticket_or_reservation"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    reservation_id: Mapped[int | None] = mapped_column(ForeignKey("reservations.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("parking_lots.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(String(255))
    actor_type: Mapped[str] = mapped_column(String(8))
    actor_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The lot's local day of created_at (the report counts the payment on it).
    day: Mapped[date | None] = mapped_column(Date)


class Permit(db.Model):
    """A season pass: plates that may park without paying, at some lots (or
    every lot: all_lots), in [valid_from, valid_to). Ending one sets valid_to."""

    __tablename__ = "permits"
    __table_args__ = (CheckConstraint("valid_to >= valid_from", name="valid_window"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_to: Mapped[datetime] = mapped_column(UTCDateTime)
    all_lots: Mapped[bool] = mapped_column(default=False, server_default=false())
    note: Mapped[str | None] = mapped_column(String(255))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PermitPlate(db.Model):
    __tablename__ = "permit_plates"

    permit_id: Mapped[int] = mapped_column(
        ForeignKey("permits.id", ondelete="CASCADE"), primary_key=True
    )
    plate_key: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    plate_number: Mapped[str] = mapped_column(String(32))


class PermitLot(db.Model):
    __tablename__ = "permit_lots"

    permit_id: Mapped[int] = mapped_column(
        ForeignKey("permits.id", ondelete="CASCADE"), primary_key=True
    )
    lot_id: Mapped[int] = mapped_column(ForeignKey("parking_lots.id"), primary_key=True, index=True)


class AuditEntry(db.Model):
    """Append-only: every write by staff or a device, and every enforcement
    check. The API has no way to change or delete an entry, and on PostgreSQL
    a trigger refuses UPDATE and DELETE (migration 0006)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint(_in("actor_type", ACTOR_TYPES), name="actor_type"),
        # The list's filters, each with the list's order (newest first).
        Index("ix_audit_log_at_id", "at", "id"),
        Index("ix_audit_log_lot_at_id", "lot_id", "at", "id"),
        Index("ix_audit_log_actor_at_id", "actor_type", "actor_id", "at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_type: Mapped[str] = mapped_column(String(8))
    actor_id: Mapped[int] = mapped_column(Integer)
    # The user's name or the device's name at the time.
    actor_name: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    lot_id: Mapped[int | None] = mapped_column(Integer)
    ticket_id: Mapped[int | None] = mapped_column(Integer)
    amount: Mapped[int | None] = mapped_column(BigInteger)
    plate_number: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(255))


class Reservation(db.Model):
    """A reservable spot held for a vehicle over [start_at, end_at), paid at
    booking (a payment with method "reservation").

    No two active reservations of one spot, or of one vehicle, overlap: on
    PostgreSQL two exclusion constraints say so (migration 0010); SQLite,
    which serialises writers, gets the same check in the writing transaction
    (routes/reservations.py). The tariff, the amount and the policy (cancel,
    early check-in, no-show) are frozen at booking. A confirmed reservation
    not checked in by no_show_at is a no-show, whether or not its status says
    so yet (bookings and `flask expire-reservations` write it)."""

    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint(_in("status", RESERVATION_STATUSES), name="status"),
        CheckConstraint(_in("kind", SPOT_KINDS), name="kind"),
        CheckConstraint("end_at > start_at", name="window"),
        CheckConstraint("amount >= 0", name="amount"),
        # A driver's list, newest window first; everyone's; a lot's.
        Index("ix_reservations_user_start_id", "user_id", "start_at", "id"),
        Index("ix_reservations_start_id", "start_at", "id"),
        Index("ix_reservations_lot_start_id", "lot_id", "start_at", "id"),
        # Overlap checks (a spot's, a vehicle's) and a plate's arrival: windows
        # that end after a moment, i.e. current and future ones, never the
        # history (a window lasts at most reservation_max_days).
        Index("ix_reservations_spot_id_end_at", "spot_id", "end_at"),
        Index("ix_reservations_vehicle_id_end_at", "vehicle_id", "end_at"),
        Index("ix_reservations_plate_key_end_at", "plate_key", "end_at"),
        # Overdue confirmations, marked no-show by bookings and the command.
        Index(
            "ix_reservations_confirmed_no_show_at",
            "lot_id",
            "no_show_at",
            postgresql_where=text("status = 'confirmed'"),
            sqlite_where=text("status = 'confirmed'"),
        ),
        # The report's days: made, cancelled, window start.
        Index("ix_reservations_lot_created_day", "lot_id", "created_day"),
        Index("ix_reservations_lot_cancelled_day", "lot_id", "cancelled_day"),
        Index("ix_reservations_lot_start_day", "lot_id", "start_day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("parking_lots.id"))
    spot_id: Mapped[int] = mapped_column(ForeignKey("parking_spots.id"))
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    plate_key: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="confirmed")
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    hourly_rate: Mapped[int] = mapped_column(Integer)
    billing_increment_minutes: Mapped[int] = mapped_column(Integer)
    grace_minutes: Mapped[int] = mapped_column(Integer)
    daily_max: Mapped[int | None] = mapped_column(Integer)
    exit_grace_minutes: Mapped[int] = mapped_column(Integer)
    early_minutes: Mapped[int] = mapped_column(Integer)
    cancel_free_until: Mapped[datetime] = mapped_column(UTCDateTime)
    late_cancel_fee: Mapped[int] = mapped_column(BigInteger)
    no_show_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refund: Mapped[int | None] = mapped_column(BigInteger)
    # The lot's local days the report counts it on (written with the times).
    created_day: Mapped[date] = mapped_column(Date)
    start_day: Mapped[date] = mapped_column(Date)
    cancelled_day: Mapped[date | None] = mapped_column(Date)


class LotDay(db.Model):
    """One lot's day in its time zone, as the report shows it: kept by
    triggers on tickets and payments in the writing transaction (migration
    0009), so a report reads one row per day asked for, however long the
    lot's history. Never written by the app."""

    __tablename__ = "lot_days"

    lot_id: Mapped[int] = mapped_column(ForeignKey("parking_lots.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    tickets_started: Mapped[int] = mapped_column(Integer, server_default="0")
    tickets_closed: Mapped[int] = mapped_column(Integer, server_default="0")
    permit_sessions: Mapped[int] = mapped_column(Integer, server_default="0")
    revenue: Mapped[int] = mapped_column(BigInteger, server_default="0")
    stay_minutes: Mapped[int] = mapped_column(BigInteger, server_default="0")
    outstanding: Mapped[int] = mapped_column(BigInteger, server_default="0")
    paid_cash: Mapped[int] = mapped_column(BigInteger, server_default="0")
    paid_card: Mapped[int] = mapped_column(BigInteger, server_default="0")
    paid_app: Mapped[int] = mapped_column(BigInteger, server_default="0")
    paid_reservation: Mapped[int] = mapped_column(BigInteger, server_default="0")


def local_day(moment: datetime | None, zone: str) -> date | None:
    """The day `moment` falls on in time zone `zone`."""
    return moment.astimezone(ZoneInfo(zone)).date() if moment is not None else None


@event.listens_for(Ticket, "before_insert")
@event.listens_for(Ticket, "before_update")
def _ticket_local_days(_mapper, connection, ticket) -> None:
    """ORM writers (seed data, tests, scripts) get the local days too; the
    API's own statements write them, and PostgreSQL fills them for anyone."""
    if ticket.check_in_day is None or (
        ticket.check_out is not None and ticket.check_out_day is None
    ):
        zone = connection.execute(
            select(ParkingLot.timezone).where(ParkingLot.id == ticket.lot_id)
        ).scalar()
        ticket.check_in_day = ticket.check_in_day or local_day(ticket.check_in, zone or "UTC")
        ticket.check_out_day = local_day(ticket.check_out, zone or "UTC")


@event.listens_for(Payment, "before_insert")
def _payment_local_day(_mapper, connection, payment) -> None:
    if payment.day is None:
        zone = connection.execute(
            select(ParkingLot.timezone).where(ParkingLot.id == payment.lot_id)
        ).scalar()
        payment.day = local_day(payment.created_at or utcnow(), zone or "UTC")


class RevokedToken(db.Model):
    """A JWT, or a whole token family, that must no longer be accepted
    (logout, refresh rotation; see tokens.py).

    Kept in the database so revocation holds on every worker and server; rows
    past `expires_at` are useless and pruned (`flask prune-tokens`, and on logout).
    """

    __tablename__ = "revoked_tokens"
    __table_args__ = (CheckConstraint(_in("reason", REVOCATION_REASONS), name="reason"),)

    # A token's jti, or a family id (token_type "family").
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_type: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # "rotated" (exchanged by a refresh: replayable within the leeway) or "logout".
    reason: Mapped[str] = mapped_column(String(16), default="logout", server_default="logout")


# ===========================================================================
# Integrations (migration 0007): idempotency keys, the event outbox, webhooks
# ===========================================================================

IDEMPOTENCY_STATES = ("in_progress", "committed", "completed")
DELIVERY_STATUSES = ("pending", "delivered", "failed")


class IdempotencyKey(db.Model):
    """A write's Idempotency-Key, per caller, kept 24 hours (idempotency.py).

    Claimed in its own short transaction before the work (`in_progress`),
    marked `committed` inside the work's own transaction, and given the
    answer (`completed`) after it. The unique scope makes the claim atomic."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        db.UniqueConstraint("actor_type", "actor_id", "key"),
        CheckConstraint(_in("state", IDEMPOTENCY_STATES), name="state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Who may replay it: a user or a gate device (models.ACTOR_TYPES).
    actor_type: Mapped[str] = mapped_column(String(8))
    actor_id: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of the method, path and body: a different request is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    # Whose claim it is, and since when (a claim left behind by a dead worker
    # is taken over after IDEMPOTENCY_ABANDONED_SECONDS, if nothing committed).
    lock_token: Mapped[str] = mapped_column(String(32))
    locked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict | None] = mapped_column(JSON)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Event(db.Model):
    """The transactional outbox: one row per event, written in the same
    transaction as the change (events.emit, or the lot triggers of migration
    0007). The delivery worker fans it out to the matching webhooks."""

    __tablename__ = "events"
    __table_args__ = (
        # The worker's queue of events not yet fanned out.
        Index(
            "ix_events_undispatched",
            "id",
            postgresql_where=text("dispatched_at IS NULL"),
            sqlite_where=text("dispatched_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    # The object as the API shows it (a ticket, a payment, a lot's availability).
    data: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Webhook(db.Model):
    """A subscriber URL and the event types it receives. The secret signs
    every delivery (Standard Webhooks); it is shown once, on creation."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(255))
    secret: Mapped[str] = mapped_column(String(128))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(db.Model):
    """One event for one webhook: sent until a 2xx, retried with backoff for
    24 hours, then `failed`. `message_id` is the webhook-id header, the same
    on every attempt, so receivers can drop duplicates."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
        # A webhook's deliveries, newest first.
        Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),
        # The worker's queue: pending deliveries by when they are due.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("events.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # Attempts started; a claim increments it (so a worker that died counts).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Due time while pending (a claim pushes it past the attempt: the lease).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    response_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
