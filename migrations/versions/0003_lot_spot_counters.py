"""Per-lot spot counters, kept by the database.

parking_lots.spots_total and parking_lots.spots_available count the lot's
spots (all of them, and those with status 'available'). Triggers on
parking_spots keep them in the same transaction as every insert, delete and
change of status or lot, whoever writes (the API, seed.py, a psql session), so
the lot list reads one row per lot instead of counting every spot
(bench/README.md: 3.3 ms of PostgreSQL CPU per list of 100 lots before).

A status change locks its lot's row until the transaction ends; every writer
locks spot rows before the lot row (the trigger runs after the spot UPDATE),
so the order is the same everywhere and cannot deadlock.

On SQLite, a later batch ("move and copy") migration of parking_spots drops
the triggers with the old table: such a migration must call
create_sqlite_triggers() again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

POSTGRES_FUNCTION = """
CREATE FUNCTION parking_spots_count_lot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.lot_id = NEW.lot_id THEN
        UPDATE parking_lots
        SET spots_available = spots_available
            + (NEW.status = 'available')::int - (OLD.status = 'available')::int
        WHERE id = NEW.lot_id;
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        UPDATE parking_lots
        SET spots_total = spots_total - 1,
            spots_available = spots_available - (OLD.status = 'available')::int
        WHERE id = OLD.lot_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE parking_lots
        SET spots_total = spots_total + 1,
            spots_available = spots_available + (NEW.status = 'available')::int
        WHERE id = NEW.lot_id;
    END IF;
    RETURN NULL;
END $$
"""

# Changes between 'occupied' and 'out_of_service' leave the counts alone and
# skip the trigger (and the lot row lock).
COUNTED_CHANGE = (
    "(OLD.status = 'available') <> (NEW.status = 'available') OR OLD.lot_id <> NEW.lot_id"
)

POSTGRES_TRIGGERS = (
    "CREATE TRIGGER parking_spots_count_insert_delete AFTER INSERT OR DELETE ON parking_spots "
    "FOR EACH ROW EXECUTE FUNCTION parking_spots_count_lot()",
    "CREATE TRIGGER parking_spots_count_update AFTER UPDATE OF status, lot_id ON parking_spots "
    f"FOR EACH ROW WHEN ({COUNTED_CHANGE}) EXECUTE FUNCTION parking_spots_count_lot()",
)

ADD = (
    "UPDATE parking_lots SET spots_total = spots_total + 1, "
    "spots_available = spots_available + (NEW.status = 'available') WHERE id = NEW.lot_id;"
)
REMOVE = (
    "UPDATE parking_lots SET spots_total = spots_total - 1, "
    "spots_available = spots_available - (OLD.status = 'available') WHERE id = OLD.lot_id;"
)
SQLITE_TRIGGERS = (
    f"CREATE TRIGGER parking_spots_count_insert AFTER INSERT ON parking_spots BEGIN {ADD} END",
    f"CREATE TRIGGER parking_spots_count_delete AFTER DELETE ON parking_spots BEGIN {REMOVE} END",
    "CREATE TRIGGER parking_spots_count_update AFTER UPDATE OF status, lot_id ON parking_spots "
    f"WHEN {COUNTED_CHANGE} BEGIN {REMOVE} {ADD} END",
)
SQLITE_TRIGGER_NAMES = (
    "parking_spots_count_insert",
    "parking_spots_count_delete",
    "parking_spots_count_update",
)


def create_sqlite_triggers() -> None:
    for statement in SQLITE_TRIGGERS:
        op.execute(statement)


def upgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("parking_lots") as batch:
        batch.add_column(sa.Column("spots_total", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("spots_available", sa.Integer(), nullable=False, server_default="0")
        )
    # Triggers first: on PostgreSQL CREATE TRIGGER locks parking_spots against
    # writes until this migration commits, so no change slips between the
    # count below and the triggers.
    if postgres:
        op.execute(POSTGRES_FUNCTION)
        for statement in POSTGRES_TRIGGERS:
            op.execute(statement)
    else:
        create_sqlite_triggers()
    op.execute(
        "UPDATE parking_lots SET "
        "spots_total = (SELECT count(*) FROM parking_spots AS s "
        "WHERE s.lot_id = parking_lots.id), "
        "spots_available = (SELECT count(*) FROM parking_spots AS s "
        "WHERE s.lot_id = parking_lots.id AND s.status = 'available')"
    )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER parking_spots_count_update ON parking_spots")
        op.execute("DROP TRIGGER parking_spots_count_insert_delete ON parking_spots")
        op.execute("DROP FUNCTION parking_spots_count_lot()")
    else:
        for name in SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("parking_lots") as batch:
        batch.drop_column("spots_available")
        batch.drop_column("spots_total")
