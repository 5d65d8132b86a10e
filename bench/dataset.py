"""The benchmark's dataset, loaded with a handful of set-based SQL statements.

Sizes (the defaults of `Sizes`): 100 lots x 100 spots, 1,000 drivers with five
vehicles each (one shared, precomputed password hash), 100,000 closed
historical tickets over the last 90 days and one open ticket on every third
spot. Everything is consistent the way the app keeps it:

* a spot is `occupied` exactly when it has an open ticket (spot n of a lot is
  occupied when n % 3 == 1; spot n = spots - 1 is out of service otherwise);
* a ticket's `lot_id`/`user_id` are its spot's lot and its vehicle's owner, the
  tariff is frozen from the lot, `duration_minutes` and `amount_due` follow the
  fee rule in billing.py (checked on a sample after loading);
* no spot and no vehicle has two tickets at the same time: the 90 days are cut
  into rounds, every spot has one ticket per round inside one half of the
  round, and within a half each vehicle parks once;
* vehicle 0 of every driver (their "daily car") is never parked, so the
  benchmark's drivers can book with it.

Ids are assigned explicitly (the database is fresh), so the benchmark can
address driver d (user id d + 1), lot l, spot n of lot l ((l - 1) * spots + n)
and the daily car of driver d ((d - 1) * vehicles_per_driver + 1) directly.

`make bench-scale` (bench/scale.py) adds a *busy lot* (`busy_lot_tickets` > 0):
one more lot, after the others, with `busy_lot_spots` spots and a long history
(`busy_lot_history_days`) parked by the vehicles of `fleet_drivers` extra
drivers (user ids after the drivers), so a lot with a million tickets and
reports over a year of it exist. It loads with `bulk=True`: the tickets'
indexes and foreign keys are built once after the rows are in, and the lot
counters are counted once instead of by a trigger per spot.
"""

import random
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from billing import Tariff, fee_for  # noqa: E402

PASSWORD = "bench-password-1"
HISTORY_DAYS = 90
MAX_STAY_MINUTES = 600


@dataclass(frozen=True)
class Sizes:
    lots: int = 100
    spots_per_lot: int = 100
    drivers: int = 1000
    vehicles_per_driver: int = 5
    closed_tickets: int = 100_000
    history_days: int = HISTORY_DAYS
    # The busy lot (lot id lots + 1), parked by the fleet drivers' vehicles only.
    busy_lot_spots: int = 0
    busy_lot_tickets: int = 0
    busy_lot_history_days: int = 3 * 365
    fleet_drivers: int = 0

    @property
    def spots(self) -> int:
        """The regular lots' spots (the busy lot's come after them)."""
        return self.lots * self.spots_per_lot

    @property
    def vehicles(self) -> int:
        """The regular drivers' vehicles (the fleet's come after them)."""
        return self.drivers * self.vehicles_per_driver

    @property
    def busy_lot(self) -> int | None:
        return self.lots + 1 if self.busy_lot_tickets else None

    def fleet_driver(self, f: int) -> int:
        """User id of fleet driver f (1-based)."""
        return self.drivers + 1 + f


def admin_email() -> str:
    return "admin@bench.example"


def driver_email(d: int) -> str:
    return f"driver{d}@bench.example"


def driver_user_id(d: int) -> int:
    return d + 1


def daily_car(d: int, sizes: Sizes) -> int:
    return (d - 1) * sizes.vehicles_per_driver + 1


def spot_id(lot: int, n: int, sizes: Sizes) -> int:
    return (lot - 1) * sizes.spots_per_lot + n


def history_plan(spots: int, tickets: int, days: int, vehicles: int) -> int:
    """Minutes in half a round for `tickets` on `spots` over `days` (see load())."""
    if -(-spots // 2) > vehicles:
        raise ValueError("need at least one vehicle per two spots for a clash-free history")
    rounds = -(-tickets // spots)
    half_window = days * 24 * 60 // rounds // 2  # minutes
    if half_window <= MAX_STAY_MINUTES + 1:
        raise ValueError(f"too many historical tickets for {days} days")
    return half_window


# Closed history: ticket i is round r = i / spots on spot j = i % spots,
# inside the first (even j) or second (odd j) half of the round. In one
# half every vehicle parks once, so neither a spot nor a vehicle is
# ever in two places at once, and every lot has tickets every day.
HISTORY = """
    WITH raw AS (
        SELECT i / %(h_spots)s AS r, i %% %(h_spots)s AS j
        FROM generate_series(0, %(h_tickets)s - 1) AS i
    ), planned AS (
        SELECT %(h_first_spot)s + j AS spot_id,
               %(h_first_vehicle)s + (j / 2 + r * 37) %% %(h_vehicles)s AS vehicle_id,
               date_trunc('minute', now()) - %(h_days)s * interval '1 day'
                 + ((2 * r + j %% 2) * %(half_window)s
                    + floor(random() * (%(half_window)s - %(max_stay)s - 1))::int)
                   * interval '1 minute' AS check_in,
               5 + floor(random() * (%(max_stay)s - 4))::int AS minutes
        FROM raw
    )
    INSERT INTO tickets (vehicle_id, spot_id, user_id, lot_id, plate_key, check_in, check_out,
                         check_in_day, check_out_day,
                         currency, hourly_rate, billing_increment_minutes,
                         grace_minutes, daily_max, amount_due, duration_minutes)
    SELECT p.vehicle_id, p.spot_id, v.user_id, s.lot_id, v.plate_key, p.check_in,
           p.check_in + p.minutes * interval '1 minute',
           (p.check_in AT TIME ZONE l.timezone)::date,
           ((p.check_in + p.minutes * interval '1 minute') AT TIME ZONE l.timezone)::date,
           l.currency, l.hourly_rate, l.billing_increment_minutes, l.grace_minutes,
           l.daily_max,
           CASE WHEN p.minutes <= l.grace_minutes THEN 0
                ELSE least(l.daily_max,
                           l.hourly_rate::bigint * l.billing_increment_minutes
                           * ceil(p.minutes::numeric / l.billing_increment_minutes)::bigint
                           / 60)
           END,
           p.minutes
    FROM planned AS p
    JOIN vehicles AS v ON v.id = p.vehicle_id
    JOIN parking_spots AS s ON s.id = p.spot_id
    JOIN parking_lots AS l ON l.id = s.lot_id
    ORDER BY p.check_in
"""


def load(conn, sizes: Sizes, password_hash: str, bulk: bool = False) -> dict:
    """Fill the (migrated, empty) database; returns row counts. Commits.

    bulk=True (PostgreSQL; for millions of tickets) loads in one transaction
    with the tickets' secondary indexes and foreign keys dropped and the lot
    counter triggers off, then builds the indexes, validates the foreign keys
    and counts the lots' spots once (see bulk_load())."""
    all_spots = sizes.spots + sizes.busy_lot_spots
    occupied_spots = sizes.lots * len(range(1, sizes.spots_per_lot + 1, 3)) + len(
        range(1, sizes.busy_lot_spots + 1, 3)
    )
    if occupied_spots > sizes.drivers * (sizes.vehicles_per_driver - 1):
        raise ValueError("not enough spare vehicles for the open tickets")
    fleet_vehicles = sizes.fleet_drivers * sizes.vehicles_per_driver
    params = {
        "hash": password_hash,
        "lots": sizes.lots,
        "spots": sizes.spots,
        "per_lot": sizes.spots_per_lot,
        "drivers": sizes.drivers,
        "per_driver": sizes.vehicles_per_driver,
        "vehicles": sizes.vehicles,
        "busy_lot": sizes.lots + 1,
        "busy_spots": sizes.busy_lot_spots,
        "fleet": sizes.fleet_drivers,
        "max_stay": MAX_STAY_MINUTES,
    }
    histories = [
        {
            "h_first_spot": 1,
            "h_spots": sizes.spots,
            "h_first_vehicle": 1,
            "h_vehicles": sizes.vehicles,
            "h_tickets": sizes.closed_tickets,
            "h_days": sizes.history_days + 1,
            "half_window": history_plan(
                sizes.spots, sizes.closed_tickets, sizes.history_days, sizes.vehicles
            ),
        }
    ]
    if sizes.busy_lot_tickets:
        histories.append(
            {
                "h_first_spot": sizes.spots + 1,
                "h_spots": sizes.busy_lot_spots,
                "h_first_vehicle": sizes.vehicles + 1,
                "h_vehicles": fleet_vehicles,
                "h_tickets": sizes.busy_lot_tickets,
                "h_days": sizes.busy_lot_history_days + 1,
                "half_window": history_plan(
                    sizes.busy_lot_spots,
                    sizes.busy_lot_tickets,
                    sizes.busy_lot_history_days,
                    fleet_vehicles,
                ),
            }
        )
    with (
        bulk_load(conn) if bulk else nullcontext(),
        rollups_counted_once(conn),
        conn.cursor() as cur,
    ):
        cur.execute("SELECT setseed(0.42)")
        cur.execute(
            """
            INSERT INTO users (id, username, email, password_hash, role, token_version, created_at)
            VALUES (1, 'benchadmin', 'admin@bench.example', %(hash)s, 'admin', 0,
                    now() - interval '120 days');
            INSERT INTO users (id, username, email, password_hash, role, token_version, created_at)
            SELECT d + 1, 'driver' || d, 'driver' || d || '@bench.example', %(hash)s, 'driver', 0,
                   now() - interval '100 days'
            FROM generate_series(1, %(drivers)s + %(fleet)s) AS d;

            INSERT INTO parking_lots (id, name, location, timezone, currency, hourly_rate,
                                      billing_increment_minutes, grace_minutes, daily_max,
                                      created_at)
            SELECT l, 'Lot ' || l, 'Bench City, block ' || l, 'Africa/Nairobi', 'KES',
                   10000 + (l %% 5) * 2000, 30, 10, 100000, now() - interval '120 days'
            FROM generate_series(1, %(lots)s + (%(busy_spots)s > 0)::int) AS l;

            INSERT INTO parking_spots (id, lot_id, spot_number, status, kind)
            SELECT (l - 1) * %(per_lot)s + n, l, 'S' || n,
                   CASE WHEN n %% 3 = 1 THEN 'occupied'
                        WHEN n = %(per_lot)s - 1 THEN 'out_of_service'
                        ELSE 'available' END,
                   CASE WHEN n %% 20 = 0 THEN 'ev'
                        WHEN n %% 25 = 0 THEN 'accessible'
                        ELSE 'standard' END
            FROM generate_series(1, %(lots)s) AS l, generate_series(1, %(per_lot)s) AS n;

            INSERT INTO parking_spots (id, lot_id, spot_number, status, kind)
            SELECT %(spots)s + n, %(busy_lot)s, 'S' || n,
                   CASE WHEN n %% 3 = 1 THEN 'occupied'
                        WHEN n = %(busy_spots)s - 1 THEN 'out_of_service'
                        ELSE 'available' END,
                   CASE WHEN n %% 20 = 0 THEN 'ev'
                        WHEN n %% 25 = 0 THEN 'accessible'
                        ELSE 'standard' END
            FROM generate_series(1, %(busy_spots)s) AS n;

            INSERT INTO vehicles (id, plate_number, plate_key, type, user_id, created_at)
            SELECT (d - 1) * %(per_driver)s + k + 1,
                   'KB' || lpad(d::text, 5, '0') || ' ' || chr(65 + k),
                   'KB' || lpad(d::text, 5, '0') || chr(65 + k),
                   CASE WHEN k = 0 THEN 'Sedan' ELSE 'Van' END,
                   d + 1, now() - interval '100 days'
            FROM generate_series(1, %(drivers)s + %(fleet)s) AS d,
                 generate_series(0, %(per_driver)s - 1) AS k;
            """,
            params,
        )
        for history in histories:
            cur.execute(HISTORY, {**params, **history})
        # Open tickets on every occupied spot, each with a regular driver's
        # spare (not daily) car: their history ended a day ago.
        cur.execute(
            """
            WITH occupied AS (
                SELECT id, lot_id, row_number() OVER (ORDER BY id) - 1 AS q,
                       now() - (1 + floor(random() * 720)::int) * interval '1 minute' AS check_in
                FROM parking_spots WHERE status = 'occupied'
            )
            INSERT INTO tickets (vehicle_id, spot_id, user_id, lot_id, plate_key, check_in,
                                 check_in_day, currency, hourly_rate, billing_increment_minutes,
                                 grace_minutes, daily_max)
            SELECT v.id, o.id, v.user_id, o.lot_id, v.plate_key, o.check_in,
                   (o.check_in AT TIME ZONE l.timezone)::date,
                   l.currency, l.hourly_rate, l.billing_increment_minutes, l.grace_minutes,
                   l.daily_max
            FROM occupied AS o
            JOIN parking_lots AS l ON l.id = o.lot_id
            JOIN vehicles AS v
              ON v.id = (o.q %% %(drivers)s) * %(per_driver)s + o.q / %(drivers)s + 2
            """,
            params,
        )
        for table in ("users", "parking_lots", "parking_spots", "vehicles", "tickets"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
    conn.commit()
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM parking_lots),
                   (SELECT count(*) FROM parking_spots), (SELECT count(*) FROM vehicles),
                   (SELECT count(*) FROM tickets WHERE check_out IS NOT NULL),
                   (SELECT count(*) FROM tickets WHERE check_out IS NULL)
            """
        )
        users, lots, spots, vehicles, closed, open_ = cur.fetchone()
    conn.commit()
    if spots != all_spots:
        raise RuntimeError(f"loaded {spots} spots, expected {all_spots}")
    return {
        "users": users,
        "lots": lots,
        "spots": spots,
        "vehicles": vehicles,
        "closed_tickets": closed,
        "open_tickets": open_,
    }


# The lot counters from scratch (as migration 0003 fills them).
COUNT_LOT_SPOTS = """
    UPDATE parking_lots SET
        spots_total = (SELECT count(*) FROM parking_spots AS s WHERE s.lot_id = parking_lots.id),
        spots_available = (SELECT count(*) FROM parking_spots AS s
                           WHERE s.lot_id = parking_lots.id AND s.status = 'available')
"""


# The ticket counters and daily rollups from scratch (as migration 0009 fills
# them). One grouped pass over tickets: bulk_load() rebuilds the tickets'
# indexes only after this runs, and a count per lot then read the whole table
# twice for each of the large dataset's 1,001 lots (the load never finished).
COUNT_LOT_TICKETS = """
    UPDATE parking_lots AS l SET tickets_total = coalesce(c.total, 0),
                                 tickets_open = coalesce(c.open, 0)
    FROM parking_lots AS p
    LEFT JOIN (SELECT lot_id, count(*) AS total, count(*) FILTER (WHERE check_out IS NULL) AS open
               FROM tickets GROUP BY lot_id) AS c ON c.lot_id = p.id
    WHERE p.id = l.id;
    DELETE FROM lot_days;
    INSERT INTO lot_days (lot_id, day, tickets_started)
    SELECT lot_id, check_in_day, count(*) FROM tickets GROUP BY lot_id, check_in_day;
    INSERT INTO lot_days (lot_id, day, tickets_closed, revenue, stay_minutes, outstanding,
                          permit_sessions)
    SELECT lot_id, check_out_day, count(*), coalesce(sum(amount_due), 0),
           coalesce(sum(duration_minutes), 0),
           coalesce(sum(greatest(amount_due - amount_paid, 0)), 0), count(permit_id)
    FROM tickets WHERE check_out IS NOT NULL GROUP BY lot_id, check_out_day
    ON CONFLICT (lot_id, day) DO UPDATE SET tickets_closed = excluded.tickets_closed,
        revenue = excluded.revenue, stay_minutes = excluded.stay_minutes,
        outstanding = excluded.outstanding, permit_sessions = excluded.permit_sessions;
"""


@contextmanager
def rollups_counted_once(conn):
    """Load tickets with their roll-up triggers off (each would update the
    lot's counters and day row once per ticket) and count both once after."""
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE tickets DISABLE TRIGGER USER")
    yield
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE tickets ENABLE TRIGGER USER")
        cur.execute(COUNT_LOT_TICKETS)


@contextmanager
def bulk_load(conn):
    """Run the body with the tickets' secondary indexes and foreign keys dropped
    and parking_spots' user triggers (the lot counters) off; then rebuild all
    of them as they were and count the lots' spots once. One transaction: on
    an error nothing is left half-done.

    Maintaining seven indexes and four foreign-key checks row by row made a
    3-million-ticket load several times slower than building them afterwards,
    and the counter triggers updated each lot row once per spot inserted
    (issue 16: 1,554 pages for 1,000 lot rows).
    """
    with conn.cursor() as cur:
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = 'tickets' AND indexname <> 'pk_tickets'"
        )
        indexes = cur.fetchall()
        cur.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'tickets'::regclass AND contype = 'f'"
        )
        foreign_keys = cur.fetchall()
        for name, _ in foreign_keys:
            cur.execute(f'ALTER TABLE tickets DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        cur.execute("ALTER TABLE parking_spots DISABLE TRIGGER USER")
        cur.execute("SET LOCAL work_mem = '256MB'")
        cur.execute("SET LOCAL maintenance_work_mem = '512MB'")
    yield
    with conn.cursor() as cur:
        for _, definition in indexes:
            cur.execute(definition)
        for name, definition in foreign_keys:
            cur.execute(f'ALTER TABLE tickets ADD CONSTRAINT "{name}" {definition}')
        cur.execute("ALTER TABLE parking_spots ENABLE TRIGGER USER")
        cur.execute(COUNT_LOT_SPOTS)


def check(conn, sample: int = 500, overlaps: bool = True) -> list[str]:
    """Problems with the loaded data (an empty list when it is consistent).

    overlaps=False skips the search for overlapping stays (a self-join of the
    tickets that is fine at 100,000 and hours at millions; the history is
    clash-free by construction, see load())."""
    problems = []
    with conn.cursor() as cur:
        since = 0
        if not overlaps:
            cur.execute("SELECT coalesce(max(id), 0) FROM tickets")
            (since,) = cur.fetchone()
        problems += consistency_problems(cur, since_ticket=since)
        cur.execute(
            """
            SELECT amount_due, duration_minutes, hourly_rate, billing_increment_minutes,
                   grace_minutes, daily_max, check_out - check_in
            FROM tickets WHERE check_out IS NOT NULL ORDER BY id LIMIT 100000
            """
        )
        rows = cur.fetchall()
    for row in random.Random(7).sample(rows, min(sample, len(rows))):
        amount, minutes, rate, increment, grace, daily_max, stay = row
        expected, _ = fee_for(stay, Tariff(rate, increment, grace, daily_max))
        if amount != expected or stay != timedelta(minutes=minutes):
            problems.append(f"ticket fee {amount} for {stay} should be {expected}")
            break
    return problems


def consistency_problems(cur, since_ticket: int = 0) -> list[str]:
    """The invariants the app promises, checked in SQL over the whole database.

    Tickets with id > since_ticket (the ones written during the benchmark) are
    checked for overlapping stays on a spot or of a vehicle.
    """
    checks = {
        "spots with two open tickets": """
            SELECT count(*) FROM (SELECT spot_id FROM tickets WHERE check_out IS NULL
                                  GROUP BY spot_id HAVING count(*) > 1) AS x""",
        "vehicles with two open tickets": """
            SELECT count(*) FROM (SELECT vehicle_id FROM tickets WHERE check_out IS NULL
                                  GROUP BY vehicle_id HAVING count(*) > 1) AS x""",
        "spots whose status disagrees with the open tickets": """
            SELECT count(*) FROM parking_spots AS s
            WHERE (s.status = 'occupied') <> EXISTS (
                SELECT 1 FROM tickets AS t WHERE t.spot_id = s.id AND t.check_out IS NULL)""",
        "lots whose spot counters disagree with their spots": """
            SELECT count(*) FROM parking_lots AS l
            WHERE l.spots_total <> (SELECT count(*) FROM parking_spots AS s
                                    WHERE s.lot_id = l.id)
               OR l.spots_available <> (SELECT count(*) FROM parking_spots AS s
                                        WHERE s.lot_id = l.id AND s.status = 'available')""",
        "lots whose ticket counters disagree with their tickets": """
            SELECT count(*) FROM parking_lots AS l
            LEFT JOIN (SELECT lot_id, count(*) AS total,
                              count(*) FILTER (WHERE check_out IS NULL) AS open
                       FROM tickets GROUP BY lot_id) AS c ON c.lot_id = l.id
            WHERE l.tickets_total <> coalesce(c.total, 0)
               OR l.tickets_open <> coalesce(c.open, 0)""",
        "tickets whose lot or owner disagrees with spot or vehicle": """
            SELECT count(*) FROM tickets AS t
            JOIN parking_spots AS s ON s.id = t.spot_id
            JOIN vehicles AS v ON v.id = t.vehicle_id
            WHERE t.lot_id <> s.lot_id OR t.user_id <> v.user_id""",
        "overlapping stays on one spot": """
            SELECT count(*) FROM tickets AS a JOIN tickets AS b
              ON b.spot_id = a.spot_id AND b.id <> a.id
             AND a.check_in < coalesce(b.check_out, 'infinity')
             AND b.check_in < coalesce(a.check_out, 'infinity')
            WHERE a.id > %(since)s""",
        "overlapping stays of one vehicle": """
            SELECT count(*) FROM tickets AS a JOIN tickets AS b
              ON b.vehicle_id = a.vehicle_id AND b.id <> a.id
             AND a.check_in < coalesce(b.check_out, 'infinity')
             AND b.check_in < coalesce(a.check_out, 'infinity')
            WHERE a.id > %(since)s""",
    }
    problems = []
    for label, sql in checks.items():
        cur.execute(sql, {"since": since_ticket})
        (n,) = cur.fetchone()
        if n:
            problems.append(f"{n} {label}")
    return problems
