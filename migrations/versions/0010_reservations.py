"""Reservations: reservable spots, reservations with no double booking,
reserved tickets, reservation payments.

* parking_lots: the reservation policy (window and horizon limits, free
  cancellation, late-cancel fee, early check-in, no-show).
* parking_spots.reservable: such spots host reservations only.
* reservations, and on PostgreSQL (btree_gist) two exclusion constraints:
  no two active (confirmed, checked_in) reservations of one spot, or of one
  vehicle, overlap as half-open windows [start_at, end_at), so back-to-back
  windows are fine. SQLite serialises writers and the app checks the same
  rule in the writing transaction.
* tickets: the reservation a ticket was opened for, its window and what was
  prepaid (copied at check-in, so billing reads no other row).
* payments: a reservation's payment and refund belong to the reservation
  (ticket_id null, reservation_id set; exactly one of them). On SQLite the
  table is rebuilt to relax ticket_id, and its triggers are put back as they
  were.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ACTIVE = "status IN ('confirmed', 'checked_in')"
LOT_COLUMNS = (
    ("reservation_max_days", "30"),
    ("reservation_horizon_days", "90"),
    ("cancel_free_minutes", "60"),
    ("early_minutes", "15"),
    ("no_show_minutes", "30"),
)
STATUSES = "status IN ('confirmed', 'checked_in', 'completed', 'cancelled', 'no_show')"
KINDS = "kind IN ('standard', 'compact', 'large', 'motorcycle', 'ev', 'accessible')"


def sqlite_triggers(table: str) -> list[str]:
    bind = op.get_bind()
    return [
        sql
        for (sql,) in bind.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
            {"t": table},
        )
    ]


def upgrade():
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"

    for name, default in LOT_COLUMNS:
        op.add_column(
            "parking_lots", sa.Column(name, sa.Integer(), nullable=False, server_default=default)
        )
    op.add_column("parking_lots", sa.Column("late_cancel_fee", sa.BigInteger()))

    op.add_column(
        "parking_spots",
        sa.Column("reservable", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index(
        "ix_parking_spots_reservable",
        "parking_spots",
        ["lot_id", "kind"],
        postgresql_where=sa.text("reservable"),
        sqlite_where=sa.text("reservable"),
    )

    op.create_table(
        "reservations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lot_id", sa.Integer(), nullable=False),
        sa.Column("spot_id", sa.Integer(), nullable=False),
        sa.Column("vehicle_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("plate_key", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("hourly_rate", sa.Integer(), nullable=False),
        sa.Column("billing_increment_minutes", sa.Integer(), nullable=False),
        sa.Column("grace_minutes", sa.Integer(), nullable=False),
        sa.Column("daily_max", sa.Integer()),
        sa.Column("exit_grace_minutes", sa.Integer(), nullable=False),
        sa.Column("early_minutes", sa.Integer(), nullable=False),
        sa.Column("cancel_free_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("late_cancel_fee", sa.BigInteger(), nullable=False),
        sa.Column("no_show_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_in_at", sa.DateTime(timezone=True)),
        sa.Column("ticket_id", sa.Integer()),
        sa.Column("cancelled_at", sa.DateTime(timezone=True)),
        sa.Column("refund", sa.BigInteger()),
        sa.Column("created_day", sa.Date(), nullable=False),
        sa.Column("start_day", sa.Date(), nullable=False),
        sa.Column("cancelled_day", sa.Date()),
        sa.CheckConstraint(STATUSES, name=op.f("ck_reservations_status")),
        sa.CheckConstraint(KINDS, name=op.f("ck_reservations_kind")),
        sa.CheckConstraint("end_at > start_at", name=op.f("ck_reservations_window")),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_reservations_amount")),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["parking_lots.id"], name=op.f("fk_reservations_lot_id_parking_lots")
        ),
        sa.ForeignKeyConstraint(
            ["spot_id"], ["parking_spots.id"], name=op.f("fk_reservations_spot_id_parking_spots")
        ),
        sa.ForeignKeyConstraint(
            ["vehicle_id"], ["vehicles.id"], name=op.f("fk_reservations_vehicle_id_vehicles")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_reservations_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_reservations_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
    )
    for name, columns in (
        ("ix_reservations_user_start_id", ["user_id", "start_at", "id"]),
        ("ix_reservations_start_id", ["start_at", "id"]),
        ("ix_reservations_lot_start_id", ["lot_id", "start_at", "id"]),
        ("ix_reservations_spot_id_end_at", ["spot_id", "end_at"]),
        ("ix_reservations_vehicle_id_end_at", ["vehicle_id", "end_at"]),
        ("ix_reservations_plate_key_end_at", ["plate_key", "end_at"]),
        ("ix_reservations_lot_created_day", ["lot_id", "created_day"]),
        ("ix_reservations_lot_cancelled_day", ["lot_id", "cancelled_day"]),
        ("ix_reservations_lot_start_day", ["lot_id", "start_day"]),
    ):
        op.create_index(name, "reservations", columns)
    op.create_index(
        "ix_reservations_confirmed_no_show_at",
        "reservations",
        ["lot_id", "no_show_at"],
        postgresql_where=sa.text("status = 'confirmed'"),
        sqlite_where=sa.text("status = 'confirmed'"),
    )
    if postgres:
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        for column in ("spot_id", "vehicle_id"):
            op.execute(
                f"ALTER TABLE reservations ADD CONSTRAINT ex_reservations_{column}_window "
                f"EXCLUDE USING gist ({column} WITH =, "
                "tstzrange(start_at, end_at, '[)') WITH &&) "
                f"WHERE ({ACTIVE})"
            )

    op.add_column("tickets", sa.Column("reservation_id", sa.Integer()))
    op.add_column("tickets", sa.Column("reserved_from", sa.DateTime(timezone=True)))
    op.add_column("tickets", sa.Column("reserved_until", sa.DateTime(timezone=True)))
    op.add_column("tickets", sa.Column("prepaid", sa.BigInteger()))
    op.create_index("ux_tickets_reservation_id", "tickets", ["reservation_id"], unique=True)

    check = "(ticket_id IS NULL) <> (reservation_id IS NULL)"
    if postgres:
        op.add_column("payments", sa.Column("reservation_id", sa.Integer()))
        op.alter_column("payments", "ticket_id", existing_type=sa.Integer(), nullable=True)
        op.create_foreign_key(
            op.f("fk_payments_reservation_id_reservations"),
            "payments",
            "reservations",
            ["reservation_id"],
            ["id"],
        )
        op.create_check_constraint(op.f("ck_payments_ticket_or_reservation"), "payments", check)
    else:
        triggers = sqlite_triggers("payments")
        with op.batch_alter_table("payments") as batch:
            batch.add_column(sa.Column("reservation_id", sa.Integer()))
            batch.alter_column("ticket_id", existing_type=sa.Integer(), nullable=True)
            batch.create_foreign_key(
                op.f("fk_payments_reservation_id_reservations"),
                "reservations",
                ["reservation_id"],
                ["id"],
            )
            batch.create_check_constraint(op.f("ck_payments_ticket_or_reservation"), check)
        for sql in triggers:  # the rebuilt table lost them
            op.execute(sql)
    op.create_index("ix_payments_reservation_id", "payments", ["reservation_id"])


def downgrade():
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.drop_index("ix_payments_reservation_id", table_name="payments")
    if postgres:
        op.execute("ALTER TABLE payments DISABLE TRIGGER payments_append_only")
        op.execute("DELETE FROM payments WHERE reservation_id IS NOT NULL")
        op.execute("ALTER TABLE payments ENABLE TRIGGER payments_append_only")
        op.drop_constraint(op.f("ck_payments_ticket_or_reservation"), "payments", type_="check")
        op.drop_constraint(
            op.f("fk_payments_reservation_id_reservations"), "payments", type_="foreignkey"
        )
        op.alter_column("payments", "ticket_id", existing_type=sa.Integer(), nullable=False)
        op.drop_column("payments", "reservation_id")
    else:
        op.execute("DELETE FROM payments WHERE reservation_id IS NOT NULL")
        triggers = sqlite_triggers("payments")
        with op.batch_alter_table("payments") as batch:
            batch.drop_constraint(op.f("ck_payments_ticket_or_reservation"), type_="check")
            batch.drop_constraint(
                op.f("fk_payments_reservation_id_reservations"), type_="foreignkey"
            )
            batch.alter_column("ticket_id", existing_type=sa.Integer(), nullable=False)
            batch.drop_column("reservation_id")
        for sql in triggers:
            op.execute(sql)
    op.drop_index("ux_tickets_reservation_id", table_name="tickets")
    for column in ("prepaid", "reserved_until", "reserved_from", "reservation_id"):
        op.drop_column("tickets", column)
    op.drop_table("reservations")
    op.drop_index("ix_parking_spots_reservable", table_name="parking_spots")
    op.drop_column("parking_spots", "reservable")
    op.drop_column("parking_lots", "late_cancel_fee")
    for name, _ in reversed(LOT_COLUMNS):
        op.drop_column("parking_lots", name)
