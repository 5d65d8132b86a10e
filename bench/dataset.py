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
"""

import random
import sys
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

    @property
    def spots(self) -> int:
        return self.lots * self.spots_per_lot

    @property
    def vehicles(self) -> int:
        return self.drivers * self.vehicles_per_driver


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


def load(conn, sizes: Sizes, password_hash: str) -> dict:
    """Fill the (migrated, empty) database; returns row counts. Commits."""
    occupied_spots = sizes.lots * len(range(1, sizes.spots_per_lot + 1, 3))
    if occupied_spots > sizes.drivers * (sizes.vehicles_per_driver - 1):
        raise ValueError("not enough spare vehicles for the open tickets")
    half_spots = -(-sizes.spots // 2)
    if half_spots > sizes.vehicles:
        raise ValueError("need at least one vehicle per two spots for a clash-free history")
    rounds = -(-sizes.closed_tickets // sizes.spots)
    half_window = HISTORY_DAYS * 24 * 60 // rounds // 2  # minutes
    if half_window <= MAX_STAY_MINUTES + 1:
        raise ValueError("too many historical tickets for 90 days")
    params = {
        "hash": password_hash,
        "lots": sizes.lots,
        "spots": sizes.spots_per_lot,
        "all_spots": sizes.spots,
        "drivers": sizes.drivers,
        "per_driver": sizes.vehicles_per_driver,
        "vehicles": sizes.vehicles,
        "closed": sizes.closed_tickets,
        "half_window": half_window,
        "max_stay": MAX_STAY_MINUTES,
        "history_days": HISTORY_DAYS + 1,
    }
    with conn.cursor() as cur:
        cur.execute("SELECT setseed(0.42)")
        cur.execute(
            """
            INSERT INTO users (id, username, email, password_hash, role, token_version, created_at)
            VALUES (1, 'benchadmin', 'admin@bench.example', %(hash)s, 'admin', 0,
                    now() - interval '120 days');
            INSERT INTO users (id, username, email, password_hash, role, token_version, created_at)
            SELECT d + 1, 'driver' || d, 'driver' || d || '@bench.example', %(hash)s, 'driver', 0,
                   now() - interval '100 days'
            FROM generate_series(1, %(drivers)s) AS d;

            INSERT INTO parking_lots (id, name, location, timezone, currency, hourly_rate,
                                      billing_increment_minutes, grace_minutes, daily_max,
                                      created_at)
            SELECT l, 'Lot ' || l, 'Bench City, block ' || l, 'Africa/Nairobi', 'KES',
                   10000 + (l %% 5) * 2000, 30, 10, 100000, now() - interval '120 days'
            FROM generate_series(1, %(lots)s) AS l;

            INSERT INTO parking_spots (id, lot_id, spot_number, status, kind)
            SELECT (l - 1) * %(spots)s + n, l, 'S' || n,
                   CASE WHEN n %% 3 = 1 THEN 'occupied'
                        WHEN n = %(spots)s - 1 THEN 'out_of_service'
                        ELSE 'available' END,
                   CASE WHEN n %% 20 = 0 THEN 'ev'
                        WHEN n %% 25 = 0 THEN 'accessible'
                        ELSE 'standard' END
            FROM generate_series(1, %(lots)s) AS l, generate_series(1, %(spots)s) AS n;

            INSERT INTO vehicles (id, plate_number, type, user_id, created_at)
            SELECT (d - 1) * %(per_driver)s + k + 1,
                   'KB' || lpad(d::text, 4, '0') || ' ' || chr(65 + k),
                   CASE WHEN k = 0 THEN 'Sedan' ELSE 'Van' END,
                   d + 1, now() - interval '100 days'
            FROM generate_series(1, %(drivers)s) AS d,
                 generate_series(0, %(per_driver)s - 1) AS k;
            """,
            params,
        )
        # Closed history: ticket i is round r = i / spots on spot j = i % spots,
        # inside the first (even j) or second (odd j) half of the round. In one
        # half every vehicle parks once, so neither a spot nor a vehicle is
        # ever in two places at once, and every lot has tickets every day.
        cur.execute(
            """
            WITH raw AS (
                SELECT i / %(all_spots)s AS r, i %% %(all_spots)s AS j
                FROM generate_series(0, %(closed)s - 1) AS i
            ), planned AS (
                SELECT j + 1 AS spot_id,
                       (j / 2 + r * 37) %% %(vehicles)s + 1 AS vehicle_id,
                       date_trunc('minute', now()) - %(history_days)s * interval '1 day'
                         + ((2 * r + j %% 2) * %(half_window)s
                            + floor(random() * (%(half_window)s - %(max_stay)s - 1))::int)
                           * interval '1 minute' AS check_in,
                       5 + floor(random() * (%(max_stay)s - 4))::int AS minutes
                FROM raw
            )
            INSERT INTO tickets (vehicle_id, spot_id, user_id, lot_id, check_in, check_out,
                                 currency, hourly_rate, billing_increment_minutes,
                                 grace_minutes, daily_max, amount_due, duration_minutes)
            SELECT p.vehicle_id, p.spot_id, v.user_id, s.lot_id, p.check_in,
                   p.check_in + p.minutes * interval '1 minute',
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
            """,
            params,
        )
        # Open tickets on every occupied spot, each with a spare (not daily) car.
        cur.execute(
            """
            WITH occupied AS (
                SELECT id, lot_id, row_number() OVER (ORDER BY id) - 1 AS q
                FROM parking_spots WHERE status = 'occupied'
            )
            INSERT INTO tickets (vehicle_id, spot_id, user_id, lot_id, check_in, currency,
                                 hourly_rate, billing_increment_minutes, grace_minutes, daily_max)
            SELECT (o.q %% %(drivers)s) * %(per_driver)s + o.q / %(drivers)s + 2, o.id,
                   (o.q %% %(drivers)s) + 2, o.lot_id,
                   now() - (1 + floor(random() * 720)::int) * interval '1 minute',
                   l.currency, l.hourly_rate, l.billing_increment_minutes, l.grace_minutes,
                   l.daily_max
            FROM occupied AS o JOIN parking_lots AS l ON l.id = o.lot_id
            """,
            params,
        )
        for table in ("users", "parking_lots", "parking_spots", "vehicles", "tickets"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
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
    return {
        "users": users,
        "lots": lots,
        "spots": spots,
        "vehicles": vehicles,
        "closed_tickets": closed,
        "open_tickets": open_,
    }


def check(conn, sample: int = 500) -> list[str]:
    """Problems with the loaded data (an empty list when it is consistent)."""
    problems = []
    with conn.cursor() as cur:
        problems += consistency_problems(cur)
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
