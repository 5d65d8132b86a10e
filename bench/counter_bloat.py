"""Do the lot counter rows stay HOT under a burst of bookings and checkouts?

Every booking and checkout updates its lot's `parking_lots` row (the spot and
ticket counters) and its `lot_days` row (the day's rollup), both from triggers
in the writing transaction. Migration 0009 gives `parking_lots` fillfactor 50
and `lot_days` 70 so that those updates find room on their own page and stay
HOT (no new index entries, no new pages). This measures that against
fillfactor 100 (PostgreSQL's default) on otherwise identical databases.

For each variant: a throwaway database (<BENCH_DATABASE_URL name>_ff<n>),
migrated and loaded with bench/dataset.py's `make bench` sizes (100 lots x 100
spots, 100,000 tickets); the fillfactors set and the two tables rewritten
(VACUUM FULL) so they apply to the existing rows; the tables' statistics
reset; then DRIVERS drivers (one thread and one connection each) book their
own spot and check it out CYCLES times each through gunicorn (production
config, gevent, as `make bench`). With --hold-snapshot a REPEATABLE READ
transaction stays open during the burst, as a long report, a pg_dump or a
replica with hot_standby_feedback would: dead row versions cannot be pruned
then, so every update needs fresh room. Autovacuum stays at the server's
settings. Prints, per variant: pages of each table (and of its indexes)
before and after, updates, the HOT share, dead tuples and autovacuum runs.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ff \\
        .venv/bin/python bench/counter_bloat.py [--lots 1] [--hold-snapshot]
"""

import argparse
import http.client
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import dataset
import psycopg2
from run import BIN, DEFAULT_URL, ROOT, Gunicorn, app_env, drop_database, login, recreate_database
from werkzeug.security import generate_password_hash

TABLES = ("parking_lots", "lot_days")
MIGRATION = {"parking_lots": 50, "lot_days": 70}  # what migration 0009 sets


def table_state(cur, table: str) -> dict:
    cur.execute(
        "SELECT pg_relation_size(c.oid) / 8192, pg_indexes_size(c.oid) / 8192, "
        "s.n_tup_upd, s.n_tup_hot_upd, s.n_dead_tup, s.n_live_tup, s.autovacuum_count "
        "FROM pg_class AS c JOIN pg_stat_user_tables AS s ON s.relid = c.oid "
        "WHERE c.relname = %s",
        (table,),
    )
    pages, index_pages, upd, hot, dead, live, autovacuums = cur.fetchone()
    return {
        "pages": pages,
        "index_pages": index_pages,
        "updates": upd,
        "hot_updates": hot,
        "hot_share": round(hot / upd, 3) if upd else None,
        "dead": dead,
        "live": live,
        "autovacuums": autovacuums,
    }


def prepare(url: str, fillfactor: dict, sizes: dataset.Sizes, secret: str) -> list[int]:
    recreate_database(url)
    migrated = subprocess.run(
        [str(BIN / "flask"), "db", "upgrade"],
        cwd=ROOT,
        env=app_env(url, secret),
        timeout=180,
        capture_output=True,
        text=True,
    )
    if migrated.returncode:
        raise SystemExit(f"flask db upgrade failed:\n{migrated.stderr[-3000:]}")
    conn = psycopg2.connect(url, connect_timeout=10)
    dataset.load(conn, sizes, generate_password_hash(dataset.PASSWORD))
    conn.autocommit = True
    with conn.cursor() as cur:
        for table in TABLES:
            cur.execute(f"ALTER TABLE {table} SET (fillfactor = {fillfactor[table]})")
            cur.execute(f"VACUUM FULL {table}")
        cur.execute("VACUUM ANALYZE")
        for table in TABLES:
            cur.execute("SELECT pg_stat_reset_single_table_counters(%s::regclass)", (table,))
    conn.close()


def cycle(port: int, token: str, vehicle: int, spot: int, cycles: int, errors: list) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = json.dumps({"vehicle_id": vehicle, "parking_spot_id": spot})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for _ in range(cycles):
            conn.request("POST", "/api/tickets", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 201:
                errors.append(f"book: {response.status} {payload[:200]!r}")
                return
            ticket = json.loads(payload)["ticket_id"]
            conn.request("PATCH", f"/api/checkout/{ticket}", headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                errors.append(f"checkout: {response.status} {payload[:200]!r}")
                return
    finally:
        conn.close()


def burst(url: str, sizes, args, secret: str) -> dict:
    server = Gunicorn("app:app", app_env(url, secret), f"gunicorn-ff-{time.time_ns()}.log")
    held = None
    try:
        server.wait_ready("/api/test-db")
        drivers = range(1, args.drivers + 1)
        conn = psycopg2.connect(url, connect_timeout=10)
        conn.autocommit = True
        with conn.cursor() as cur:
            spots = []
            for i, _ in enumerate(drivers):
                lot = 1 + i % args.lots
                cur.execute(
                    "SELECT id FROM parking_spots WHERE lot_id = %s AND status = 'available' "
                    "AND id <> ALL(%s) ORDER BY id LIMIT 1",
                    (lot, spots or [0]),
                )
                spots.append(cur.fetchone()[0])
            before = {table: table_state(cur, table) for table in TABLES}
        conn.close()
        tokens = [login(server.base, dataset.driver_email(d)) for d in drivers]
        if args.hold_snapshot:
            held = psycopg2.connect(url, connect_timeout=10)
            held.set_session(isolation_level="REPEATABLE READ")
            with held.cursor() as cur:
                cur.execute("SELECT count(*) FROM parking_lots")  # takes the snapshot
        errors: list[str] = []
        threads = [
            threading.Thread(
                target=cycle,
                args=(server.port, token, dataset.daily_car(d, sizes), spot, args.cycles, errors),
            )
            for d, token, spot in zip(drivers, tokens, spots, strict=True)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - started
    finally:
        server.stop()  # the backends exit and flush their statistics
        if held is not None:
            held.rollback()
            held.close()
    if errors:
        raise SystemExit(f"burst failed: {errors[:3]}")
    time.sleep(1)
    conn = psycopg2.connect(url, connect_timeout=10)
    with conn.cursor() as cur:
        after = {table: table_state(cur, table) for table in TABLES}
    conn.close()
    return {
        "cycles": args.cycles * args.drivers,
        "seconds": round(seconds, 1),
        "before": before,
        "after": after,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--drivers", type=int, default=8)
    parser.add_argument("--cycles", type=int, default=500, help="book + checkout per driver")
    parser.add_argument("--lots", type=int, default=1, help="the drivers' spots span this many")
    parser.add_argument("--hold-snapshot", action="store_true")
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    base = urlsplit(os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL)
    name = base.path.lstrip("/")
    sizes = dataset.Sizes()
    secret = secrets.token_hex(32)
    results = {}
    for label, fillfactor in (
        ("fillfactor 100", dict.fromkeys(TABLES, 100)),
        ("migration 0009", MIGRATION),
    ):
        url = urlunsplit(base._replace(path=f"/{name}_ff{fillfactor['parking_lots']}"))
        try:
            prepare(url, fillfactor, sizes, secret)
            results[label] = {"fillfactor": fillfactor, **burst(url, sizes, args, secret)}
        finally:
            if not args.keep_db:
                drop_database(url)
        print(json.dumps({label: results[label]}), flush=True)
    print()
    print(
        f"{args.drivers} drivers x {args.cycles} book + checkout cycles in {args.lots} lot(s)"
        + (", a snapshot held open" if args.hold_snapshot else "")
    )
    print(
        f"{'variant':<16}{'table':<14}{'ff':>4}{'pages':>12}{'index pages':>14}"
        f"{'updates':>9}{'HOT':>7}{'dead':>6}{'autovac':>8}{'cycles/s':>9}"
    )
    for label, result in results.items():
        for table in TABLES:
            b, a = result["before"][table], result["after"][table]
            print(
                f"{label:<16}{table:<14}{result['fillfactor'][table]:>4}"
                f"{b['pages']:>5} -> {a['pages']:<4}{b['index_pages']:>6} -> {a['index_pages']:<4}"
                f"{a['updates']:>9}{(a['hot_share'] or 0) * 100:>6.1f}%{a['dead']:>6}"
                f"{a['autovacuums']:>8}{result['cycles'] / result['seconds']:>9.0f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
