"""`make bench-scale`: does an endpoint's cost grow with the data?

Loads two throwaway PostgreSQL databases with bench/dataset.py (set-based SQL,
`bulk=True`):

* small: 10 lots x 100 spots, 100 drivers, 10,000 closed tickets;
* large: 1,000 lots x 100 spots, 10,000 drivers, 2,000,000 closed tickets,
  plus a busy lot (lot 1,001: 1,000 spots, 1,000,000 tickets over three
  years, parked by 100 fleet drivers).

Both carry an open ticket on every third spot. Serves each with gunicorn
(gunicorn.conf.py, production config, RATELIMIT_ENABLED=false) and times every
endpoint in ENDPOINTS with one sequential client, alternating blocks of
requests between the two servers so background load moves both sides: the
median and p95 of up to BENCH_SCALE_REQUESTS (300) requests per side, within
BENCH_SCALE_SECONDS (8) per side but never fewer than 5, after a warm-up.
Prints the large/small ratio of the medians per endpoint against TARGET (a
report's ratio is per day asked for, which is the same thing for equal days),
writes bench/results/scale.json, and EXPLAIN (ANALYZE, BUFFERS) of the list
endpoints' statements on the large dataset to bench/results/scale-explain.txt
(in full) and scale-explain.md (shortened, the form bench/README.md shows).

Exit status 1 when a request failed or a database check failed; with --strict
also when a ratio is above TARGET.

Environment: BENCH_DATABASE_URL (the server and name prefix: <name>_small and
<name>_large are created and dropped; default
postgresql://postgres@127.0.0.1:5432/parking_bench), BENCH_SCALE_REQUESTS,
BENCH_SCALE_SECONDS, BENCH_SCALE_QUICK=1 (a large dataset a tenth the size,
for trying changes), BENCH_KEEP_DB=1 (keep both databases), BENCH_ONLY
(comma-separated endpoint names), WEB_CONCURRENCY (2).
"""

import argparse
import html
import http.client
import json
import os
import platform
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import dataset
import psycopg2
from run import (
    BIN,
    DEFAULT_URL,
    RESULTS,
    ROOT,
    Gunicorn,
    app_env,
    drop_database,
    login,
    recreate_database,
    server_info,
)
from werkzeug.security import generate_password_hash

from pagination import encode_cursor

TARGET = 1.5  # large/small, per endpoint (issue 16)

SMALL = dataset.Sizes(lots=10, spots_per_lot=100, drivers=100, closed_tickets=10_000)
LARGE = dataset.Sizes(
    lots=1000,
    spots_per_lot=100,
    drivers=10_000,
    closed_tickets=2_000_000,
    busy_lot_spots=1000,
    busy_lot_tickets=1_000_000,
    busy_lot_history_days=3 * 365,
    fleet_drivers=100,
)
QUICK = dataset.Sizes(
    lots=100,
    spots_per_lot=100,
    drivers=1000,
    closed_tickets=200_000,
    busy_lot_spots=1000,
    busy_lot_tickets=100_000,
    busy_lot_history_days=3 * 365,
    fleet_drivers=100,
)

ME_DRIVER = 9  # reads its own tickets (about 100 in the small dataset, 200 in the large)
CYCLE_DRIVER = 8  # books and checks out with its daily car (never parked otherwise)
MIN_REQUESTS = 5  # even when one request takes seconds (the 100x endpoints of today)
BLOCK = 5  # requests per side before switching servers (finer: less drift on a busy machine)
WARMUP, WARMUP_SECONDS = 5, 1.0  # warm-up requests per side: 5, or fewer when slow


@dataclass(frozen=True)
class Endpoint:
    """One line per endpoint. `path` takes placeholders from Dataset.context
    ({lot}, {busy_lot}, {ticket}, {spot}, {from30}, {from365}, {to},
    {tickets_deep_page}, {spots_deep_page}, {tickets_deep_cursor},
    {spots_deep_cursor}, {lots_last_page}); `user` is the
    token it sends: driver (a typical one), busy_driver (the driver with the
    most tickets), admin, or None (public). `days` marks a report (its time is
    also shown per day asked for); `explain` runs EXPLAIN (ANALYZE, BUFFERS)
    on its statements on the large dataset. method="CYCLE" books the context's
    spot and checks out again, timed together."""

    name: str
    path: str
    user: str | None = "driver"
    method: str = "GET"
    days: int | None = None
    explain: bool = False


REPORT = "/api/parking-lots/{busy_lot}/report?from={from%d}&to={to}"

ENDPOINTS = [
    Endpoint("me", "/api/me"),
    Endpoint("lots: first page", "/api/parking-lots?per_page=100", explain=True),
    Endpoint(
        "lots: last page", "/api/parking-lots?per_page=100&page={lots_last_page}", explain=True
    ),
    Endpoint("lot detail", "/api/parking-lots/{lot}"),
    Endpoint("lot detail: busy lot", "/api/parking-lots/{busy_lot}"),
    Endpoint("report 30 days: busy lot", REPORT % 30, "admin", days=30, explain=True),
    Endpoint("report 365 days: busy lot", REPORT % 365, "admin", days=365, explain=True),
    Endpoint(
        "spots: lot, available",
        "/api/spots?lot_id={lot}&status=available&per_page=100",
        None,
        explain=True,
    ),
    Endpoint("spots: busy lot", "/api/spots?lot_id={busy_lot}&per_page=100", None, explain=True),
    Endpoint("spots: first page", "/api/spots?per_page=100", None, explain=True),
    Endpoint("spots: available", "/api/spots?status=available&per_page=100", None, explain=True),
    # 20 a page: the small data has 50 EV spots, and a page that is not full
    # needs no count, so at 100 the small side did half the work.
    Endpoint("spots: kind=ev", "/api/spots?kind=ev&per_page=20", None, explain=True),
    Endpoint(
        "spots: deep page (cursor)",
        "/api/spots?per_page=100&cursor={spots_deep_cursor}",
        None,
        explain=True,
    ),
    Endpoint("spot detail", "/api/spots/{spot}", None),
    Endpoint("ticket detail", "/api/tickets/{ticket}"),
    Endpoint("book + checkout", "", method="CYCLE"),
    Endpoint("own tickets", "/api/tickets?per_page=100", explain=True),
    Endpoint("own tickets: active", "/api/tickets?active=true", explain=True),
    Endpoint(
        "own tickets: busiest driver", "/api/tickets?per_page=100", "busy_driver", explain=True
    ),
    # 10 a page: the small busiest driver has 11 tickets in that lot, the
    # large one 10,000; a full page on both sides compares the same work.
    Endpoint(
        "own tickets: busiest, lot",
        "/api/tickets?lot_id={busy_lot}&per_page=10",
        "busy_driver",
        explain=True,
    ),
    Endpoint(
        "all tickets: first page", "/api/tickets?all=true&per_page=100", "admin", explain=True
    ),
    Endpoint(
        "all tickets: deep page (cursor)",
        "/api/tickets?all=true&per_page=100&cursor={tickets_deep_cursor}",
        "admin",
        explain=True,
    ),
    Endpoint(
        "all tickets: active",
        "/api/tickets?all=true&active=true&per_page=100",
        "admin",
        explain=True,
    ),
    Endpoint(
        "all tickets: closed",
        "/api/tickets?all=true&active=false&per_page=100",
        "admin",
        explain=True,
    ),
    Endpoint(
        "all tickets: lot", "/api/tickets?all=true&lot_id={lot}&per_page=100", "admin", explain=True
    ),
    Endpoint(
        "all tickets: busy lot",
        "/api/tickets?all=true&lot_id={busy_lot}&per_page=100",
        "admin",
        explain=True,
    ),
    Endpoint("audit: first page", "/api/audit?per_page=100", "admin", explain=True),
    Endpoint("availability feed", "/api/availability", None, explain=True),
    # The whole feed has one entry per lot (1,001 against 10): one lot's is the flat part.
    Endpoint("availability feed: one lot", "/api/availability?lot_id={busy_lot}", None),
]


def log(message: str) -> None:
    print(f"[bench-scale {datetime.now():%H:%M:%S}] {message}", flush=True)


# ---------------------------------------------------------------------------
# The two datasets
# ---------------------------------------------------------------------------


@dataclass
class Dataset:
    name: str
    sizes: dataset.Sizes
    url: str
    counts: dict = field(default_factory=dict)
    context: dict = field(default_factory=dict)
    tokens: dict = field(default_factory=dict)
    server: Gunicorn | None = None
    last_ticket: int = 0

    def load(self) -> None:
        """Create, migrate, load, vacuum and check the database."""
        recreate_database(self.url)
        migrated = subprocess_run(
            [str(BIN / "flask"), "db", "upgrade"], app_env(self.url, secrets.token_hex(32))
        )
        if migrated.returncode:
            raise SystemExit(f"flask db upgrade failed:\n{migrated.stderr[-3000:]}")
        started = time.monotonic()
        conn = psycopg2.connect(self.url, connect_timeout=10)
        try:
            counts = dataset.load(
                conn, self.sizes, generate_password_hash(dataset.PASSWORD), bulk=True
            )
            loaded = time.monotonic() - started
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("VACUUM ANALYZE")
            vacuumed = time.monotonic() - started - loaded
            problems = dataset.check(conn, overlaps=False)
            with conn.cursor() as cur:
                cur.execute("SELECT max(id) FROM tickets")
                (self.last_ticket,) = cur.fetchone()
                self.context = self.build_context(cur)
                counts["parking_lots_pages"] = relation_pages(cur, "parking_lots")
                cur.execute("SELECT pg_database_size(current_database())")
                counts["database_mb"] = round(cur.fetchone()[0] / 2**20)
        finally:
            conn.close()
        self.counts = {
            **counts,
            "load_seconds": round(loaded, 1),
            "vacuum_analyze_seconds": round(vacuumed, 1),
            "check_seconds": round(time.monotonic() - started - loaded - vacuumed, 1),
        }
        log(f"{self.name}: {self.counts}")
        if problems:
            raise SystemExit(f"{self.name} dataset inconsistent: {problems}")

    def build_context(self, cur) -> dict:
        sizes = self.sizes
        lot = max(1, sizes.lots // 2)
        busy_lot = sizes.busy_lot or 1
        me = dataset.driver_user_id(ME_DRIVER)
        cur.execute("SELECT max(id) FROM tickets WHERE user_id = %s", (me,))
        (ticket,) = cur.fetchone()
        cur.execute(
            "SELECT user_id FROM tickets GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1"
        )
        (busy_user,) = cur.fetchone()
        cur.execute(
            "SELECT id FROM parking_spots WHERE lot_id = %s AND status = 'available' "
            "ORDER BY id LIMIT 1",
            (lot,),
        )
        (cycle_spot,) = cur.fetchone()
        cur.execute("SELECT count(*) FROM tickets")
        (tickets,) = cur.fetchone()
        spots = sizes.spots + sizes.busy_lot_spots
        # The cursors a client following rel="next" holds at row 99,900 (or,
        # in a shorter list, one that still leaves a full page after it: the
        # small side must send 100 rows too): keyset pages, not OFFSET.
        deep = min(1000, tickets // 100 - 1) * 100 - 1
        cur.execute(
            "SELECT check_in, id FROM tickets ORDER BY check_in DESC, id DESC OFFSET %s LIMIT 1",
            (deep,),
        )
        tickets_cursor = encode_cursor(cur.fetchone())
        cur.execute(
            "SELECT id FROM parking_spots ORDER BY id OFFSET %s LIMIT 1",
            (min(1000, spots // 100 - 1) * 100 - 1,),
        )
        spots_cursor = encode_cursor(cur.fetchone())
        lots = sizes.lots + (1 if sizes.busy_lot else 0)
        today = datetime.now(UTC).date()
        return {
            "lot": lot,
            "busy_lot": busy_lot,
            "ticket": ticket,
            "spot": dataset.spot_id(lot, 2, sizes),
            "busy_user": busy_user,
            "cycle_spot": cycle_spot,
            "cycle_vehicle": dataset.daily_car(CYCLE_DRIVER, sizes),
            "to": (today - timedelta(days=1)).isoformat(),
            "from30": (today - timedelta(days=30)).isoformat(),
            "from365": (today - timedelta(days=365)).isoformat(),
            # Page 1000 (OFFSET 99,900) or the last full page of a shorter list.
            "tickets_deep_page": min(1000, tickets // 100),
            "spots_deep_page": min(1000, spots // 100),
            "tickets_deep_cursor": tickets_cursor,
            "spots_deep_cursor": spots_cursor,
            "lots_last_page": -(-lots // 100),
        }

    def serve(self, secret: str) -> None:
        self.server = Gunicorn("app:app", app_env(self.url, secret), f"gunicorn-{self.name}.log")

    def log_in(self) -> None:
        base = self.server.base
        email = f"driver{self.context['busy_user'] - 1}@bench.example"
        self.tokens = {
            "admin": login(base, dataset.admin_email()),
            "driver": login(base, dataset.driver_email(ME_DRIVER)),
            "busy_driver": login(base, email),
            "cycle": login(base, dataset.driver_email(CYCLE_DRIVER)),
            None: None,
        }


def subprocess_run(command: list[str], env: dict):
    return subprocess.run(command, cwd=ROOT, env=env, timeout=180, capture_output=True, text=True)


def relation_pages(cur, table: str) -> int:
    cur.execute("SELECT pg_relation_size(%s) / current_setting('block_size')::int", (table,))
    return cur.fetchone()[0]


def database_urls(url: str, quick: bool) -> tuple[str, str]:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    large = "large_quick" if quick else "large"
    return tuple(urlunsplit(parts._replace(path=f"/{name}_{n}")) for n in ("small", large))


# ---------------------------------------------------------------------------
# The client: one request at a time, a new connection each (gunicorn's sync
# workers close it after every response, as they do in production).
# ---------------------------------------------------------------------------


class RequestFailed(Exception):
    pass


def request(port: int, method: str, path: str, token: str | None, body: dict | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    if response.status >= 300:
        raise RequestFailed(f"{method} {path}: {response.status} {payload[:300]!r}")
    return payload


def timed_call(endpoint: Endpoint, side: Dataset) -> float:
    """Seconds for one call of the endpoint (book + checkout: both requests)."""
    port = side.server.port
    started = time.perf_counter()
    if endpoint.method == "CYCLE":
        booked = request(
            port,
            "POST",
            "/api/tickets",
            side.tokens["cycle"],
            {
                "vehicle_id": side.context["cycle_vehicle"],
                "parking_spot_id": side.context["cycle_spot"],
            },
        )
        ticket = json.loads(booked)["ticket_id"]
        request(port, "PATCH", f"/api/checkout/{ticket}", side.tokens["cycle"])
    else:
        path = endpoint.path.format(**side.context)
        request(port, endpoint.method, path, side.tokens[endpoint.user])
    return time.perf_counter() - started


def measure(endpoint: Endpoint, sides: list[Dataset], most: int, seconds: float) -> dict:
    """Alternate blocks of requests between the sides until each has `most`
    samples or has spent `seconds` (but at least MIN_REQUESTS samples). The
    warm-up is WARMUP requests, or fewer once they took WARMUP_SECONDS."""
    for side in sides:
        warm = 0.0
        for _ in range(WARMUP):
            warm += timed_call(endpoint, side)
            if warm > WARMUP_SECONDS:
                break
    samples: dict[str, list[float]] = {side.name: [] for side in sides}
    spent = dict.fromkeys(samples, 0.0)

    def wants_more(name: str) -> bool:
        n = len(samples[name])
        return n < MIN_REQUESTS or (n < most and spent[name] < seconds)

    while any(wants_more(side.name) for side in sides):
        for side in sides:
            for _ in range(BLOCK):
                if not wants_more(side.name):
                    break
                elapsed = timed_call(endpoint, side)
                samples[side.name].append(elapsed)
                spent[side.name] += elapsed
    return {name: summary(values) for name, values in samples.items()}


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "requests": len(values),
        "median_ms": round(statistics.median(values) * 1000, 2),
        "p95_ms": round(p95 * 1000, 2),
        "mean_ms": round(statistics.fmean(values) * 1000, 2),
    }


# ---------------------------------------------------------------------------
# EXPLAIN (ANALYZE, BUFFERS) of what the list endpoints run, on the large data
# ---------------------------------------------------------------------------


# Plan lines left out of the short form (bench/README.md): the costs and
# timings of the nodes that matter stay, per-worker and buffer detail goes.
PLAN_NOISE = re.compile(
    r"Buffers:|Worker \d|Memory Usage|Heap Fetches|Planning:|Options:|Functions:|Rows Removed"
    r"|Recheck Cond|Filter:|Index Cond|Hash Cond|Sort Key|Presorted Key|Full-sort Groups"
    r"|Group Key|Workers Launched|Cache Key|Cache Mode|Heap Blocks|Planned Partitions|Batches"
)


def explain_lists(side: Dataset, endpoints: list[Endpoint], secret: str) -> tuple[str, str]:
    """Run each endpoint once in-process, record its SQL (not the token check)
    and EXPLAIN (ANALYZE, BUFFERS) it with the same parameters. Returns the
    full text and a short Markdown form (one <details> block per endpoint)."""
    os.environ.update(app_env(side.url, secret))
    sys.path.insert(0, str(ROOT))
    from sqlalchemy import event

    from app import create_app
    from models import db

    app = create_app()
    client = app.test_client()
    full, short = [], []
    with app.app_context():
        engine = db.engine
    conn = psycopg2.connect(side.url, connect_timeout=10)
    conn.autocommit = True
    try:
        for endpoint in endpoints:
            statements: list[tuple[str, object]] = []

            def record(_conn, _cursor, statement, parameters, _context, _many, into=statements):
                if "revoked_tokens" not in statement:
                    into.append((statement, parameters))

            path = endpoint.path.format(**side.context)
            headers = {}
            if side.tokens[endpoint.user]:
                headers["Authorization"] = f"Bearer {side.tokens[endpoint.user]}"
            event.listen(engine, "before_cursor_execute", record)
            try:
                response = client.get(path, headers=headers)
            finally:
                event.remove(engine, "before_cursor_execute", record)
            if response.status_code != 200:
                raise SystemExit(f"EXPLAIN: {path} answered {response.status_code}")
            full.append(f"### {endpoint.name}: GET {path}\n")
            plans, times = [], []
            for statement, parameters in statements:
                with conn.cursor() as cur:
                    sql = cur.mogrify(statement, parameters).decode()
                    cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                    plan = [row[0] for row in cur.fetchall()]
                shown = sql if len(sql) <= 1500 else sql[:1500] + " [...]"
                full.append(shown + "\n\n" + "\n".join(plan) + "\n")
                plans.append("\n".join(line for line in plan if not PLAN_NOISE.search(line)))
                times += [line.split(":")[1].strip() for line in plan if "Execution Time" in line]
            short.append(
                f"<details><summary>{endpoint.name}: <code>GET {html.escape(path)}</code>: "
                f"{' + '.join(times)}</summary>\n\n```text\n"
                + "\n\n".join(plans)
                + "\n```\n\n</details>\n"
            )
    finally:
        conn.close()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    return "\n".join(full), "\n".join(short)


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def settings(url: str) -> dict:
    names = ("jit", "shared_buffers", "work_mem", "random_page_cost", "effective_cache_size")
    with psycopg2.connect(url, connect_timeout=10) as conn, conn.cursor() as cur:
        values = {}
        for name in names:
            cur.execute(f"SHOW {name}")
            values[name] = cur.fetchone()[0]
    conn.close()
    return values


def after_run_problems(side: Dataset) -> list[str]:
    conn = psycopg2.connect(side.url, connect_timeout=10)
    try:
        with conn.cursor() as cur:
            problems = dataset.consistency_problems(cur, since_ticket=side.last_ticket)
            side.counts["parking_lots_pages_after"] = relation_pages(cur, "parking_lots")
    finally:
        conn.close()
    errors = side.server.logged_errors()
    if errors:
        problems.append(f"{len(errors)} errors in {side.server.log_path}: {errors[:3]}")
    return [f"{side.name}: {problem}" for problem in problems]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--requests", type=int, default=int(os.environ.get("BENCH_SCALE_REQUESTS", 300))
    )
    parser.add_argument(
        "--seconds", type=float, default=float(os.environ.get("BENCH_SCALE_SECONDS", 8))
    )
    parser.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""))
    parser.add_argument(
        "--quick", action="store_true", default=bool(os.environ.get("BENCH_SCALE_QUICK"))
    )
    parser.add_argument(
        "--keep-db", action="store_true", default=bool(os.environ.get("BENCH_KEEP_DB"))
    )
    parser.add_argument("--strict", action="store_true", help="fail when a ratio is above target")
    args = parser.parse_args()
    # Stopped by a timeout or CI: still stop the servers and drop the databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    RESULTS.mkdir(exist_ok=True)
    started = time.monotonic()
    small_url, large_url = database_urls(
        os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL, args.quick
    )
    sides = [
        Dataset("small", SMALL, small_url),
        Dataset("large", QUICK if args.quick else LARGE, large_url),
    ]
    chosen = [e for e in ENDPOINTS if not args.only or e.name in args.only.split(",")]
    secret = secrets.token_hex(32)
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            **server_info(small_url.rsplit("/", 1)[0] + "/postgres"),
            "settings": settings(small_url.rsplit("/", 1)[0] + "/postgres"),
        },
        "target": TARGET,
        "limits": {"requests": args.requests, "seconds_per_side": args.seconds},
    }
    problems: list[str] = []
    try:
        for side in sides:
            log(f"{side.name}: loading {side.url} ({asdict(side.sizes)})")
            side.load()
        results["datasets"] = {
            side.name: {"sizes": asdict(side.sizes), **side.counts, "context": side.context}
            for side in sides
        }
        for side in sides:
            side.serve(secret)
        for side in sides:
            side.server.wait_ready("/api/test-db")
            side.log_in()
        log(f"measuring {len(chosen)} endpoints (loaded in {time.monotonic() - started:.0f}s)")
        rows = []
        for endpoint in chosen:
            t0 = time.monotonic()
            try:
                measured = measure(endpoint, sides, args.requests, args.seconds)
            except (RequestFailed, OSError) as error:
                problems.append(f"{endpoint.name}: {error}")
                log(f"{endpoint.name}: FAILED {error}")
                continue
            small, large = measured["small"], measured["large"]
            row = {
                "name": endpoint.name,
                "method": endpoint.method,
                "path": endpoint.path,
                "user": endpoint.user,
                "small": small,
                "large": large,
                "ratio": round(large["median_ms"] / small["median_ms"], 2),
                "p95_ratio": round(large["p95_ms"] / small["p95_ms"], 2),
            }
            if endpoint.days:
                row["days"] = endpoint.days
                for name in ("small", "large"):
                    row[name]["median_ms_per_day"] = round(
                        row[name]["median_ms"] / endpoint.days, 3
                    )
            row["meets_target"] = row["ratio"] <= TARGET
            rows.append(row)
            log(
                f"{endpoint.name}: {small['median_ms']} -> {large['median_ms']} ms "
                f"({row['ratio']}x) in {time.monotonic() - t0:.0f}s"
            )
        results["endpoints"] = rows
        explained = [e for e in chosen if e.explain]
        if explained:
            log(f"EXPLAIN (ANALYZE, BUFFERS) of {len(explained)} lists on the large dataset")
            full, short = explain_lists(sides[1], explained, secret)
            (RESULTS / "scale-explain.txt").write_text(full)
            (RESULTS / "scale-explain.md").write_text(short)
        for side in sides:
            side.server.stop()
            problems += after_run_problems(side)
            results["datasets"][side.name].update(side.counts)
    finally:
        for side in sides:
            if side.server:
                side.server.stop()
            if args.keep_db:
                log(f"kept database {side.url}")
            else:
                drop_database(side.url)
    results["problems"] = problems
    results["total_seconds"] = round(time.monotonic() - started, 1)
    missed = [row["name"] for row in results["endpoints"] if not row["meets_target"]]
    results["above_target"] = missed
    (RESULTS / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    if problems:
        print("FAILED: " + "; ".join(problems))
    print(f"Results: {RESULTS / 'scale.json'} ({results['total_seconds']}s)")
    return 1 if problems or (args.strict and missed) else 0


def print_table(results: dict) -> None:
    data = results["datasets"]
    print()
    for name in ("small", "large"):
        d = data[name]
        print(
            f"{name}: {d['lots']} lots, {d['spots']} spots, {d['users'] - 1} drivers, "
            f"{d['closed_tickets'] + d['open_tickets']:,} tickets ({d['database_mb']} MB; "
            f"loaded in {d['load_seconds']}s + VACUUM ANALYZE {d['vacuum_analyze_seconds']}s)"
        )
    header = (
        f"{'endpoint':<32}{'n':>5}{'small ms':>10}{'p95':>8}{'n':>5}{'large ms':>10}{'p95':>8}"
        f"{'ratio':>8}{'p95 r':>7}  target {TARGET}"
    )
    print(header)
    print("-" * len(header))
    for row in results["endpoints"]:
        s, big = row["small"], row["large"]
        ok = "ok" if row["meets_target"] else "ABOVE"
        print(
            f"{row['name']:<32}{s['requests']:>5}{s['median_ms']:>10.2f}{s['p95_ms']:>8.1f}"
            f"{big['requests']:>5}{big['median_ms']:>10.2f}{big['p95_ms']:>8.1f}"
            f"{row['ratio']:>7.2f}x{row['p95_ratio']:>6.2f}x  {ok}"
        )
    reports = {row["days"]: row for row in results["endpoints"] if row.get("days")}
    for days, row in sorted(reports.items()):
        print(
            f"report per day asked for, {days} days: small {row['small']['median_ms_per_day']} "
            f"ms/day, large {row['large']['median_ms_per_day']} ms/day"
        )
    if 30 in reports and 365 in reports:
        for name in ("small", "large"):
            ratio = reports[365][name]["median_ms"] / reports[30][name]["median_ms"]
            print(f"{name}: 365-day report / 30-day report = {ratio:.1f}x (days: 12.2x)")
    for name in ("small", "large"):
        d = data[name]
        print(
            f"{name}: parking_lots pages {d['parking_lots_pages']} after loading, "
            f"{d.get('parking_lots_pages_after', '?')} after the run ({d['lots']} rows)"
        )
    print()


if __name__ == "__main__":
    sys.exit(main())
