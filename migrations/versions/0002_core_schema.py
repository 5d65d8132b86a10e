"""From the seed's schema to the product's: roles, identity rules, exclusivity,
tariffs, timezone-aware timestamps, soft deletes and revoked tokens.

Existing rows are carried over: e-mails are lower-cased, plates normalised
(a driver's duplicate plates are marked deleted), naive timestamps are taken
as UTC, tickets learn their owner and lot from their vehicle and spot, extra
open tickets on one spot or vehicle are closed at their check-in, spot status
is recomputed from the open tickets, and tickets that point at no vehicle or
spot (which the seed allowed) are removed. Users whose names or e-mails differ
only in case cannot be merged automatically: the upgrade stops on the unique
index and names the value to fix.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Unnamed constraints of a seed database get PostgreSQL's default names, so
# batch mode on SQLite can find and drop them by the same names.
SEED_NAMES = {"uq": "%(table_name)s_%(column_0_name)s_key"}
UTC_TS = sa.DateTime(timezone=True)
NOW = sa.text("CURRENT_TIMESTAMP")


def open_ticket_index(name, column):
    op.create_index(
        name,
        "tickets",
        [column],
        unique=True,
        postgresql_where=sa.text("check_out IS NULL"),
        sqlite_where=sa.text("check_out IS NULL"),
    )


def normalise_plates():
    """Plates as the API stores them (upper case, inner whitespace collapsed).

    A driver's second vehicle with the same plate (the seed allowed it) is
    marked deleted, so the one-plate-per-driver index can be built; its
    tickets stay. Done in Python: SQLite has no regexp_replace.
    """
    conn = op.get_bind()
    vehicles = sa.table(
        "vehicles",
        sa.column("id", sa.Integer),
        sa.column("user_id", sa.Integer),
        sa.column("plate_number", sa.String),
        sa.column("deleted_at", UTC_TS),
    )
    seen = set()
    rows = conn.execute(
        sa.select(vehicles.c.id, vehicles.c.user_id, vehicles.c.plate_number).order_by(
            vehicles.c.id
        )
    ).all()
    for vehicle_id, user_id, plate in rows:
        normal = " ".join(plate.split()).upper()[:32]
        values = {"plate_number": normal}
        if (user_id, normal) in seen:
            values["deleted_at"] = sa.func.current_timestamp()
        seen.add((user_id, normal))
        if normal != plate or "deleted_at" in values:
            conn.execute(vehicles.update().where(vehicles.c.id == vehicle_id).values(**values))


def close_duplicate_open_tickets():
    """The seed could leave two open tickets on one spot or vehicle; keep the
    newest open and close the others at their check-in (no charge)."""
    for column in ("spot_id", "vehicle_id"):
        op.execute(
            "UPDATE tickets SET check_out = check_in WHERE check_out IS NULL AND EXISTS "
            f"(SELECT 1 FROM tickets newer WHERE newer.check_out IS NULL "
            f"AND newer.{column} = tickets.{column} AND newer.id > tickets.id)"
        )


def upgrade():
    postgres = op.get_bind().dialect.name == "postgresql"

    # ---- users ------------------------------------------------------------
    op.execute("UPDATE users SET email = lower(trim(email)), username = trim(username)")
    with op.batch_alter_table("users", naming_convention=SEED_NAMES) as batch:
        batch.drop_constraint("users_username_key", type_="unique")
        batch.drop_constraint("users_email_key", type_="unique")
        batch.alter_column("username", type_=sa.String(64), existing_nullable=False)
        batch.alter_column("email", type_=sa.String(254), existing_nullable=False)
        batch.alter_column("password_hash", type_=sa.String(256), existing_nullable=False)
        batch.add_column(sa.Column("role", sa.String(16), server_default="driver", nullable=False))
        batch.add_column(
            sa.Column("token_version", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("created_at", UTC_TS, server_default=NOW, nullable=False))
        batch.create_unique_constraint("uq_users_email", ["email"])
        batch.create_check_constraint("ck_users_role", "role IN ('driver', 'admin')")
    op.create_index("ux_users_username_lower", "users", [sa.text("lower(username)")], unique=True)

    # ---- vehicles -----------------------------------------------------------
    op.execute(
        "DELETE FROM vehicles WHERE user_id IS NULL AND id NOT IN "
        "(SELECT vehicle_id FROM tickets WHERE vehicle_id IS NOT NULL)"
    )
    with op.batch_alter_table("vehicles") as batch:
        batch.alter_column("plate_number", type_=sa.String(32), existing_nullable=False)
        batch.alter_column("type", type_=sa.String(32), existing_nullable=True)
        batch.alter_column("user_id", existing_type=sa.Integer(), nullable=False)
        batch.add_column(sa.Column("created_at", UTC_TS, server_default=NOW, nullable=False))
        batch.add_column(sa.Column("deleted_at", UTC_TS, nullable=True))
    normalise_plates()
    op.create_index("ix_vehicles_user_id", "vehicles", ["user_id"])
    op.create_index(
        "ux_vehicles_owner_plate_active",
        "vehicles",
        ["user_id", "plate_number"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )

    # ---- parking_lots -------------------------------------------------------
    op.execute("UPDATE parking_lots SET location = '' WHERE location IS NULL")
    with op.batch_alter_table("parking_lots") as batch:
        batch.alter_column("name", type_=sa.String(120), existing_nullable=False)
        batch.alter_column("location", type_=sa.String(255), nullable=False)
        batch.add_column(sa.Column("timezone", sa.String(64), server_default="UTC", nullable=False))
        batch.add_column(sa.Column("currency", sa.String(3), server_default="KES", nullable=False))
        batch.add_column(sa.Column("hourly_rate", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(
            sa.Column(
                "billing_increment_minutes", sa.Integer(), server_default="60", nullable=False
            )
        )
        batch.add_column(
            sa.Column("grace_minutes", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("daily_max", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("created_at", UTC_TS, server_default=NOW, nullable=False))
        batch.add_column(sa.Column("archived_at", UTC_TS, nullable=True))
        batch.create_check_constraint("ck_parking_lots_hourly_rate", "hourly_rate >= 0")
        batch.create_check_constraint(
            "ck_parking_lots_billing_increment", "billing_increment_minutes > 0"
        )
        batch.create_check_constraint("ck_parking_lots_grace_minutes", "grace_minutes >= 0")
        batch.create_check_constraint(
            "ck_parking_lots_daily_max", "daily_max IS NULL OR daily_max >= 0"
        )

    # ---- parking_spots ------------------------------------------------------
    op.execute(
        "DELETE FROM parking_spots WHERE lot_id IS NULL AND id NOT IN "
        "(SELECT spot_id FROM tickets WHERE spot_id IS NOT NULL)"
    )
    op.execute("UPDATE parking_spots SET status = 'available' WHERE status IS NULL")
    with op.batch_alter_table("parking_spots") as batch:
        batch.alter_column("spot_number", type_=sa.String(32), existing_nullable=False)
        batch.alter_column(
            "status", type_=sa.String(16), nullable=False, server_default="available"
        )
        batch.alter_column("lot_id", existing_type=sa.Integer(), nullable=False)
        batch.add_column(
            sa.Column("kind", sa.String(16), server_default="standard", nullable=False)
        )
        batch.create_unique_constraint(
            "uq_parking_spots_lot_id_spot_number", ["lot_id", "spot_number"]
        )
        batch.create_check_constraint(
            "ck_parking_spots_status", "status IN ('available', 'occupied', 'out_of_service')"
        )
        batch.create_check_constraint(
            "ck_parking_spots_kind",
            "kind IN ('standard', 'compact', 'large', 'motorcycle', 'ev', 'accessible')",
        )
    op.create_index(
        "ix_parking_spots_lot_status_kind", "parking_spots", ["lot_id", "status", "kind"]
    )

    # ---- tickets ------------------------------------------------------------
    op.execute("DELETE FROM tickets WHERE vehicle_id IS NULL OR spot_id IS NULL")
    close_duplicate_open_tickets()
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("lot_id", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE tickets SET user_id = (SELECT user_id FROM vehicles WHERE vehicles.id = tickets.vehicle_id)"
    )
    op.execute(
        "UPDATE tickets SET lot_id = (SELECT lot_id FROM parking_spots WHERE parking_spots.id = tickets.spot_id)"
    )
    if postgres:
        for column in ("check_in", "check_out"):
            op.execute(
                f"ALTER TABLE tickets ALTER COLUMN {column} TYPE TIMESTAMP WITH TIME ZONE "
                f"USING {column} AT TIME ZONE 'UTC'"
            )
    with op.batch_alter_table("tickets") as batch:
        batch.alter_column("vehicle_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("spot_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("user_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("lot_id", existing_type=sa.Integer(), nullable=False)
        if not postgres:
            batch.alter_column("check_in", type_=UTC_TS, existing_nullable=False)
            batch.alter_column("check_out", type_=UTC_TS, existing_nullable=True)
        batch.add_column(sa.Column("currency", sa.String(3), server_default="KES", nullable=False))
        batch.add_column(sa.Column("hourly_rate", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(
            sa.Column(
                "billing_increment_minutes", sa.Integer(), server_default="60", nullable=False
            )
        )
        batch.add_column(
            sa.Column("grace_minutes", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("daily_max", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("amount_due", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("duration_minutes", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_tickets_user_id_users", "users", ["user_id"], ["id"])
        batch.create_foreign_key(
            "fk_tickets_lot_id_parking_lots", "parking_lots", ["lot_id"], ["id"]
        )
    op.create_index("ix_tickets_vehicle_id", "tickets", ["vehicle_id"])
    op.create_index("ix_tickets_spot_id", "tickets", ["spot_id"])
    op.create_index("ix_tickets_user_check_in", "tickets", ["user_id", "check_in"])
    op.create_index("ix_tickets_lot_check_in", "tickets", ["lot_id", "check_in"])
    op.create_index("ix_tickets_lot_check_out", "tickets", ["lot_id", "check_out"])
    open_ticket_index("ux_tickets_open_spot", "spot_id")
    open_ticket_index("ux_tickets_open_vehicle", "vehicle_id")
    # Spot status is written with the tickets from now on; start from the truth.
    op.execute(
        "UPDATE parking_spots SET status = CASE WHEN EXISTS (SELECT 1 FROM tickets "
        "WHERE tickets.spot_id = parking_spots.id AND tickets.check_out IS NULL) "
        "THEN 'occupied' ELSE 'available' END"
    )

    # ---- revoked_tokens -----------------------------------------------------
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_type", sa.String(16), nullable=False),
        sa.Column("expires_at", UTC_TS, nullable=False),
        sa.Column("revoked_at", UTC_TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_revoked_tokens_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("jti", name="pk_revoked_tokens"),
    )
    op.create_index("ix_revoked_tokens_user_id", "revoked_tokens", ["user_id"])
    op.create_index("ix_revoked_tokens_expires_at", "revoked_tokens", ["expires_at"])


def downgrade():
    raise NotImplementedError("0002 cannot be undone; restore a backup taken before upgrading")
