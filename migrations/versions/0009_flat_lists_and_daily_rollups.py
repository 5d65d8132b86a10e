"""Flat at millions of rows: indexes in each list's order, ticket counters,
daily rollups, and HOT-friendly counter rows.

* Indexes: tickets (check_in, id) for everyone's tickets newest first (the
  admin list read and top-N-sorted every ticket without it); the (user_id,
  check_in) and (lot_id, check_in) indexes end in id, the list's tie-break;
  a partial (check_in, id) of open tickets; parking_spots (lot_id, id) for a
  lot's spots in id order.
* parking_lots.tickets_total / tickets_open: kept by a trigger on tickets in
  the writing transaction (insert, check_out set or cleared, delete), so the
  ticket list's X-Total-Count is a sum over lots (or one lot's row) instead
  of a count over the whole history. Every ticket write already holds its
  lot's row lock (routes/, "Lock order"): no new contention.
* lot_days: one row per lot and local day with what the report shows
  (tickets started and closed, revenue, stay minutes, what closed tickets
  still owe, permit sessions, payments by method), kept by triggers on
  tickets and payments in the writing transaction. A report reads one row
  per day asked for, whatever the lot's history. The local day of a ticket's
  check-in and check-out and of a payment is stored on the row
  (tickets.check_in_day / check_out_day, payments.day): the app writes it (it
  knows the lot's time zone); on PostgreSQL a BEFORE trigger fills it for any
  other writer from the lot's time zone. A lot's time zone cannot change once
  it has tickets (the API refuses), so the days stay right.
* parking_lots (fillfactor 50) and lot_days (fillfactor 70) leave room in
  each page, so the counter updates of every booking and checkout stay HOT
  (no new index entries, no page splits); docs/scaling.md has the autovacuum
  settings and the measurement.

On SQLite the triggers are written out per event (no functions), with the
same arithmetic; the day columns come from the app only.

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-01
"""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None

METHODS = ("cash", "card", "app", "reservation")

# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

POSTGRES_FUNCTIONS = (
    # The local days, for writers that did not give them (psql, a bulk load).
    """
    CREATE FUNCTION tickets_local_days() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE zone text;
    BEGIN
        IF NEW.check_in_day IS NULL OR (NEW.check_out IS NOT NULL AND NEW.check_out_day IS NULL) THEN
            SELECT timezone INTO zone FROM parking_lots WHERE id = NEW.lot_id;
            IF NEW.check_in_day IS NULL THEN
                NEW.check_in_day := (NEW.check_in AT TIME ZONE zone)::date;
            END IF;
            IF NEW.check_out IS NOT NULL AND NEW.check_out_day IS NULL THEN
                NEW.check_out_day := (NEW.check_out AT TIME ZONE zone)::date;
            END IF;
        END IF;
        IF NEW.check_out IS NULL THEN
            NEW.check_out_day := NULL;
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE FUNCTION payments_local_day() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.day IS NULL THEN
            NEW.day := (NEW.created_at AT TIME ZONE
                (SELECT timezone FROM parking_lots WHERE id = NEW.lot_id))::date;
        END IF;
        RETURN NEW;
    END $$
    """,
    # A ticket's part of its lot's day rows, added (sign 1) or taken back (-1).
    """
    CREATE FUNCTION lot_days_add_ticket(t tickets, sign int) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        IF t.check_in_day IS NOT NULL THEN
            INSERT INTO lot_days (lot_id, day, tickets_started)
            VALUES (t.lot_id, t.check_in_day, sign)
            ON CONFLICT (lot_id, day) DO UPDATE
            SET tickets_started = lot_days.tickets_started + sign;
        END IF;
        IF t.check_out IS NOT NULL AND t.check_out_day IS NOT NULL THEN
            INSERT INTO lot_days (
                lot_id, day, tickets_closed, revenue, stay_minutes, outstanding, permit_sessions
            ) VALUES (
                t.lot_id, t.check_out_day, sign, sign * coalesce(t.amount_due, 0),
                sign * coalesce(t.duration_minutes, 0),
                sign * greatest(coalesce(t.amount_due, 0) - t.amount_paid, 0),
                sign * (t.permit_id IS NOT NULL)::int
            )
            ON CONFLICT (lot_id, day) DO UPDATE SET
                tickets_closed = lot_days.tickets_closed + EXCLUDED.tickets_closed,
                revenue = lot_days.revenue + EXCLUDED.revenue,
                stay_minutes = lot_days.stay_minutes + EXCLUDED.stay_minutes,
                outstanding = lot_days.outstanding + EXCLUDED.outstanding,
                permit_sessions = lot_days.permit_sessions + EXCLUDED.permit_sessions;
        END IF;
    END $$
    """,
    """
    CREATE FUNCTION tickets_roll_up() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            PERFORM lot_days_add_ticket(OLD, -1);
            UPDATE parking_lots SET tickets_total = tickets_total - 1,
                tickets_open = tickets_open - (OLD.check_out IS NULL)::int
            WHERE id = OLD.lot_id;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM lot_days_add_ticket(NEW, 1);
            UPDATE parking_lots SET tickets_total = tickets_total + 1,
                tickets_open = tickets_open + (NEW.check_out IS NULL)::int
            WHERE id = NEW.lot_id;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION payments_roll_up() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO lot_days (lot_id, day, paid_cash, paid_card, paid_app, paid_reservation)
        VALUES (
            NEW.lot_id, NEW.day,
            CASE WHEN NEW.method = 'cash' THEN NEW.amount ELSE 0 END,
            CASE WHEN NEW.method = 'card' THEN NEW.amount ELSE 0 END,
            CASE WHEN NEW.method = 'app' THEN NEW.amount ELSE 0 END,
            CASE WHEN NEW.method = 'reservation' THEN NEW.amount ELSE 0 END
        )
        ON CONFLICT (lot_id, day) DO UPDATE SET
            paid_cash = lot_days.paid_cash + EXCLUDED.paid_cash,
            paid_card = lot_days.paid_card + EXCLUDED.paid_card,
            paid_app = lot_days.paid_app + EXCLUDED.paid_app,
            paid_reservation = lot_days.paid_reservation + EXCLUDED.paid_reservation;
        RETURN NULL;
    END $$
    """,
)
# The columns whose change moves a ticket's part of the rollups and counters
# (paid_until and the like do not: no work for them).
ROLLED_UP = (
    "lot_id, check_in_day, check_out, check_out_day, amount_due, duration_minutes, "
    "amount_paid, permit_id"
)
POSTGRES_TRIGGERS = (
    "CREATE TRIGGER tickets_local_days BEFORE INSERT OR UPDATE ON tickets "
    "FOR EACH ROW EXECUTE FUNCTION tickets_local_days()",
    "CREATE TRIGGER payments_local_day BEFORE INSERT ON payments "
    "FOR EACH ROW EXECUTE FUNCTION payments_local_day()",
    "CREATE TRIGGER tickets_roll_up_insert_delete AFTER INSERT OR DELETE ON tickets "
    "FOR EACH ROW EXECUTE FUNCTION tickets_roll_up()",
    f"CREATE TRIGGER tickets_roll_up_update AFTER UPDATE OF {ROLLED_UP} ON tickets "
    "FOR EACH ROW EXECUTE FUNCTION tickets_roll_up()",
    "CREATE TRIGGER payments_roll_up AFTER INSERT ON payments "
    "FOR EACH ROW EXECUTE FUNCTION payments_roll_up()",
)

# ---------------------------------------------------------------------------
# SQLite: the same arithmetic, one trigger per event
# ---------------------------------------------------------------------------


def _sqlite_started(row: str, sign: int) -> str:
    return (
        f"INSERT INTO lot_days (lot_id, day, tickets_started) "
        f"SELECT {row}.lot_id, {row}.check_in_day, {sign} WHERE {row}.check_in_day IS NOT NULL "
        f"ON CONFLICT (lot_id, day) DO UPDATE SET tickets_started = tickets_started + {sign};"
    )


def _sqlite_closed(row: str, sign: int) -> str:
    return (
        "INSERT INTO lot_days (lot_id, day, tickets_closed, revenue, stay_minutes, outstanding, "
        f"permit_sessions) SELECT {row}.lot_id, {row}.check_out_day, {sign}, "
        f"{sign} * coalesce({row}.amount_due, 0), {sign} * coalesce({row}.duration_minutes, 0), "
        f"{sign} * max(coalesce({row}.amount_due, 0) - {row}.amount_paid, 0), "
        f"{sign} * ({row}.permit_id IS NOT NULL) "
        f"WHERE {row}.check_out IS NOT NULL AND {row}.check_out_day IS NOT NULL "
        "ON CONFLICT (lot_id, day) DO UPDATE SET "
        "tickets_closed = tickets_closed + excluded.tickets_closed, "
        "revenue = revenue + excluded.revenue, "
        "stay_minutes = stay_minutes + excluded.stay_minutes, "
        "outstanding = outstanding + excluded.outstanding, "
        "permit_sessions = permit_sessions + excluded.permit_sessions;"
    )


def _sqlite_counters(row: str, sign: int) -> str:
    return (
        f"UPDATE parking_lots SET tickets_total = tickets_total + {sign}, "
        f"tickets_open = tickets_open + {sign} * ({row}.check_out IS NULL) "
        f"WHERE id = {row}.lot_id;"
    )


def _sqlite_ticket(row: str, sign: int) -> str:
    return (
        _sqlite_started(row, sign)
        + " "
        + _sqlite_closed(row, sign)
        + " "
        + _sqlite_counters(row, sign)
    )


PAID = " ".join(
    f"CASE WHEN NEW.method = '{method}' THEN NEW.amount ELSE 0 END," for method in METHODS
).rstrip(",")
SQLITE_TRIGGERS = (
    f"CREATE TRIGGER tickets_roll_up_insert AFTER INSERT ON tickets BEGIN {_sqlite_ticket('NEW', 1)} END",
    f"CREATE TRIGGER tickets_roll_up_delete AFTER DELETE ON tickets BEGIN {_sqlite_ticket('OLD', -1)} END",
    f"CREATE TRIGGER tickets_roll_up_update AFTER UPDATE OF {ROLLED_UP} ON tickets BEGIN "
    f"{_sqlite_ticket('OLD', -1)} {_sqlite_ticket('NEW', 1)} END",
    "CREATE TRIGGER payments_roll_up AFTER INSERT ON payments BEGIN "
    "INSERT INTO lot_days (lot_id, day, paid_cash, paid_card, paid_app, paid_reservation) "
    f"SELECT NEW.lot_id, NEW.day, {PAID} WHERE NEW.day IS NOT NULL "
    "ON CONFLICT (lot_id, day) DO UPDATE SET "
    + ", ".join(f"paid_{m} = paid_{m} + excluded.paid_{m}" for m in METHODS)
    + "; END",
)
SQLITE_TRIGGER_NAMES = (
    "tickets_roll_up_insert",
    "tickets_roll_up_delete",
    "tickets_roll_up_update",
    "payments_roll_up",
)


def create_sqlite_triggers() -> None:
    """For a later batch migration of tickets or payments, which drops them."""
    for statement in SQLITE_TRIGGERS:
        op.execute(statement)


# ---------------------------------------------------------------------------


def _local_days_in_python(bind) -> None:
    """SQLite has no time zones: compute the local days here (small databases)."""
    zones = dict(bind.execute(sa.text("SELECT id, timezone FROM parking_lots")).all())

    def local(value, zone):
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(ZoneInfo(zones.get(zone) or "UTC")).date().isoformat()

    tickets = bind.execute(sa.text("SELECT id, lot_id, check_in, check_out FROM tickets")).all()
    if tickets:
        bind.execute(
            sa.text("UPDATE tickets SET check_in_day = :a, check_out_day = :b WHERE id = :id"),
            [
                {"id": id_, "a": local(check_in, lot), "b": local(check_out, lot)}
                for id_, lot, check_in, check_out in tickets
            ],
        )
    payments = bind.execute(sa.text("SELECT id, lot_id, created_at FROM payments")).all()
    if payments:
        bind.execute(
            sa.text("UPDATE payments SET day = :d WHERE id = :id"),
            [{"id": id_, "d": local(at, lot)} for id_, lot, at in payments],
        )


def upgrade():
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"

    # ---- indexes in each list's order
    op.create_index("ix_tickets_check_in_id", "tickets", ["check_in", "id"])
    op.create_index(
        "ix_tickets_open_check_in_id",
        "tickets",
        ["check_in", "id"],
        postgresql_where=sa.text("check_out IS NULL"),
        sqlite_where=sa.text("check_out IS NULL"),
    )
    op.create_index("ix_tickets_user_check_in_id", "tickets", ["user_id", "check_in", "id"])
    op.drop_index("ix_tickets_user_check_in", table_name="tickets")
    op.create_index("ix_tickets_lot_check_in_id", "tickets", ["lot_id", "check_in", "id"])
    op.drop_index("ix_tickets_lot_check_in", table_name="tickets")
    op.create_index("ix_parking_spots_lot_id_id", "parking_spots", ["lot_id", "id"])

    # ---- the local days, on the rows (added in place: no table is rebuilt)
    op.add_column("tickets", sa.Column("check_in_day", sa.Date()))
    op.add_column("tickets", sa.Column("check_out_day", sa.Date()))
    op.add_column("payments", sa.Column("day", sa.Date()))
    op.add_column(
        "parking_lots", sa.Column("tickets_total", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "parking_lots", sa.Column("tickets_open", sa.Integer(), nullable=False, server_default="0")
    )
    op.create_table(
        "lot_days",
        sa.Column("lot_id", sa.Integer(), sa.ForeignKey("parking_lots.id"), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        *(
            sa.Column(name, sa.Integer(), nullable=False, server_default="0")
            for name in ("tickets_started", "tickets_closed", "permit_sessions")
        ),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
            for name in ("revenue", "stay_minutes", "outstanding")
        ),
        *(
            sa.Column(f"paid_{method}", sa.BigInteger(), nullable=False, server_default="0")
            for method in METHODS
        ),
    )

    if postgres:
        # No ticket or payment is written until this migration commits, so
        # nothing slips between the backfill and the triggers below.
        op.execute("LOCK TABLE tickets, payments IN SHARE ROW EXCLUSIVE MODE")
        op.execute(
            "UPDATE tickets SET check_in_day = (tickets.check_in AT TIME ZONE l.timezone)::date, "
            "check_out_day = (tickets.check_out AT TIME ZONE l.timezone)::date "
            "FROM parking_lots AS l WHERE l.id = tickets.lot_id"
        )
        op.execute(
            "UPDATE payments SET day = (payments.created_at AT TIME ZONE l.timezone)::date "
            "FROM parking_lots AS l WHERE l.id = payments.lot_id"
        )
        for statement in (*POSTGRES_FUNCTIONS, *POSTGRES_TRIGGERS):
            op.execute(statement)
        op.execute("ALTER TABLE parking_lots SET (fillfactor = 50)")
        op.execute("ALTER TABLE lot_days SET (fillfactor = 70)")
    else:
        _local_days_in_python(bind)
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)

    op.execute(
        "UPDATE parking_lots SET "
        "tickets_total = (SELECT count(*) FROM tickets AS t WHERE t.lot_id = parking_lots.id), "
        "tickets_open = (SELECT count(*) FROM tickets AS t "
        "WHERE t.lot_id = parking_lots.id AND t.check_out IS NULL)"
    )
    op.execute(
        "INSERT INTO lot_days (lot_id, day, tickets_started) "
        "SELECT lot_id, check_in_day, count(*) FROM tickets GROUP BY lot_id, check_in_day"
    )
    op.execute(
        "INSERT INTO lot_days (lot_id, day, tickets_closed, revenue, stay_minutes, outstanding, "
        "permit_sessions) SELECT lot_id, check_out_day, count(*), coalesce(sum(amount_due), 0), "
        "coalesce(sum(duration_minutes), 0), "
        "coalesce(sum(CASE WHEN amount_due > amount_paid THEN amount_due - amount_paid ELSE 0 END), 0), "
        "count(permit_id) FROM tickets WHERE check_out IS NOT NULL GROUP BY lot_id, check_out_day "
        "ON CONFLICT (lot_id, day) DO UPDATE SET tickets_closed = excluded.tickets_closed, "
        "revenue = excluded.revenue, stay_minutes = excluded.stay_minutes, "
        "outstanding = excluded.outstanding, permit_sessions = excluded.permit_sessions"
    )
    paid = ", ".join(
        f"coalesce(sum(CASE WHEN method = '{m}' THEN amount ELSE 0 END), 0)" for m in METHODS
    )
    op.execute(
        "INSERT INTO lot_days (lot_id, day, paid_cash, paid_card, paid_app, paid_reservation) "
        f"SELECT lot_id, day, {paid} FROM payments GROUP BY lot_id, day "
        "ON CONFLICT (lot_id, day) DO UPDATE SET "
        + ", ".join(f"paid_{m} = excluded.paid_{m}" for m in METHODS)
    )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE parking_lots RESET (fillfactor)")
        for name, table in (
            ("payments_roll_up", "payments"),
            ("tickets_roll_up_update", "tickets"),
            ("tickets_roll_up_insert_delete", "tickets"),
            ("payments_local_day", "payments"),
            ("tickets_local_days", "tickets"),
        ):
            op.execute(f"DROP TRIGGER {name} ON {table}")
        for function in (
            "payments_roll_up()",
            "tickets_roll_up()",
            "lot_days_add_ticket(tickets, int)",
            "payments_local_day()",
            "tickets_local_days()",
        ):
            op.execute(f"DROP FUNCTION {function}")
    else:
        for name in SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("lot_days")
    op.drop_column("parking_lots", "tickets_open")
    op.drop_column("parking_lots", "tickets_total")
    op.drop_column("payments", "day")
    op.drop_column("tickets", "check_out_day")
    op.drop_column("tickets", "check_in_day")
    op.drop_index("ix_parking_spots_lot_id_id", table_name="parking_spots")
    op.create_index("ix_tickets_lot_check_in", "tickets", ["lot_id", "check_in"])
    op.drop_index("ix_tickets_lot_check_in_id", table_name="tickets")
    op.create_index("ix_tickets_user_check_in", "tickets", ["user_id", "check_in"])
    op.drop_index("ix_tickets_user_check_in_id", table_name="tickets")
    op.drop_index("ix_tickets_open_check_in_id", table_name="tickets")
    op.drop_index("ix_tickets_check_in_id", table_name="tickets")
