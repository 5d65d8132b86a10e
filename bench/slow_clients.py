"""Slow and idle clients against one gunicorn instance: does it keep serving?

Issue 15, item 4: with sync workers two half-sent requests blocked both workers
for about 27 s, and 200 idle connections stopped the instance. This script
reproduces that and measures each candidate worker model:

1. Creates a throwaway PostgreSQL database (SLOW_CLIENTS_DATABASE_URL, default
   postgresql://postgres@127.0.0.1:5432/parking_slow_clients) and migrates it.
2. For each candidate (`--candidates`, e.g. `sync,gthread:32,gevent`; `default`
   is whatever gunicorn.conf.py chooses) starts gunicorn with gunicorn.conf.py
   (2 workers, production config) on a free loopback port, registers a driver,
   and measures the latency of `GET /api/test-db` and of an authenticated
   `GET /api/me` while the instance is quiet.
3. Then, for `--seconds`, keeps `--idle` connections open that never send a
   byte and `--half` half-sent requests (alternately: headers cut off in the
   middle, and full headers with half of a JSON body), each trickling one more
   byte every `--trickle` seconds, as a slowloris client does. Whatever the
   server closes is opened again at once: the attacker persists. Meanwhile two
   probes send `/api/test-db` and `/api/me` one after the other, each on a new
   connection with a `--probe-timeout`, and record every latency.
4. Prints a table, writes bench/results/slow_clients.json, stops gunicorn and
   drops the database, whatever happened.

Usage:
    .venv/bin/python bench/slow_clients.py                         # sync, gthread:32, default
    .venv/bin/python bench/slow_clients.py --candidates gevent --seconds 30

Everything talks to 127.0.0.1 only, every socket has a timeout and every loop
ends with its window; exit status 1 when the last candidate failed a probe.
"""

import argparse
import http.client
import json
import os
import secrets
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/parking_slow_clients"
START_TIMEOUT = 30  # seconds for gunicorn to answer /api/test-db
PASSWORD = "slow-clients-password-1"

# The requests the half-sent sockets are in the middle of, cut where noted.
HALF_HEADERS = b"GET /api/test-db HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"
HALF_BODY = (
    b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 64\r\n\r\n" + b'{"email": "slow@example.com", "pa'
)


def log(message: str) -> None:
    print(f"[slow-clients {datetime.now():%H:%M:%S}] {message}", flush=True)


# ---------------------------------------------------------------------------
# Database and server
# ---------------------------------------------------------------------------


def admin_dsn(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"SLOW_CLIENTS_DATABASE_URL must name a plain database, not {name!r}")
    return urlunsplit(parts._replace(path="/postgres")), name


def run_sql(url: str, statement: str) -> None:
    dsn, _ = admin_dsn(url)
    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(url: str) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "JWT_SECRET_KEY": secrets.token_hex(32),
        "FLASK_APP": "app.py",
        "FLASK_DEBUG": "0",
        "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY", "2"),
        "GUNICORN_ACCESS_LOG": os.environ.get("GUNICORN_ACCESS_LOG", "0"),
        # The probes all come from 127.0.0.1; the default limit (600/min) is enough,
        # and the limiter stays on as in production (memory:// here).
        "RATELIMIT_STORAGE_URI": "memory://",
    }
    env.pop("PASSWORD_HASH_METHOD", None)
    return env


def candidate_args(candidate: str) -> list[str]:
    """Command-line flags for 'sync', 'gthread:N', 'gevent' or 'default' (the config file's)."""
    kind, _, threads = candidate.partition(":")
    if kind == "default":
        return []
    if kind == "gthread":
        return ["-k", "gthread", "--threads", threads or "32"]
    return ["-k", kind]


class Server:
    """gunicorn -c gunicorn.conf.py on 127.0.0.1:<free port>; stop() always kills it."""

    def __init__(self, candidate: str, env: dict, log_path: Path):
        self.port = free_port()
        self.log_path = log_path
        self.log_file = open(log_path, "w")  # noqa: SIM115 (closed in stop())
        command = [
            str(BIN / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--no-control-socket",
            *candidate_args(candidate),
            "app:app",
        ]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log_file, stderr=subprocess.STDOUT
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            status, _, _ = request(self.port, "GET", "/api/test-db", timeout=2)
            if status == 200:
                return
            time.sleep(0.2)
        raise SystemExit(f"gunicorn did not start; see {self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log_file.close()


def request(port: int, method: str, path: str, body=None, token=None, timeout=10.0):
    """One request on a new connection: (status or None, seconds, error text or body)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Connection": "close"}
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        return response.status, time.monotonic() - started, payload.decode(errors="replace")
    except (OSError, http.client.HTTPException) as error:
        return None, time.monotonic() - started, f"{type(error).__name__}: {error}"
    finally:
        conn.close()


def register(port: int, name: str) -> str:
    body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    status, _, text = request(port, "POST", "/api/register", body, timeout=30)
    if status != 201:
        raise SystemExit(f"register failed: {status} {text[:300]}")
    return json.loads(text)["token"]


# ---------------------------------------------------------------------------
# The slow clients
# ---------------------------------------------------------------------------


class SlowClients:
    """`idle` silent connections and `half` half-sent requests, reopened when closed.

    One thread owns every socket: it watches them with a selector (a readable
    socket here means the server answered or closed it), reopens what closed,
    and trickles one byte into each half-sent request every `trickle` seconds.
    """

    def __init__(self, port: int, idle: int, half: int, trickle: float):
        self.port, self.idle, self.half, self.trickle = port, idle, half, trickle
        self.selector = selectors.DefaultSelector()
        self.stopping = threading.Event()
        self.closed_by_server = {"idle": 0, "half": 0}
        self.open_failures = 0
        self.held: dict[str, list[float]] = {"idle": [], "half": []}
        self.thread = threading.Thread(target=self.run, daemon=True)

    def open(self, kind: str, index: int) -> None:
        sock = socket.socket()
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", self.port))
            if kind == "half":
                sock.sendall(HALF_HEADERS if index % 2 == 0 else HALF_BODY)
        except OSError:
            self.open_failures += 1
            sock.close()
            return
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, (kind, index, time.monotonic()))

    def start(self) -> None:
        for index in range(self.half):
            self.open("half", index)
        for index in range(self.idle):
            self.open("idle", index)
        self.thread.start()

    def run(self) -> None:
        next_trickle = time.monotonic() + self.trickle
        while not self.stopping.is_set():
            for key, _ in self.selector.select(timeout=0.2):
                kind, index, opened = key.data
                self.selector.unregister(key.fileobj)
                key.fileobj.close()
                self.closed_by_server[kind] += 1
                self.held[kind].append(time.monotonic() - opened)
                if not self.stopping.is_set():
                    self.open(kind, index)
            if self.trickle and time.monotonic() >= next_trickle:
                next_trickle += self.trickle
                for key in list(self.selector.get_map().values()):
                    if key.data[0] == "half":
                        try:
                            key.fileobj.send(b"x")
                        except OSError:
                            pass  # closed: the selector reports it next round

    def stop(self) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()

    def summary(self) -> dict:
        return {
            "closed_by_server": dict(self.closed_by_server),
            "open_failures": self.open_failures,
            "held_s_median": {
                kind: round(statistics.median(v), 1) if v else None for kind, v in self.held.items()
            },
        }


def probe(port: int, path: str, token, seconds: float, timeout: float, pause: float) -> list:
    """Request `path` one after another for `seconds`; (status, latency) of each."""
    results = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, elapsed, _ = request(port, "GET", path, token=token, timeout=timeout)
        results.append((status, elapsed))
        time.sleep(pause)
    return results


def probe_both(port: int, token: str, seconds: float, timeout: float, pause: float) -> dict:
    out: dict[str, list] = {}
    targets = {"test_db": ("/api/test-db", None), "me": ("/api/me", token)}
    threads = [
        threading.Thread(
            target=lambda name=name, path=path, tok=tok: out.__setitem__(
                name, probe(port, path, tok, seconds, timeout, pause)
            ),
            daemon=True,
        )
        for name, (path, tok) in targets.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + timeout + 10)
    return {name: latency_summary(out.get(name, [])) for name in targets}


def latency_summary(results: list) -> dict:
    ok = sorted(elapsed for status, elapsed in results if status == 200)
    failed = [status for status, _ in results if status != 200]

    def pct(p: float):
        return round(ok[min(len(ok) - 1, int(p * len(ok)))] * 1000, 1) if ok else None

    return {
        "requests": len(results),
        "ok": len(ok),
        "failed": len(failed),
        "failures": sorted({str(status) for status in failed}),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "max_ms": round(max(elapsed for _, elapsed in results) * 1000, 1) if results else None,
    }


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def measure(candidate: str, url: str, args, number: int) -> dict:
    log_path = RESULTS / f"slow-clients-{candidate.replace(':', '-')}.log"
    server = Server(candidate, server_env(url), log_path)
    clients = None
    try:
        server.wait_ready()
        token = register(server.port, f"slow{number}")
        quiet = probe_both(server.port, token, 3, args.probe_timeout, args.pause)
        clients = SlowClients(server.port, args.idle, args.half, args.trickle)
        clients.start()
        time.sleep(0.5)  # let the server accept them before the first probe
        attacked = probe_both(server.port, token, args.seconds, args.probe_timeout, args.pause)
        clients.stop()
        after = probe_both(server.port, token, 2, args.probe_timeout, args.pause)
        return {
            "candidate": candidate,
            "quiet": quiet,
            "attacked": attacked,
            "after": after,
            "slow_clients": clients.summary(),
            "alive": server.process.poll() is None,
        }
    finally:
        if clients is not None:
            clients.stop()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", default="sync,gthread:32,default")
    parser.add_argument("--seconds", type=float, default=20, help="attack window per candidate")
    parser.add_argument("--idle", type=int, default=200, help="connections that send nothing")
    parser.add_argument("--half", type=int, default=2, help="half-sent requests")
    parser.add_argument("--trickle", type=float, default=2.0, help="s between trickled bytes")
    parser.add_argument("--probe-timeout", type=float, default=10.0)
    parser.add_argument("--pause", type=float, default=0.1, help="s between probes")
    args = parser.parse_args()

    RESULTS.mkdir(exist_ok=True)
    url = os.environ.get("SLOW_CLIENTS_DATABASE_URL") or DEFAULT_URL
    _, name = admin_dsn(url)
    log(f"database {name}: create and migrate")
    run_sql(url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    run_sql(url, f"CREATE DATABASE {name}")
    rows = []
    try:
        migrated = subprocess.run(
            [str(BIN / "flask"), "db", "upgrade"],
            cwd=ROOT,
            env=server_env(url),
            timeout=120,
            capture_output=True,
            text=True,
        )
        if migrated.returncode:
            raise SystemExit(f"flask db upgrade failed:\n{migrated.stderr[-3000:]}")
        for number, candidate in enumerate(args.candidates.split(",")):
            log(f"{candidate}: {args.idle} idle + {args.half} half-sent for {args.seconds:g}s")
            rows.append(measure(candidate, url, args, number))
    finally:
        run_sql(url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {**vars(args), "workers": int(os.environ.get("WEB_CONCURRENCY", "2"))},
        "candidates": rows,
    }
    (RESULTS / "slow_clients.json").write_text(json.dumps(report, indent=2) + "\n")
    print_table(rows, args)
    last = rows[-1]["attacked"] if rows else {}
    return 1 if not rows or any(p["failed"] for p in last.values()) else 0


def print_table(rows: list, args) -> None:
    print()
    print(
        f"{args.idle} idle connections + {args.half} half-sent requests (one byte every "
        f"{args.trickle:g}s), reopened when closed; probes time out after {args.probe_timeout:g}s"
    )
    header = (
        f"{'candidate':<14}{'probe':<9}{'quiet p50':>10}{'attacked: n':>13}{'failed':>8}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'after p50':>11}  closed by server"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        for name in ("test_db", "me"):
            q, a, z = row["quiet"][name], row["attacked"][name], row["after"][name]
            closed = row["slow_clients"]["closed_by_server"]
            print(
                f"{row['candidate']:<14}{name:<9}{q['p50_ms'] or '-':>10}{a['requests']:>13}"
                f"{a['failed']:>8}{a['p50_ms'] or '-':>9}{a['p95_ms'] or '-':>9}"
                f"{a['max_ms'] or '-':>9}{z['p50_ms'] or '-':>11}"
                f"  idle {closed['idle']}, half {closed['half']}"
            )
    print(f"Results: {RESULTS / 'slow_clients.json'}")


if __name__ == "__main__":
    sys.exit(main())
