"""Integrations: idempotency keys, the event outbox, webhooks, lot fullness events.

* idempotency_keys: a write's Idempotency-Key per caller (actor_type,
  actor_id), its request hash, state and stored answer, kept 24 hours.
* events (the transactional outbox), webhooks and webhook_deliveries.
* parking_lots.counts_updated_at: when the spot counters last changed, set by
  a trigger on parking_lots whenever the counter triggers of migration 0003
  change spots_total or spots_available.
* lot.full / lot.available: a trigger on parking_lots writes the event row
  when spots_available goes from 1 to 0 or from 0 to 1, in the transaction
  that changed it. Every path that takes or frees a spot (booking, checkout,
  the gate, spot changes, archiving, a psql session) already goes through the
  counter triggers, so none of them can forget the event, and a rolled-back
  change leaves none. The event's data is the lot's entry of GET
  /api/availability.
* PostgreSQL: CHECK (spots_available BETWEEN 0 AND spots_total), the feed's
  promise kept by the database. SQLite cannot add a CHECK without rebuilding
  parking_lots, which would drop the triggers; the counters keep it there.

SQLite: the counter trigger of 0003 for status changes is replaced by one
that changes the lot row once (see SQLITE_COUNT_UPDATE).

As with migration 0003: a later batch ("move and copy") migration of
parking_lots on SQLite drops these triggers with the old table and must call
create_sqlite_triggers() again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The lot's availability entry, as GET /api/availability shows it. CLOSED: no
# spot in service. reservable_available is 0 until spots can be reservable.
STATUS = (
    "CASE WHEN NEW.spots_available > 0 THEN 'SPACES_AVAILABLE' "
    "WHEN NOT EXISTS (SELECT 1 FROM parking_spots AS s WHERE s.lot_id = NEW.id "
    "AND s.status <> 'out_of_service') THEN 'CLOSED' ELSE 'FULL' END"
)
EVENT_TYPE = "CASE WHEN NEW.spots_available = 0 THEN 'lot.full' ELSE 'lot.available' END"
CROSSES_ZERO = "(OLD.spots_available = 0) <> (NEW.spots_available = 0)"
COUNTS_CHANGED = (
    "OLD.spots_total <> NEW.spots_total OR OLD.spots_available <> NEW.spots_available"
)

POSTGRES_FUNCTIONS = (
    """
    CREATE FUNCTION parking_lots_stamp_counts() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.counts_updated_at := clock_timestamp();
        RETURN NEW;
    END $$
    """,
    f"""
    CREATE FUNCTION parking_lots_fullness_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO events (type, data, created_at) VALUES (
            {EVENT_TYPE},
            json_build_object(
                'lot_id', NEW.id,
                'name', NEW.name,
                'total', NEW.spots_total,
                'available', NEW.spots_available,
                'reservable_available', 0,
                'status', {STATUS},
                'updated_at', to_char(NEW.counts_updated_at AT TIME ZONE 'UTC',
                                      'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
            ),
            clock_timestamp()
        );
        RETURN NULL;
    END $$
    """,
)
POSTGRES_TRIGGERS = (
    "CREATE TRIGGER parking_lots_stamp_counts BEFORE UPDATE OF spots_total, spots_available "
    f"ON parking_lots FOR EACH ROW WHEN ({COUNTS_CHANGED}) "
    "EXECUTE FUNCTION parking_lots_stamp_counts()",
    "CREATE TRIGGER parking_lots_fullness_event AFTER UPDATE OF spots_available "
    f"ON parking_lots FOR EACH ROW WHEN ({CROSSES_ZERO}) "
    "EXECUTE FUNCTION parking_lots_fullness_event()",
)

# SQLite: 'now' is fixed for the whole statement, so the stamp and the
# event's updated_at agree. Recursive triggers are off: the stamp's own UPDATE
# (of counts_updated_at only) fires nothing.
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
SQLITE_ISO_NOW = "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')"
SQLITE_TRIGGERS = (
    "CREATE TRIGGER parking_lots_stamp_counts AFTER UPDATE OF spots_total, spots_available "
    f"ON parking_lots WHEN {COUNTS_CHANGED} BEGIN "
    f"UPDATE parking_lots SET counts_updated_at = {SQLITE_NOW} WHERE id = NEW.id; END",
    "CREATE TRIGGER parking_lots_fullness_event AFTER UPDATE OF spots_available "
    f"ON parking_lots WHEN {CROSSES_ZERO} BEGIN "
    f"INSERT INTO events (type, data, created_at) VALUES ({EVENT_TYPE}, "
    "json_object('lot_id', NEW.id, 'name', NEW.name, 'total', NEW.spots_total, "
    "'available', NEW.spots_available, 'reservable_available', 0, "
    f"'status', {STATUS}, 'updated_at', {SQLITE_ISO_NOW}), {SQLITE_NOW}); END",
)
TRIGGER_NAMES = ("parking_lots_fullness_event", "parking_lots_stamp_counts")

# SQLite's counter trigger of migration 0003 applied a status change as
# "remove the spot, add it back": two UPDATEs of the lot, so the lot passed
# through a state with one spot less (spots_total - 1), and the fullness
# event fired in between saw it. Like PostgreSQL's function, a change within
# one lot is now one UPDATE of spots_available; a move between lots stays
# remove-then-add (two lots).
COUNTED_CHANGE = (
    "(OLD.status = 'available') <> (NEW.status = 'available') OR OLD.lot_id <> NEW.lot_id"
)
SQLITE_COUNT_UPDATE_0003 = (
    "CREATE TRIGGER parking_spots_count_update AFTER UPDATE OF status, lot_id ON parking_spots "
    f"WHEN {COUNTED_CHANGE} BEGIN "
    "UPDATE parking_lots SET spots_total = spots_total - 1, "
    "spots_available = spots_available - (OLD.status = 'available') WHERE id = OLD.lot_id; "
    "UPDATE parking_lots SET spots_total = spots_total + 1, "
    "spots_available = spots_available + (NEW.status = 'available') WHERE id = NEW.lot_id; END"
)
SQLITE_COUNT_UPDATE = (
    "CREATE TRIGGER parking_spots_count_update AFTER UPDATE OF status, lot_id ON parking_spots "
    f"WHEN {COUNTED_CHANGE} BEGIN "
    "UPDATE parking_lots SET spots_available = spots_available "
    "+ (NEW.status = 'available') - (OLD.status = 'available') "
    "WHERE id = NEW.lot_id AND OLD.lot_id = NEW.lot_id; "
    "UPDATE parking_lots SET spots_total = spots_total - 1, "
    "spots_available = spots_available - (OLD.status = 'available') "
    "WHERE id = OLD.lot_id AND OLD.lot_id <> NEW.lot_id; "
    "UPDATE parking_lots SET spots_total = spots_total + 1, "
    "spots_available = spots_available + (NEW.status = 'available') "
    "WHERE id = NEW.lot_id AND OLD.lot_id <> NEW.lot_id; END"
)


def create_sqlite_triggers() -> None:
    for statement in SQLITE_TRIGGERS:
        op.execute(statement)
    op.execute("DROP TRIGGER IF EXISTS parking_spots_count_update")
    op.execute(SQLITE_COUNT_UPDATE)


def upgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

    op.create_table(
        "idempotency_keys",
        sa.Column("id", big_id, primary_key=True),
        sa.Column("actor_type", sa.String(8), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("lock_token", sa.String(32), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("response_status", sa.Integer()),
        sa.Column("response_headers", sa.JSON()),
        sa.Column("response_body", sa.LargeBinary()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("actor_type", "actor_id", "key"),
        sa.CheckConstraint("state IN ('in_progress', 'committed', 'completed')", name="state"),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])

    op.create_table(
        "events",
        sa.Column("id", big_id, primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_events_undispatched",
        "events",
        ["id"],
        postgresql_where=sa.text("dispatched_at IS NULL"),
        sqlite_where=sa.text("dispatched_at IS NULL"),
    )

    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(255)),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", big_id, primary_key=True),
        sa.Column(
            "webhook_id",
            sa.Integer(),
            sa.ForeignKey("webhooks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "event_id", big_id, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("message_id", sa.String(40), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("response_status", sa.Integer()),
        sa.Column("last_error", sa.String(255)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
    )
    op.create_index(
        "ix_webhook_deliveries_webhook_id_id", "webhook_deliveries", ["webhook_id", "id"]
    )
    op.create_index("ix_webhook_deliveries_event_id", "webhook_deliveries", ["event_id"])
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )

    # Not in batch mode: rebuilding parking_lots on SQLite would drop the
    # counter triggers of migration 0003 (see 0006). A constant default only.
    op.add_column("parking_lots", sa.Column("counts_updated_at", sa.DateTime(timezone=True)))
    op.execute("UPDATE parking_lots SET counts_updated_at = CURRENT_TIMESTAMP")
    if postgres:
        op.create_check_constraint(
            "counts", "parking_lots", "spots_available >= 0 AND spots_available <= spots_total"
        )
        for statement in (*POSTGRES_FUNCTIONS, *POSTGRES_TRIGGERS):
            op.execute(statement)
    else:
        create_sqlite_triggers()


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER parking_lots_fullness_event ON parking_lots")
        op.execute("DROP TRIGGER parking_lots_stamp_counts ON parking_lots")
        op.execute("DROP FUNCTION parking_lots_fullness_event()")
        op.execute("DROP FUNCTION parking_lots_stamp_counts()")
        op.drop_constraint("ck_parking_lots_counts", "parking_lots", type_="check")
    else:
        for name in TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER {name}")
        op.execute("DROP TRIGGER parking_spots_count_update")
        op.execute(SQLITE_COUNT_UPDATE_0003)
    op.drop_column("parking_lots", "counts_updated_at")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    op.drop_table("events")
    op.drop_table("idempotency_keys")
