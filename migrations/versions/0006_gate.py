"""The gate: cars by plate, staff and devices, payments, permits, the audit log.

* users.role gains "attendant".
* vehicles.plate_key and tickets.plate_key: the canonical plate (upper case,
  letters and digits only; models.plate_key). A partial unique index allows
  one open ticket per plate_key, however the car came in. vehicles.user_id
  and tickets.user_id may be NULL: a car with no account (or whose plate
  several accounts registered) is an unowned vehicle record, one per plate.
  A driver's plates are unique by key; duplicates by key that adoption or the
  old rule let through are hidden (the oldest stays), and an open ticket whose
  plate another open ticket already has keeps a NULL plate_key (it is not
  closed: that would invent money).
* parking_lots.exit_grace_minutes (15), frozen on each ticket with the
  tariff; tickets.amount_paid (kept by a trigger on payments), paid_until,
  permit_id.
* New tables: lot_staff, devices, payments, permits, permit_plates,
  permit_lots, audit_log. On PostgreSQL triggers refuse UPDATE and DELETE of
  payments and audit_log rows (TRUNCATE, for retention, still works).

Plate keys are computed in Python (the same function as the app), vehicles
first; tickets copy their vehicle's key in one statement.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def plate_key(plate: str) -> str:
    # Frozen copy of models.plate_key: a migration must not change with the app.
    return "".join(ch for ch in plate.upper() if ch.isalnum())


POSTGRES_FUNCTIONS = (
    """
    CREATE FUNCTION payments_add_to_ticket() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE tickets SET amount_paid = amount_paid + NEW.amount WHERE id = NEW.ticket_id;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% rows are append-only', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
)
POSTGRES_TRIGGERS = (
    "CREATE TRIGGER payments_add_to_ticket AFTER INSERT ON payments "
    "FOR EACH ROW EXECUTE FUNCTION payments_add_to_ticket()",
    "CREATE TRIGGER payments_append_only BEFORE UPDATE OR DELETE ON payments "
    "FOR EACH ROW EXECUTE FUNCTION refuse_change()",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION refuse_change()",
)
SQLITE_TRIGGERS = (
    "CREATE TRIGGER payments_add_to_ticket AFTER INSERT ON payments BEGIN "
    "UPDATE tickets SET amount_paid = amount_paid + NEW.amount WHERE id = NEW.ticket_id; END",
)


def upgrade():
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"

    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("ck_users_role", type_="check")
        batch.create_check_constraint("role", "role IN ('driver', 'attendant', 'admin')")
    if not postgres:
        # SQLite's batch mode rebuilt users without its expression index.
        op.create_index(
            "ux_users_username_lower", "users", [sa.text("lower(username)")], unique=True
        )

    # Vehicles: the canonical plate, computed by the app's rule.
    with op.batch_alter_table("vehicles") as batch:
        batch.add_column(sa.Column("plate_key", sa.String(32), nullable=True))
        batch.alter_column("user_id", existing_type=sa.Integer(), nullable=True)
    vehicles = sa.table(
        "vehicles",
        sa.column("id", sa.Integer),
        sa.column("plate_number", sa.String),
        sa.column("plate_key", sa.String),
    )
    rows = bind.execute(sa.select(vehicles.c.id, vehicles.c.plate_number)).all()
    if rows:
        bind.execute(
            vehicles.update()
            .where(vehicles.c.id == sa.bindparam("vehicle_id"))
            .values(plate_key=sa.bindparam("key")),
            [{"vehicle_id": id_, "key": plate_key(plate or "")} for id_, plate in rows],
        )
    # A driver's later duplicates by key (e.g. "KCB 123A" and "KCB-123A") are hidden.
    op.execute(
        "UPDATE vehicles SET deleted_at = CURRENT_TIMESTAMP "
        "WHERE deleted_at IS NULL AND EXISTS (SELECT 1 FROM vehicles AS older "
        "WHERE older.user_id = vehicles.user_id AND older.plate_key = vehicles.plate_key "
        "AND older.deleted_at IS NULL AND older.id < vehicles.id)"
    )
    with op.batch_alter_table("vehicles") as batch:
        batch.alter_column("plate_key", existing_type=sa.String(32), nullable=False)
    op.drop_index("ux_vehicles_owner_plate_active", table_name="vehicles")
    op.create_index(
        "ux_vehicles_owner_plate_key_active",
        "vehicles",
        ["user_id", "plate_key"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ux_vehicles_unowned_plate_key",
        "vehicles",
        ["plate_key"],
        unique=True,
        postgresql_where=sa.text("user_id IS NULL"),
        sqlite_where=sa.text("user_id IS NULL"),
    )
    op.create_index("ix_vehicles_plate_key", "vehicles", ["plate_key"])

    # Not in batch mode: rebuilding parking_lots on SQLite would break the
    # counter triggers of migration 0003, which name it. SQLite gets the
    # column without its CHECK (it cannot add one in place); the API checks.
    op.add_column(
        "parking_lots",
        sa.Column("exit_grace_minutes", sa.Integer(), nullable=False, server_default="15"),
    )
    if postgres:
        op.create_check_constraint("exit_grace_minutes", "parking_lots", "exit_grace_minutes >= 0")

    op.create_table(
        "permits",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=False),
        sa.Column("all_lots", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("note", sa.String(255)),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("valid_to >= valid_from", name="valid_window"),
    )

    with op.batch_alter_table("tickets") as batch:
        batch.alter_column("user_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("plate_key", sa.String(32)))
        batch.add_column(
            sa.Column("exit_grace_minutes", sa.Integer(), nullable=False, server_default="15")
        )
        batch.add_column(
            sa.Column("amount_paid", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("paid_until", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("permit_id", sa.Integer()))
        batch.create_foreign_key("fk_tickets_permit_id_permits", "permits", ["permit_id"], ["id"])
        batch.create_check_constraint("amount_paid", "amount_paid >= 0")
    op.execute(
        "UPDATE tickets SET plate_key = "
        "(SELECT vehicles.plate_key FROM vehicles WHERE vehicles.id = tickets.vehicle_id)"
    )
    # Two open tickets of one plate (two accounts, one car) predate the rule:
    # the earliest keeps the key, the others are left unguarded, not closed.
    op.execute(
        "UPDATE tickets SET plate_key = NULL WHERE check_out IS NULL AND EXISTS "
        "(SELECT 1 FROM tickets AS first WHERE first.check_out IS NULL "
        "AND first.plate_key = tickets.plate_key AND first.id < tickets.id)"
    )
    # The report's closed-ticket sums read what is still owed and whether a
    # permit covered the stay too: the covering index grows by those columns.
    op.create_index(
        "ix_tickets_lot_check_out_totals",
        "tickets",
        ["lot_id", "check_out", "amount_due", "duration_minutes", "amount_paid", "permit_id"],
    )
    op.drop_index("ix_tickets_lot_check_out_amount", table_name="tickets")
    op.create_index(
        "ux_tickets_open_plate_key",
        "tickets",
        ["plate_key"],
        unique=True,
        postgresql_where=sa.text("check_out IS NULL"),
        sqlite_where=sa.text("check_out IS NULL"),
    )
    op.create_index(
        "ix_tickets_lot_plate_key_check_in", "tickets", ["lot_id", "plate_key", "check_in"]
    )
    op.create_index(
        "ix_tickets_open_lot",
        "tickets",
        ["lot_id"],
        postgresql_where=sa.text("check_out IS NULL"),
        sqlite_where=sa.text("check_out IS NULL"),
    )

    op.create_table(
        "lot_staff",
        sa.Column("lot_id", sa.Integer(), sa.ForeignKey("parking_lots.id"), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_lot_staff_user_id", "lot_staff", ["user_id"])

    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("lot_id", sa.Integer(), sa.ForeignKey("parking_lots.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_devices_lot_id", "devices", ["lot_id"])

    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "payments",
        sa.Column("id", big_id, primary_key=True),
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("tickets.id"), nullable=False),
        sa.Column("lot_id", sa.Integer(), sa.ForeignKey("parking_lots.id"), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("reference", sa.String(128)),
        sa.Column("reason", sa.String(255)),
        sa.Column("actor_type", sa.String(8), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("method IN ('cash', 'card', 'app', 'reservation')", name="method"),
        sa.CheckConstraint("amount <> 0", name="amount"),
        sa.CheckConstraint("actor_type IN ('user', 'device')", name="actor_type"),
    )
    op.create_index("ix_payments_ticket_id", "payments", ["ticket_id"])
    op.create_index(
        "ux_payments_ticket_reference",
        "payments",
        ["ticket_id", "reference"],
        unique=True,
        postgresql_where=sa.text("reference IS NOT NULL"),
        sqlite_where=sa.text("reference IS NOT NULL"),
    )
    op.create_index(
        "ix_payments_lot_created_method", "payments", ["lot_id", "created_at", "method", "amount"]
    )

    op.create_table(
        "permit_plates",
        sa.Column(
            "permit_id",
            sa.Integer(),
            sa.ForeignKey("permits.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("plate_key", sa.String(32), primary_key=True),
        sa.Column("plate_number", sa.String(32), nullable=False),
    )
    op.create_index("ix_permit_plates_plate_key", "permit_plates", ["plate_key"])
    op.create_table(
        "permit_lots",
        sa.Column(
            "permit_id",
            sa.Integer(),
            sa.ForeignKey("permits.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("lot_id", sa.Integer(), sa.ForeignKey("parking_lots.id"), primary_key=True),
    )
    op.create_index("ix_permit_lots_lot_id", "permit_lots", ["lot_id"])

    op.create_table(
        "audit_log",
        sa.Column("id", big_id, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(8), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("actor_name", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("lot_id", sa.Integer()),
        sa.Column("ticket_id", sa.Integer()),
        sa.Column("amount", sa.BigInteger()),
        sa.Column("plate_number", sa.String(32)),
        sa.Column("detail", sa.String(255)),
        sa.CheckConstraint("actor_type IN ('user', 'device')", name="actor_type"),
    )
    op.create_index("ix_audit_log_at_id", "audit_log", ["at", "id"])
    op.create_index("ix_audit_log_lot_at_id", "audit_log", ["lot_id", "at", "id"])
    op.create_index("ix_audit_log_actor_at_id", "audit_log", ["actor_type", "actor_id", "at", "id"])

    if postgres:
        for statement in (*POSTGRES_FUNCTIONS, *POSTGRES_TRIGGERS):
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP TRIGGER payments_append_only ON payments")
        op.execute("DROP TRIGGER payments_add_to_ticket ON payments")
        op.execute("DROP FUNCTION refuse_change()")
        op.execute("DROP FUNCTION payments_add_to_ticket()")
    else:
        op.execute("DROP TRIGGER payments_add_to_ticket")
    for table in ("audit_log", "permit_lots", "permit_plates", "payments", "devices", "lot_staff"):
        op.drop_table(table)
    op.create_index(
        "ix_tickets_lot_check_out_amount",
        "tickets",
        ["lot_id", "check_out", "amount_due", "duration_minutes"],
    )
    op.drop_index("ix_tickets_lot_check_out_totals", table_name="tickets")
    op.drop_index("ix_tickets_open_lot", table_name="tickets")
    op.drop_index("ix_tickets_lot_plate_key_check_in", table_name="tickets")
    op.drop_index("ux_tickets_open_plate_key", table_name="tickets")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_constraint("ck_tickets_amount_paid", type_="check")
        batch.drop_constraint("fk_tickets_permit_id_permits", type_="foreignkey")
        for column in ("permit_id", "paid_until", "amount_paid", "exit_grace_minutes", "plate_key"):
            batch.drop_column(column)
    op.drop_table("permits")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("ck_parking_lots_exit_grace_minutes", "parking_lots", type_="check")
    op.drop_column("parking_lots", "exit_grace_minutes")
    op.drop_index("ix_vehicles_plate_key", table_name="vehicles")
    op.drop_index("ux_vehicles_unowned_plate_key", table_name="vehicles")
    op.drop_index("ux_vehicles_owner_plate_key_active", table_name="vehicles")
    op.create_index(
        "ux_vehicles_owner_plate_active",
        "vehicles",
        ["user_id", "plate_number"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
    with op.batch_alter_table("vehicles") as batch:
        batch.drop_column("plate_key")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("ck_users_role", type_="check")
        batch.create_check_constraint("role", "role IN ('driver', 'admin')")
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(
            "ux_users_username_lower", "users", [sa.text("lower(username)")], unique=True
        )
