"""Do the reservation endpoints' statements grow with history? EXPLAIN them.

Builds two throwaway PostgreSQL databases migrated to head, one lot with 200
spots (100 reservable) and 1,000 drivers with a car each, and a history of
HISTORY reservations (small: 10,000; large: 1,000,000) spread over the past
three years (completed, cancelled and no-shows), plus a few upcoming ones.
Then, against each, it runs the endpoints a driver and an admin use
(availability, booking, lists, detail, cancel, check-in, the report) through
the app, records every SQL statement they run, and EXPLAIN (ANALYZE,
BUFFERS)es each one with its parameters (inside a rolled-back transaction).

Prints, per statement, the shared buffers touched on the small and the large
history: a statement whose cost does not depend on history touches about the
same number of pages on both. The full plans of the large run go to
bench/results/reservations-explain.txt.

Usage: .venv/bin/python bench/explain_reservations.py
Environment: BENCH_DATABASE_URL (server and name prefix; default
postgresql://postgres@127.0.0.1:5432/parking_bench).
"""

import itertools
import os
import re
import sys
from datetime import UTC, datetime

import psycopg2
from sqlalchemy import event, text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from app import create_app  # noqa: E402
from config import TestConfig, database_url  # noqa: E402
from models import db  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/parking_bench"
NOW = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
RESULTS = os.path.join(ROOT, "bench", "results")


def server_and_name(url: str, suffix: str) -> tuple[str, str]:
    base, name = url.rsplit("/", 1)
    return base + "/postgres", f"{name}_{suffix}"


def recreate(url: str, suffix: str) -> str:
    admin_url, name = server_and_name(url, suffix)
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return url.rsplit("/", 1)[0] + "/" + name


def drop(url: str, suffix: str) -> None:
    admin_url, name = server_and_name(url, suffix)
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


LOAD = """
INSERT INTO users (id, username, email, password_hash, role, token_version, created_at)
SELECT d, 'driver' || d, 'driver' || d || '@example.com', :hash,
       CASE WHEN d = 1 THEN 'admin' ELSE 'driver' END, 0, now()
FROM generate_series(1, 1000) d;
SELECT setval('users_id_seq', 1000);
INSERT INTO vehicles (id, plate_number, plate_key, type, user_id, created_at)
SELECT d, 'KRS ' || lpad(d::text, 4, '0'), 'KRS' || lpad(d::text, 4, '0'), 'SUV', d, now()
FROM generate_series(1, 1000) d;
SELECT setval('vehicles_id_seq', 1000);
INSERT INTO parking_lots (id, name, location, timezone, currency, hourly_rate,
                          billing_increment_minutes, grace_minutes, exit_grace_minutes)
VALUES (1, 'Reserve lot', 'Kilimani', 'Africa/Nairobi', 'KES', 6000, 60, 10, 15);
SELECT setval('parking_lots_id_seq', 1);
INSERT INTO parking_spots (id, lot_id, spot_number, status, kind, reservable)
SELECT s, 1, 'R' || s, 'available', 'standard', s > 100 FROM generate_series(1, 200) s;
SELECT setval('parking_spots_id_seq', 200);
-- History: one-hour windows back to back on each reservable spot, newest
-- ending a day before NOW; settled (completed, cancelled, no-show).
INSERT INTO reservations (lot_id, spot_id, vehicle_id, user_id, plate_key, kind, start_at,
    end_at, status, amount, currency, hourly_rate, billing_increment_minutes, grace_minutes,
    exit_grace_minutes, early_minutes, cancel_free_until, late_cancel_fee, no_show_at,
    created_at, created_day, start_day, cancelled_at, cancelled_day, refund)
SELECT 1, 101 + i % 100, 1 + i % 1000, 1 + i % 1000, 'KRS' || lpad((1 + i % 1000)::text, 4, '0'),
       'standard', w.start_at, w.start_at + interval '1 hour',
       (ARRAY['completed', 'completed', 'cancelled', 'no_show'])[1 + i % 4],
       6000, 'KES', 6000, 60, 10, 15, 15, w.start_at - interval '1 hour', 6000,
       w.start_at + interval '30 minutes', w.start_at - interval '2 days',
       (w.start_at - interval '2 days')::date, w.start_at::date,
       CASE WHEN i % 4 = 2 THEN w.start_at - interval '3 hours' END,
       CASE WHEN i % 4 = 2 THEN (w.start_at - interval '3 hours')::date END,
       CASE WHEN i % 4 = 2 THEN 6000 END
FROM generate_series(1, :history) i,
     LATERAL (SELECT CAST(:now AS timestamptz) - interval '1 day'
                     - ((:history - i) / 100) * interval '1 hour' AS start_at) w;
-- Upcoming: a confirmed reservation on a few spots tomorrow.
INSERT INTO reservations (lot_id, spot_id, vehicle_id, user_id, plate_key, kind, start_at,
    end_at, status, amount, currency, hourly_rate, billing_increment_minutes, grace_minutes,
    exit_grace_minutes, early_minutes, cancel_free_until, late_cancel_fee, no_show_at,
    created_at, created_day, start_day)
SELECT 1, 100 + s, 500 + s, 500 + s, 'KRS' || lpad((500 + s)::text, 4, '0'), 'standard',
       t.now + interval '1 day', t.now + interval '1 day 2 hours',
       'confirmed', 12000, 'KES', 6000, 60, 10, 15, 15, t.now + interval '23 hours',
       12000, t.now + interval '1 day 30 minutes', t.now,
       t.now::date, (t.now + interval '1 day')::date
FROM generate_series(1, 20) s, (SELECT CAST(:now AS timestamptz) AS now) t;
"""


def build(url: str, history: int):
    config = type(
        "ExplainConfig",
        (TestConfig,),
        {"SQLALCHEMY_DATABASE_URI": database_url(url), "CLOCK": staticmethod(lambda: NOW)},
    )
    app = create_app(config)
    with app.app_context():
        from flask_migrate import upgrade
        from werkzeug.security import generate_password_hash

        upgrade(directory=os.path.join(ROOT, "migrations"))
        password_hash = generate_password_hash("password123", method="pbkdf2:sha256:1000")
        with db.engine.begin() as conn:
            for statement in LOAD.split(";\n"):
                if statement.strip():
                    conn.execute(
                        text(statement),
                        {"hash": password_hash, "history": history, "now": NOW},
                    )
            conn.execute(text("ANALYZE"))
    return app


def journey(app) -> list[tuple[str, str, dict]]:
    """The endpoints, in order; every statement each runs: (label, sql, params)."""
    captured: list[tuple[str, str, dict]] = []
    label = [""]

    def record(conn, cursor, statement, parameters, context, executemany):
        if not executemany and re.match(r"\s*(SELECT|UPDATE|INSERT)", statement, re.I):
            captured.append((label[0], statement, parameters))

    client = app.test_client()

    def token(email):
        answer = client.post("/api/login", json={"email": email, "password": "password123"})
        return {"Authorization": f"Bearer {answer.get_json()['token']}"}

    driver, admin = token("driver2@example.com"), token("driver1@example.com")
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    window = "start=2027-01-16T10:00:00Z&end=2027-01-16T12:00:00Z"
    steps = [
        ("availability", "GET", f"/api/parking-lots/1/availability?{window}", None, driver),
        (
            "book",
            "POST",
            "/api/reservations",
            {
                "lot_id": 1,
                "vehicle_id": 2,
                "start": "2027-01-16T10:00:00Z",
                "end": "2027-01-16T12:00:00Z",
            },
            driver,
        ),
        ("own list", "GET", "/api/reservations", None, driver),
        ("everyone's list", "GET", "/api/reservations?all=true", None, admin),
        ("one", "GET", "/api/reservations/{id}", None, driver),
        ("check-in (too early)", "POST", "/api/reservations/{id}/check-in", None, driver),
        ("cancel", "POST", "/api/reservations/{id}/cancel", None, driver),
        # Three days both histories cover (the small one reaches four days back).
        (
            "report, 3 days",
            "GET",
            "/api/parking-lots/1/report?from=2027-01-11&to=2027-01-13",
            None,
            admin,
        ),
    ]
    reservation_id = None
    try:
        for name, method, path, body, headers in steps:
            label[0] = name
            path = path.replace("{id}", str(reservation_id))
            answer = client.open(path, method=method, json=body, headers=headers)
            assert answer.status_code < 500, (name, answer.get_json())
            if name == "book":
                assert answer.status_code == 201, answer.get_json()
                reservation_id = answer.get_json()["id"]
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return [
        entry
        for entry in captured
        if re.search(r"\breservations\b|parking_spots", entry[1])
        and not entry[1].lstrip().upper().startswith("INSERT")
    ]


def explain(app, statements) -> list[tuple[str, str, int, float, str]]:
    """(label, first line of the statement, shared buffers, ms, full plan) each."""
    out = []
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            for label, sql, params in statements:
                cur.execute("BEGIN")
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                plan = "\n".join(row[0] for row in cur.fetchall())
                cur.execute("ROLLBACK")
                buffers = sum(
                    int(n)
                    for n in re.findall(r"shared (?:hit|read)=(\d+)", plan.split("\n")[0] + "\n")
                )
                if not buffers:
                    buffers = max(
                        (int(n) for n in re.findall(r"shared hit=(\d+)", plan)), default=0
                    )
                ms = float(re.search(r"Execution Time: ([\d.]+)", plan).group(1))
                out.append((label, " ".join(sql.split())[:70], buffers, ms, plan))
        finally:
            raw.close()
    return out


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    runs = {}
    try:
        for size, history in (("small", 10_000), ("large", 1_000_000)):
            db_url = recreate(url, f"resv_{size}")
            print(f"== {size}: {history:,} reservations in the history", flush=True)
            app = build(db_url, history)
            runs[size] = explain(app, journey(app))
            with app.app_context():
                db.engine.dispose()
    finally:
        for size in ("small", "large"):
            drop(url, f"resv_{size}")
    small, large = runs["small"], runs["large"]
    print(f"\n{'endpoint':<22} {'statement':<52} {'buffers 10k':>11} {'1M':>7}  {'ms 1M':>6}")
    for label in dict.fromkeys(entry[0] for entry in large):
        pairs = itertools.zip_longest(
            [e for e in small if e[0] == label], [e for e in large if e[0] == label]
        )
        for few, many in pairs:
            sql = (many or few)[1]
            few_buffers = few[2] if few else "-"
            many_buffers, ms = (many[2], f"{many[3]:.2f}") if many else ("-", "-")
            print(f"{label:<22} {sql[:52]:<52} {few_buffers:>11} {many_buffers:>7}  {ms:>6}")
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "reservations-explain.txt")
    with open(path, "w") as out:
        for label, sql, _, _, plan in large:
            out.write(f"-- {label}: {sql}\n{plan}\n\n")
    print(f"\nfull plans (1,000,000 reservations): {os.path.relpath(path, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
