"""A real streaming replica: routed reads use it, writes and their reads do not,
and a dead or silent replica leaves the app serving from the primary.

The module starts its own PostgreSQL primary and a streaming replica of it
(initdb, then pg_basebackup -R) on free local ports in a temporary directory,
and stops and deletes both at the end, also when a test fails. It is marked
`replica` and left out of `make test`; `.ci/replica.sh` runs it:

    bash .ci/replica.sh            # or: .venv/bin/python -m pytest -m replica tests/test_replica.py

The proofs go through the API. While the replica's WAL replay is paused it
still shows the data from before a write, so a routed read (lot list, spot
search, report) that answers with the old data came from the replica, and a
read that shows the write came from the primary. The statements each engine
ran are recorded as well.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest
from flask_migrate import upgrade
from sqlalchemy import event

from app import create_app
from config import TestConfig, replica_binds
from models import db
from replica import REPLICA

pytestmark = pytest.mark.replica

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30  # seconds for a server to start, or the replica to catch up


def pg_bin() -> Path:
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = glob.glob("/usr/lib/postgresql/*/bin")
    assert found, "PostgreSQL server binaries not found (set PG_BINDIR)"
    return Path(max(found, key=lambda path: int(path.split("/")[-2])))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Servers:
    """A primary and its streaming replica, each its own data directory and port.

    PostgreSQL refuses to run as root, so as root every server command runs as
    the postgres user, in a directory that user owns.
    """

    def __init__(self, base: Path):
        self.base = base
        self.bin = pg_bin()
        self.primary_dir, self.replica_dir = base / "primary", base / "replica"
        self.primary_port, self.replica_port = free_port(), free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(self, *command: str) -> None:
        result = subprocess.run(
            [*self.as_user, *command], capture_output=True, text=True, timeout=120
        )
        if result.returncode:
            raise RuntimeError(f"{command[0]} failed: {result.stdout}\n{result.stderr}")

    def pg_ctl(self, directory: Path, *args: str) -> None:
        log = self.base / f"{directory.name}.log"
        self.run(str(self.bin / "pg_ctl"), "-D", str(directory), "-l", str(log), *args)

    def start(self) -> None:
        if self.as_user:
            shutil.chown(self.base, "postgres")
        self.run(
            str(self.bin / "initdb"),
            "-D",
            str(self.primary_dir),
            "-U",
            "postgres",
            "--auth=trust",  # local and replication connections from 127.0.0.1
            "--no-sync",
            "--encoding=UTF8",
        )
        with open(self.primary_dir / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.primary_port}\n"
                f"unix_socket_directories = '{self.base}'\n"
                # Test servers only: durability is not what is tested here.
                "fsync = off\nfull_page_writes = off\n"
                "max_connections = 40\nshared_buffers = 16MB\n"
            )
        self.pg_ctl(self.primary_dir, "-w", "-t", str(TIMEOUT), "start")
        self.run(
            str(self.bin / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary_port),
            "-U",
            "postgres",
            "-D",
            str(self.replica_dir),
            "-R",  # standby.signal + primary_conninfo: a streaming replica
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        )
        with open(self.replica_dir / "postgresql.conf", "a") as conf:
            conf.write(f"port = {self.replica_port}\n")
        self.start_replica()
        self.create_database()

    def start_replica(self) -> None:
        self.pg_ctl(self.replica_dir, "-w", "-t", str(TIMEOUT), "start")
        self.wait_streaming()

    def stop_replica(self) -> None:
        self.pg_ctl(self.replica_dir, "-w", "-m", "fast", "stop")

    def stop(self) -> None:
        for directory in (self.replica_dir, self.primary_dir):
            if (directory / "postmaster.pid").exists():
                self.pg_ctl(directory, "-w", "-m", "immediate", "stop")

    def url(self, port: int, database: str = "parking") -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    @contextmanager
    def connect(self, port: int, database: str = "parking"):
        conn = psycopg2.connect(self.url(port, database), connect_timeout=5)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                yield cur
        finally:
            conn.close()

    def create_database(self) -> None:
        with self.connect(self.primary_port, "postgres") as cur:
            cur.execute("CREATE DATABASE parking")
        self.wait_replayed()

    def wait_streaming(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            with self.connect(self.primary_port, "postgres") as cur:
                cur.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                if cur.fetchone()[0] == 1:
                    return
            time.sleep(0.1)
        raise RuntimeError("the replica did not start streaming")

    def wait_replayed(self) -> None:
        """Until the replica has replayed everything the primary has written."""
        with self.connect(self.primary_port, "postgres") as cur:
            cur.execute("SELECT pg_current_wal_insert_lsn()")
            (target,) = cur.fetchone()
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            with self.connect(self.replica_port, "postgres") as cur:
                cur.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,))
                if cur.fetchone()[0]:
                    return
            time.sleep(0.05)
        raise RuntimeError("the replica did not catch up")

    @contextmanager
    def replay_paused(self):
        """The replica keeps what it has but applies nothing new meanwhile."""
        self.wait_replayed()
        with self.connect(self.replica_port, "postgres") as cur:
            cur.execute("SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            with self.connect(self.replica_port, "postgres") as cur:
                cur.execute("SELECT pg_wal_replay_resume()")
            self.wait_replayed()


@pytest.fixture(scope="module")
def servers():
    base = Path(tempfile.mkdtemp(prefix="servers-", dir=os.environ.get("REPLICA_TEST_DIR")))
    started = Servers(base)
    try:
        started.start()
        yield started
    finally:
        try:
            started.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def make_app(primary_url: str, replica_url: str, retry_seconds: int = 60):
    config = type(
        "ReplicaTestConfig",
        (TestConfig,),
        {
            "SQLALCHEMY_DATABASE_URI": primary_url.replace("postgresql:", "postgresql+psycopg2:"),
            "SQLALCHEMY_BINDS": replica_binds(replica_url, 2),
            "REPLICA_RETRY_SECONDS": retry_seconds,
        },
    )
    return create_app(config)


@pytest.fixture(scope="module")
def migrated(servers):
    application = make_app(servers.url(servers.primary_port), servers.url(servers.replica_port))
    with application.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        db.engine.dispose()
    servers.wait_replayed()
    return servers


@pytest.fixture
def apps():
    """Build apps; their engines are closed afterwards."""
    built = []

    def build(servers, replica_url=None, retry_seconds=60):
        replica_url = replica_url or servers.url(servers.replica_port)
        application = make_app(servers.url(servers.primary_port), replica_url, retry_seconds)
        built.append(application)
        return application

    yield build
    for application in built:
        with application.app_context():
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture
def app(migrated, apps):
    application = apps(migrated)
    with migrated.connect(migrated.primary_port) as cur:
        cur.execute(
            "TRUNCATE revoked_tokens, tickets, parking_spots, vehicles, parking_lots, users "
            "RESTART IDENTITY CASCADE"
        )
    migrated.wait_replayed()
    return application


@contextmanager
def statements_on(application):
    """The SQL each engine ran meanwhile: {"primary": [...], "replica": [...]}."""
    seen = {"primary": [], "replica": []}
    with application.app_context():
        engines = {"primary": db.engines[None], "replica": db.engines[REPLICA]}
    listeners = []
    for name, engine in engines.items():

        def record(_conn, _cursor, statement, *_args, into=seen[name]):
            into.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        listeners.append((engine, record))
    try:
        yield seen
    finally:
        for engine, record in listeners:
            event.remove(engine, "before_cursor_execute", record)


@contextmanager
def connection_attempts(application):
    """How many new connections the app's replica engine tried to open meanwhile."""
    attempts = []
    with application.app_context():
        engine = db.engines[REPLICA]

    def count(*_args):
        attempts.append(time.monotonic())

    event.listen(engine, "do_connect", count)
    try:
        yield attempts
    finally:
        event.remove(engine, "do_connect", count)


def register(client, name: str) -> dict:
    response = client.post(
        "/api/register",
        json={"username": name, "email": f"{name}@example.com", "password": "password123"},
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    return {"id": body["user"]["id"], "headers": {"Authorization": f"Bearer {body['token']}"}}


@pytest.fixture
def people(app, migrated):
    client = app.test_client()
    boss, driver, other = (register(client, name) for name in ("boss", "driver", "other"))
    with migrated.connect(migrated.primary_port) as cur:
        cur.execute("UPDATE users SET role = 'admin' WHERE id = %s", (boss["id"],))
    lot = client.post(
        "/api/parking-lots",
        json={"name": "Replica Row", "location": "Upper Hill", "spot_count": 3},
        headers=boss["headers"],
    ).get_json()
    migrated.wait_replayed()  # the spot search reads the replica
    spots = client.get(f"/api/spots?lot_id={lot['lot_id']}").get_json()
    cars = []
    for person, plate in ((driver, "KRA 100A"), (other, "KRB 200B")):
        response = client.post(
            "/api/vehicles", json={"plate_number": plate}, headers=person["headers"]
        )
        assert response.status_code == 201, response.get_json()
        cars.append(response.get_json()["id"])
    migrated.wait_replayed()
    return {
        "client": client,
        "boss": boss["headers"],
        "driver": driver["headers"],
        "other": other["headers"],
        "lot": lot["lot_id"],
        "spots": [spot["id"] for spot in spots],
        "cars": cars,
    }


def routed_reads(p: dict) -> dict:
    """What the three routed views say about the lot: spot statuses, the lot's
    free spots in the list, and tickets started today in the report."""
    client, lot = p["client"], p["lot"]
    spots = client.get(f"/api/spots?lot_id={lot}")
    lots = client.get("/api/parking-lots", headers=p["driver"])
    today = datetime.now(UTC).date().isoformat()
    report = client.get(
        f"/api/parking-lots/{lot}/report?from={today}&to={today}", headers=p["boss"]
    )
    for response in (spots, lots, report):
        assert response.status_code == 200, response.get_json()
    listed = next(row for row in lots.get_json() if row["id"] == lot)
    return {
        "spots": [spot["status"] for spot in spots.get_json()],
        "available": listed["available_spots"],
        "started_today": report.get_json()["totals"]["tickets_started"],
    }


BEFORE = {"spots": ["available"] * 3, "available": 3, "started_today": 0}
AFTER = {"spots": ["occupied", "available", "available"], "available": 2, "started_today": 1}


def test_routed_reads_come_from_the_replica_and_writes_go_to_the_primary(app, migrated, people):
    p, client = people, people["client"]
    with migrated.connect(migrated.replica_port) as cur:
        cur.execute("SELECT pg_is_in_recovery(), inet_server_port()")
        assert cur.fetchone() == (True, migrated.replica_port)

    with migrated.replay_paused(), statements_on(app) as seen:
        booked = client.post(
            "/api/tickets",
            json={"vehicle_id": p["cars"][0], "parking_spot_id": p["spots"][0]},
            headers=p["driver"],
        )
        assert booked.status_code == 201, booked.get_json()
        ticket_id = booked.get_json()["ticket_id"]

        # Read-after-write stays on the primary: the driver sees the new ticket.
        own = client.get("/api/tickets", headers=p["driver"]).get_json()
        assert [ticket["id"] for ticket in own] == [ticket_id]
        assert client.get(f"/api/tickets/{ticket_id}", headers=p["driver"]).status_code == 200
        assert (
            client.get(f"/api/parking-lots/{p['lot']}", headers=p["driver"]).get_json()[
                "available_spots"
            ]
            == 2
        )

        # The routed reads do not see it yet: they read the paused replica.
        assert routed_reads(p) == BEFORE
        # The replica's stale "available" decides nothing: the booking runs on the primary.
        again = client.post(
            "/api/tickets",
            json={"vehicle_id": p["cars"][1], "parking_spot_id": p["spots"][0]},
            headers=p["other"],
        )
        assert (again.status_code, again.get_json()) == (400, {"error": "Spot unavailable"})

    # Replay resumed and caught up: the routed reads show the booking.
    assert routed_reads(p) == AFTER
    replica_sql, primary_sql = " ".join(seen["replica"]), " ".join(seen["primary"])
    assert "FROM parking_spots" in replica_sql and "FROM parking_lots" in replica_sql
    assert "FROM lot_days" in replica_sql  # the report reads the daily rollups (migration 0009)
    assert "INSERT INTO tickets" in primary_sql and "INSERT" not in replica_sql
    assert "revoked_tokens" not in replica_sql  # token checks stay on the primary


def test_a_token_revoked_on_the_primary_is_refused_by_routed_views(app, migrated, people):
    p, client = people, people["client"]
    with migrated.replay_paused():
        assert client.post("/api/logout", json={}, headers=p["driver"]).status_code == 200
        # The replica has not seen the revocation; the token check reads the primary.
        response = client.get("/api/parking-lots", headers=p["driver"])
        assert (response.status_code, response.get_json()) == (
            401,
            {"error": "Token has been revoked"},
        )


def test_a_stopped_replica_falls_back_to_the_primary_without_stalling(app, migrated, people, apps):
    p, client = people, people["client"]
    assert routed_reads(p) == BEFORE  # the app's replica pool holds connections now
    migrated.stop_replica()
    try:
        booked = client.post(
            "/api/tickets",
            json={"vehicle_id": p["cars"][0], "parking_spot_id": p["spots"][0]},
            headers=p["driver"],
        )
        assert booked.status_code == 201, booked.get_json()
        started = time.monotonic()
        with connection_attempts(app) as attempts, statements_on(app) as seen:
            answers = [routed_reads(p) for _ in range(10)]  # 30 routed requests
        elapsed = time.monotonic() - started
        # Fresh data, so from the primary; one failed reconnect opened the breaker
        # and no request after it tried the replica again.
        assert answers == [AFTER] * 10
        assert len(attempts) == 1, attempts
        assert seen["replica"] == []
        assert elapsed < 10, f"30 routed requests took {elapsed:.1f}s with the replica down"
    finally:
        migrated.start_replica()

    # Back up: once the breaker's time is over, the routed reads use the replica again.
    quick = apps(migrated, retry_seconds=1)
    p = {**p, "client": quick.test_client()}
    migrated.stop_replica()
    try:
        assert routed_reads(p) == AFTER  # trips quick's breaker
    finally:
        migrated.start_replica()
    migrated.wait_replayed()
    time.sleep(1.1)
    with statements_on(quick) as seen:
        assert routed_reads(p) == AFTER
    assert any("FROM parking_spots" in sql for sql in seen["replica"])


def test_a_silent_replica_costs_one_connect_timeout(migrated, people, apps):
    """A replica that accepts TCP connections but never answers (a hung server)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes handshakes; nobody ever answers
        url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/parking"
        silent_app = apps(migrated, replica_url=url)
        p = {**people, "client": silent_app.test_client()}
        with connection_attempts(silent_app) as attempts:
            started = time.monotonic()
            assert routed_reads(p) == BEFORE  # from the primary
            first = time.monotonic() - started
            started = time.monotonic()
            for _ in range(5):
                assert routed_reads(p) == BEFORE
            rest = time.monotonic() - started
    # One connection attempt waited out the 2-second connect timeout; then the
    # breaker sent every routed read straight to the primary.
    assert len(attempts) == 1, attempts
    assert 1.5 < first < 8, first
    assert rest < 5, rest


def test_a_replica_lost_mid_request_is_read_again_from_the_primary(app, migrated, people):
    """The replica connection dies during the view: the view runs again on the primary."""
    p, client = people, people["client"]
    with app.app_context():
        engine = db.engines[REPLICA]
    killed = []

    def kill_own_backend(conn, _cursor, statement, *_args):
        if not killed and "FROM parking_lots" in statement:
            pid = conn.connection.dbapi_connection.get_backend_pid()
            with migrated.connect(migrated.replica_port) as cur:
                # Wait (up to 5 s) until the backend is gone, so the statement fails.
                cur.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
            killed.append(pid)

    event.listen(engine, "before_cursor_execute", kill_own_backend)
    try:
        with statements_on(app) as seen:
            response = client.get("/api/parking-lots", headers=p["driver"])
    finally:
        event.remove(engine, "before_cursor_execute", kill_own_backend)
    assert response.status_code == 200, response.get_json()
    assert [row["id"] for row in response.get_json()] == [p["lot"]]
    assert killed
    assert any("FROM parking_lots" in sql for sql in seen["primary"])
    with app.app_context():
        assert not app.extensions["replica_breaker"].closed()


def test_without_a_replica_url_every_read_uses_the_primary(migrated, people):
    """DATABASE_REPLICA_URL unset: no replica bind, the decorator does nothing."""
    config = type(
        "NoReplica",
        (TestConfig,),
        {
            "SQLALCHEMY_DATABASE_URI": migrated.url(migrated.primary_port).replace(
                "postgresql:", "postgresql+psycopg2:"
            )
        },
    )
    plain = create_app(config)
    try:
        with plain.app_context():
            assert list(db.engines) == [None]
        p = {**people, "client": plain.test_client()}
        with migrated.replay_paused():
            booked = p["client"].post(
                "/api/tickets",
                json={"vehicle_id": p["cars"][0], "parking_spot_id": p["spots"][0]},
                headers=p["driver"],
            )
            assert booked.status_code == 201, booked.get_json()
            assert routed_reads(p) == AFTER  # the primary's data while the replica lags
    finally:
        with plain.app_context():
            db.engine.dispose()
