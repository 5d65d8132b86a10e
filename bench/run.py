"""`make bench`: the API's speed as ratios to a bare Flask app on the same machine.

1. Creates a throwaway PostgreSQL database (BENCH_DATABASE_URL, default
   postgresql://postgres@127.0.0.1:5432/parking_bench), migrates it with
   `flask db upgrade` and loads the dataset in bench/dataset.py with bulk SQL.
2. Serves the bare baseline (bench/baseline.py) and then the API with gunicorn,
   2 workers and otherwise gunicorn.conf.py (gevent workers), on a free loopback
   port, and drives each with wrk and the Lua scripts in bench/lua/ for BENCH_DURATION seconds
   per scenario (after BENCH_WARMUP seconds of warm-up).
3. Checks the database after the write scenarios (no spot or vehicle given
   twice, spot status agrees with the open tickets), prints a table and writes
   bench/results/latest.json. The database is dropped at the end
   (BENCH_KEEP_DB=1 keeps it for profiling).

Exit status: 1 when a scenario had errors or a correctness check failed, and
with --strict also when a ratio is below its target.

Environment: BENCH_DATABASE_URL, BENCH_DURATION (10), BENCH_WARMUP (2),
BENCH_CONNECTIONS (16, the read scenarios and the baseline), BENCH_ONLY
(comma-separated scenario names), BENCH_KEEP_DB, BENCH_ACCESS_LOG (1, as in
production; 0 turns gunicorn's access log off for both apps), WEB_CONCURRENCY (2),
GUNICORN_WORKER_CLASS (gunicorn.conf.py's: gevent), GUNICORN_THREADS (1),
BENCH_BASELINE_WORKER_CLASS (sync: the baseline's worker class, see bench/README.md)
and BENCH_APP_DATABASE_URL (what the API servers connect to, e.g. a PgBouncer in
front of BENCH_DATABASE_URL's database; default: the same URL).
"""

import argparse
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dataset
import psycopg2
from werkzeug.security import generate_password_hash

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA = BENCH / "lua"
RESULTS = BENCH / "results"
BIN = Path(sys.executable).parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/parking_bench"

CYCLE_DRIVERS = range(1, 9)  # drivers 1-8 book and check out their own spot
ME_DRIVER = 9
STORM_DRIVERS = range(101, 613)  # 512 drivers arrive at the storm lot
STORM_THREADS = 32
CYCLE_LOT = 1
BASELINE_WORKER_CLASS = os.environ.get("BENCH_BASELINE_WORKER_CLASS", "sync")


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", flush=True)


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------


def scenarios(sizes: dataset.Sizes, connections: int) -> list[dict]:
    storm_lot = sizes.lots
    today = datetime.now(UTC).date()
    report_from, report_to = today - timedelta(days=30), today - timedelta(days=1)
    return [
        {
            "name": "spot_search",
            "label": "spot search (public)",
            "script": "get.lua",
            "env": {"BENCH_PATH": "/api/spots?lot_id={lot}&status=available&per_page=100"},
            "connections": connections,
            "target": 0.25,
        },
        {
            "name": "lot_list",
            "label": "lot list (100 lots)",
            "script": "get.lua",
            "env": {"BENCH_PATH": "/api/parking-lots?per_page=100", "token": "driver"},
            "connections": connections,
            "target": 0.20,
        },
        {
            "name": "me",
            "label": "GET /api/me",
            "script": "get.lua",
            "env": {"BENCH_PATH": "/api/me", "token": "driver"},
            "connections": connections,
            "target": 0.30,
        },
        {
            "name": "report",
            "label": "30-day lot report",
            "script": "get.lua",
            "env": {
                "BENCH_PATH": f"/api/parking-lots/{{lot}}/report?from={report_from}&to={report_to}",
                "token": "admin",
            },
            "connections": connections,
            "target": 0.10,
        },
        {
            "name": "book_checkout",
            "label": "book + checkout (8 drivers)",
            "script": "cycle.lua",
            "env": {"BENCH_DRIVERS": "cycle"},
            "connections": len(CYCLE_DRIVERS),
            "threads": len(CYCLE_DRIVERS),
            "target": 0.18,
            "expected": {"booked", "checked_out"},
        },
        {
            "name": "storm",
            "label": f"arrival storm ({len(STORM_DRIVERS)} drivers, 1 lot)",
            "script": "storm.lua",
            "env": {"BENCH_DRIVERS": "storm", "BENCH_LOT": str(storm_lot), "BENCH_HOLD": "2"},
            "connections": STORM_THREADS,
            "threads": STORM_THREADS,
            "target": None,
            "expected": {"booked", "refused", "checked_out"},
            "warmup": False,
        },
    ]


# ---------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------


def maintenance_dsn(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"BENCH_DATABASE_URL must name a plain database, not {name!r}")
    return urlunsplit(parts._replace(path="/postgres")), name


def recreate_database(url: str) -> None:
    dsn, name = maintenance_dsn(url)
    try:
        conn = psycopg2.connect(dsn, connect_timeout=10)
    except psycopg2.OperationalError as error:
        raise SystemExit(
            f"PostgreSQL is not reachable ({error.args[0].strip()}); start it "
            "(e.g. pg_ctlcluster 15 main start) or set BENCH_DATABASE_URL"
        ) from None
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()


def drop_database(url: str) -> None:
    dsn, name = maintenance_dsn(url)
    conn = psycopg2.connect(dsn, connect_timeout=10)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    conn.close()


def server_info(url: str) -> dict:
    with psycopg2.connect(url, connect_timeout=10) as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        (version,) = cur.fetchone()
        cur.execute("SHOW max_connections")
        (max_connections,) = cur.fetchone()
    conn.close()
    return {"postgresql": version, "max_connections": int(max_connections)}


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_env(url: str, secret: str) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "JWT_SECRET_KEY": secret,
        "RATELIMIT_ENABLED": "false",
        "FLASK_APP": "app.py",
        "FLASK_DEBUG": "0",
        "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY", "2"),
        "GUNICORN_ACCESS_LOG": os.environ.get("BENCH_ACCESS_LOG", "1"),
    }
    env.pop("PASSWORD_HASH_METHOD", None)  # production default (scrypt)
    return env


class Gunicorn:
    """gunicorn with gunicorn.conf.py on 127.0.0.1:<free port>; always stopped."""

    def __init__(self, app: str, env: dict, log_name: str, extra: tuple = ()):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = RESULTS / log_name
        command = [
            str(BIN / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{self.port}",
            *extra,
            app,
        ]
        self.log_file = open(self.log_path, "w")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log_file, stderr=subprocess.STDOUT
        )

    def wait_ready(self, path: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.base + path, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise SystemExit(f"gunicorn did not answer {path} within {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log_file.close()

    def worker_class(self) -> str:
        """The worker class gunicorn reported at start-up ("Using worker: gevent")."""
        for line in self.log_path.read_text(errors="replace").splitlines():
            if "Using worker: " in line:
                return line.rsplit("Using worker: ", 1)[1].strip()
        return "unknown"

    def logged_errors(self) -> list[str]:
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line]


def cpu_by_pid(pids) -> dict[int, float]:
    """User + system CPU seconds of each process (Linux /proc; unreadable ones left out)."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / tick
    return seconds


def cpu_seconds(pids) -> float:
    return sum(cpu_by_pid(pids).values())


def process_groups(server: "Gunicorn", url: str) -> dict[str, list[int]]:
    """The gunicorn workers and the PostgreSQL backends serving the bench database."""
    children = subprocess.run(
        ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True, timeout=10
    ).stdout.split()
    with psycopg2.connect(url, connect_timeout=10) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        backends = [row[0] for row in cur.fetchall()]
    conn.close()
    return {"app": [int(pid) for pid in children], "db": backends}


def login(base: str, email: str) -> str:
    body = json.dumps({"email": email, "password": dataset.PASSWORD}).encode()
    request = urllib.request.Request(
        base + "/api/login", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["token"]


def api_call(base: str, method: str, path: str, token: str) -> tuple[int, object]:
    request = urllib.request.Request(
        base + path, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def check_out_all(base: str, admin_token: str, vehicle_ids: set[int]) -> int:
    """Check out (as the admin, through the API) every open ticket of vehicle_ids."""
    closed = 0
    for _page in range(20):
        status, tickets = api_call(
            base, "GET", "/api/tickets?all=true&active=true&per_page=1000", admin_token
        )
        if status != 200:
            raise SystemExit(f"listing open tickets failed: {status} {tickets}")
        mine = [t["id"] for t in tickets if t["vehicle_id"] in vehicle_ids]
        if not mine:
            return closed
        for ticket_id in mine:
            status, body = api_call(base, "PATCH", f"/api/checkout/{ticket_id}", admin_token)
            if status == 200:
                closed += 1
            elif body != {"error": "Invalid ticket or already checked out"}:
                raise SystemExit(f"checkout of ticket {ticket_id} failed: {status} {body}")
            # else: a checkout wrk sent just before it stopped closed it meanwhile;
            # the next listing shows whether anything is still open.
    raise SystemExit("open bench tickets keep appearing")


def mint_tokens(url: str, secret: str, user_ids) -> dict[int, str]:
    """Access tokens exactly as the app issues them (for the 512 storm drivers,
    whose logins would take most of a minute of scrypt)."""
    os.environ.update(
        {
            "DATABASE_URL": url,
            "JWT_SECRET_KEY": secret,
            "FLASK_DEBUG": "0",
            "RATELIMIT_ENABLED": "false",
        }
    )
    sys.path.insert(0, str(ROOT))
    from app import create_app
    from models import User, db
    from routes import issue_tokens

    app = create_app()
    with app.app_context():
        users = db.session.query(User).filter(User.id.in_(list(user_ids))).all()
        tokens = {user.id: issue_tokens(user)["token"] for user in users}
        db.session.remove()
        db.engine.dispose()
    return tokens


# ---------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------


def run_wrk(
    base: str, path: str, script: str, env: dict, threads: int, connections: int, seconds: int
) -> dict:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA / script),
        base + path,
    ]
    result = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "BENCH_LUA_DIR": str(LUA), **env},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if result.stderr.strip():
        log(f"wrk: {result.stderr.strip()[:2000]}")
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON ") :])
    sys.stderr.write(result.stderr)
    raise SystemExit(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def summarise(raw: dict, expected: set[str] | None) -> dict:
    seconds = raw["duration_us"] / 1e6
    socket_errors = sum(
        raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    counts = {k: int(v) for k, v in raw["counts"].items()}
    if expected is None:
        status_errors = raw["status_errors"]
    else:
        status_errors = sum(n for k, n in counts.items() if k not in expected)
    return {
        "requests": int(raw["requests"]),
        "seconds": round(seconds, 2),
        "rps": round(raw["requests"] / seconds, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "socket_errors": int(socket_errors),
        "status_errors": int(status_errors),
        "errors": int(socket_errors + status_errors),
        "counts": counts,
    }


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0].strip(),
        "load_generator": "wrk on the same machine, loopback",
    }


def write_data_files(tokens: dict, sizes: dataset.Sizes, cycle_spots: list[int]) -> dict:
    cycle = RESULTS / "cycle-drivers.txt"
    cycle.write_text(
        "".join(
            f"{tokens[dataset.driver_user_id(d)]} {dataset.daily_car(d, sizes)} {spot}\n"
            for d, spot in zip(CYCLE_DRIVERS, cycle_spots, strict=True)
        )
    )
    storm = RESULTS / "storm-drivers.txt"
    storm.write_text(
        "".join(
            f"{tokens[dataset.driver_user_id(d)]} {dataset.daily_car(d, sizes)}\n"
            for d in STORM_DRIVERS
        )
    )
    return {"cycle": str(cycle), "storm": str(storm)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", 10)))
    parser.add_argument("--warmup", type=int, default=int(os.environ.get("BENCH_WARMUP", 2)))
    parser.add_argument(
        "--connections", type=int, default=int(os.environ.get("BENCH_CONNECTIONS", 16))
    )
    parser.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""))
    parser.add_argument(
        "--keep-db", action="store_true", default=bool(os.environ.get("BENCH_KEEP_DB"))
    )
    parser.add_argument("--strict", action="store_true", help="fail when a target is missed")
    args = parser.parse_args()

    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    RESULTS.mkdir(exist_ok=True)
    url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL
    secret = secrets.token_hex(32)
    sizes = dataset.Sizes()
    chosen = [
        s
        for s in scenarios(sizes, args.connections)
        if not args.only or s["name"] in args.only.split(",")
    ]
    started = time.monotonic()
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "workers": int(os.environ.get("WEB_CONCURRENCY", "2")),
            "threads": int(os.environ.get("GUNICORN_THREADS", "1")),
            "access_log": os.environ.get("BENCH_ACCESS_LOG", "1") == "1",
            "baseline_worker_class": BASELINE_WORKER_CLASS,
        },
    }

    log(f"database {url}: recreate, migrate, load")
    recreate_database(url)
    servers: list[Gunicorn] = []
    try:
        results["machine"].update(server_info(url))
        env = app_env(os.environ.get("BENCH_APP_DATABASE_URL") or url, secret)
        migrated = subprocess.run(
            [str(BIN / "flask"), "db", "upgrade"],
            cwd=ROOT,
            env=env,
            timeout=120,
            capture_output=True,
            text=True,
        )
        if migrated.returncode:
            raise SystemExit(f"flask db upgrade failed:\n{migrated.stderr[-3000:]}")
        t0 = time.monotonic()
        conn = psycopg2.connect(url)
        counts = dataset.load(conn, sizes, generate_password_hash(dataset.PASSWORD))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
        problems = dataset.check(conn)
        results["dataset"] = {**counts, "load_seconds": round(time.monotonic() - t0, 1)}
        log(f"loaded {counts} in {results['dataset']['load_seconds']}s")
        if problems:
            raise SystemExit(f"dataset inconsistent: {problems}")
        with conn.cursor() as cur:
            cur.execute(
                "SELECT id FROM parking_spots WHERE lot_id = %s AND status = 'available' "
                "ORDER BY id LIMIT %s",
                (CYCLE_LOT, len(CYCLE_DRIVERS)),
            )
            cycle_spots = [row[0] for row in cur.fetchall()]
            cur.execute("SELECT max(id) FROM tickets")
            (last_ticket,) = cur.fetchone()

        # --- servers: the bare baseline and the API, side by side ----------
        # Each scenario is measured right after a baseline run of the same
        # length, so a change in background load moves both numbers.
        # The yardstick keeps the worker class the targets were set with (sync): served
        # by gevent, the bare app gains ~2x from keep-alive, far more than the API does,
        # and every ratio would fall while the API got faster (bench/README.md).
        baseline_env = {**env, "GUNICORN_WORKER_CLASS": BASELINE_WORKER_CLASS}
        baseline = Gunicorn(
            "baseline:app", baseline_env, "gunicorn-baseline.log", ("--pythonpath", "bench")
        )
        servers.append(baseline)
        api = Gunicorn("app:app", env, "gunicorn-app.log")
        servers.append(api)
        baseline.wait_ready("/")
        api.wait_ready("/api/test-db")
        results["settings"]["worker_class"] = api.worker_class()
        log("logging in the admin and the bench drivers")
        tokens = {1: login(api.base, dataset.admin_email())}
        for d in (*CYCLE_DRIVERS, ME_DRIVER):
            tokens[dataset.driver_user_id(d)] = login(api.base, dataset.driver_email(d))
        tokens.update(mint_tokens(url, secret, [dataset.driver_user_id(d) for d in STORM_DRIVERS]))
        files = write_data_files(tokens, sizes, cycle_spots)
        named_tokens = {"driver": tokens[dataset.driver_user_id(ME_DRIVER)], "admin": tokens[1]}
        bench_cars = {dataset.daily_car(d, sizes) for d in (*CYCLE_DRIVERS, *STORM_DRIVERS)}

        def measure_baseline(seconds: int) -> dict:
            workers = process_groups(baseline, url)["app"]
            before = cpu_seconds(workers)
            raw = run_wrk(
                baseline.base, "/", "get.lua", {"BENCH_PATH": "/"}, 2, args.connections, seconds
            )
            summary = summarise(raw, None)
            used = cpu_seconds(workers) - before
            summary["cpu_ms_per_request"] = round(used * 1000 / max(summary["requests"], 1), 2)
            return summary

        if args.warmup:
            measure_baseline(args.warmup)
        results["scenarios"] = []
        for scenario in chosen:
            env_vars = {k: v for k, v in scenario["env"].items() if k.startswith("BENCH_")}
            env_vars["BENCH_LOTS"] = str(sizes.lots)
            if "token" in scenario["env"]:
                env_vars["BENCH_TOKEN"] = named_tokens[scenario["env"]["token"]]
            if "BENCH_DRIVERS" in env_vars:
                env_vars["BENCH_DRIVERS"] = files[env_vars["BENCH_DRIVERS"]]
            threads = scenario.get("threads", 2)
            env_vars["BENCH_THREADS"] = str(threads)
            path = env_vars.get("BENCH_PATH", "/").replace("{lot}", "1")
            log(f"{scenario['name']}: {threads} threads, {scenario['connections']} connections")
            if args.warmup and scenario.get("warmup", True):
                run_wrk(
                    api.base,
                    path,
                    scenario["script"],
                    env_vars,
                    threads,
                    scenario["connections"],
                    args.warmup,
                )
            if "BENCH_DRIVERS" in env_vars:
                # wrk stops mid-cycle: check out what the warm-up left parked.
                check_out_all(api.base, tokens[1], bench_cars)
            base = measure_baseline(args.duration)
            cpu_before = {name: cpu_by_pid(pids) for name, pids in process_groups(api, url).items()}
            raw = run_wrk(
                api.base,
                path,
                scenario["script"],
                env_vars,
                threads,
                scenario["connections"],
                args.duration,
            )
            row = summarise(raw, scenario.get("expected"))
            # Where the CPU went, per request: Python in the workers or PostgreSQL.
            # gevent workers open pool connections as concurrency needs them, so the
            # backends are listed again: one that started meanwhile counts whole, one
            # that ended is left out (about one per 100 requests: an undercount).
            cpu_after = {name: cpu_by_pid(pids) for name, pids in process_groups(api, url).items()}
            row["cpu_ms_per_request"] = {
                name: round(
                    sum(cpu - cpu_before[name].get(pid, 0.0) for pid, cpu in used.items())
                    * 1000
                    / max(row["requests"], 1),
                    2,
                )
                for name, used in cpu_after.items()
            }
            # The baseline again right after: the ratio is to the mean of the two,
            # so a change of background load during the scenario moves both sides.
            after = measure_baseline(args.duration)
            base_rps = round((base["rps"] + after["rps"]) / 2, 1)
            row.update(
                name=scenario["name"],
                label=scenario["label"],
                baseline_rps=base_rps,
                baseline_rps_before_after=[base["rps"], after["rps"]],
                baseline_errors=base["errors"] + after["errors"],
                baseline_cpu_ms_per_request=base["cpu_ms_per_request"],
                ratio=round(row["rps"] / base_rps, 3),
                target=scenario["target"],
            )
            row["meets_target"] = row["target"] is None or row["ratio"] >= row["target"]
            results["scenarios"].append(row)
            log(
                f"{scenario['name']}: {row['rps']} req/s (baseline {base['rps']} before, "
                f"{after['rps']} after), "
                f"ratio {row['ratio']}, errors {row['errors']} {row['counts'] or ''}"
            )
        rates = sorted(row["baseline_rps"] for row in results["scenarios"]) or [0]
        results["baseline"] = {"rps_median": rates[len(rates) // 2], "rps_runs": rates}

        # --- correctness after the writes -------------------------------------
        api.stop()
        with conn.cursor() as cur:
            problems = dataset.consistency_problems(cur, since_ticket=last_ticket)
            cur.execute(
                "SELECT count(*), count(*) FILTER (WHERE t.lot_id <> %s) FROM tickets AS t "
                "WHERE t.id > %s AND t.user_id = ANY(%s)",
                (sizes.lots, last_ticket, [dataset.driver_user_id(d) for d in STORM_DRIVERS]),
            )
            storm_tickets, outside = cur.fetchone()
        conn.close()
        if outside:
            problems.append(f"{outside} storm tickets outside the storm lot")
        app_errors = api.logged_errors() + baseline.logged_errors()
        if app_errors:
            problems.append(f"{len(app_errors)} errors in {api.log_path}: {app_errors[:3]}")
        results["correctness"] = {"problems": problems, "storm_tickets_written": storm_tickets}
    finally:
        for server in servers:
            server.stop()
        if args.keep_db:
            log(f"kept database {url}")
        else:
            drop_database(url)

    results["total_seconds"] = round(time.monotonic() - started, 1)
    failures = [
        f"{row['name']}: {row['errors']} errors (baseline {row['baseline_errors']})"
        for row in results["scenarios"]
        if row["errors"] or row["baseline_errors"]
    ]
    failures += results["correctness"]["problems"]
    missed = [
        f"{row['name']}: ratio {row['ratio']} < {row['target']}"
        for row in results["scenarios"]
        if not row["meets_target"]
    ]
    results["failures"], results["missed_targets"] = failures, missed
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    if failures:
        print("FAILED: " + "; ".join(failures))
    if missed:
        print("Below target: " + "; ".join(missed))
    print(f"Results: {RESULTS / 'latest.json'} ({results['total_seconds']}s)")
    return 1 if failures or (args.strict and missed) else 0


def print_table(results: dict) -> None:
    m = results["machine"]
    print()
    print(
        f"Machine: {m['cores']} cores ({m['cpu']}), PostgreSQL {m['postgresql']}, "
        f"Python {m['python']}, {m['wrk']} on the same machine"
    )
    s = results["settings"]
    print(
        f"gunicorn: {s['workers']} {s.get('worker_class', '')} workers x {s['threads']} threads; "
        f"{s['duration_s']}s per scenario after {s['warmup_s']}s warm-up"
    )
    header = (
        f"{'scenario':<36}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'base/s':>9}{'ratio':>8}{'target':>8}  ok  cpu ms/req app+db"
    )
    print(header)
    print("-" * len(header))
    for row in results["scenarios"]:
        target = f"{row['target']:.2f}" if row["target"] is not None else "-"
        ok = "yes" if row["meets_target"] and not row["errors"] else "NO"
        print(
            f"{row['label']:<36}{row['rps']:>9.1f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['errors']:>8}{row['baseline_rps']:>9.1f}{row['ratio']:>8.2f}{target:>8}  {ok:<3}"
            f" {row['cpu_ms_per_request']['app']:.2f}+{row['cpu_ms_per_request']['db']:.2f}"
        )
    print(
        f"baseline (bare Flask, {s['baseline_worker_class']} workers, measured before and "
        f"after each scenario): median "
        f"{results['baseline']['rps_median']:.1f} req/s"
    )
    storm = next((r for r in results["scenarios"] if r["name"] == "storm"), None)
    if storm:
        c = storm["counts"]
        print(
            f"storm: {c.get('booked', 0)} assigned, {c.get('refused', 0)} refused with 409, "
            f"{c.get('checked_out', 0)} checked out"
        )
    problems = results["correctness"]["problems"]
    print("Database checks: " + ("OK" if not problems else "; ".join(problems)))
    print()


if __name__ == "__main__":
    sys.exit(main())
