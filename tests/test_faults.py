"""The fault suite: inject a fault, expect a bounded JSON answer.

Each test injects one fault the way it happens in production and checks
that the API answers within its bounds, as JSON, with nothing half-written:
a lock held by another connection (503 within lock_timeout, not a hang), a
backend terminated between and during requests, a database that stops
answering at all (a paused server: a proxy in front of PostgreSQL that stops
forwarding), a Redis that accepts connections and never replies, a failure
after the answer was made (session clean-up), a chunked body over the limit.
The archive races live in tests/test_lot_races.py, the token races in
tests/test_security_concurrency.py, slow clients in tests/test_slow_clients.py.

The database faults need PostgreSQL (its locks, backends and timeouts); the
rest runs on both databases.
"""

import contextlib
import json
import select
import socket
import threading
import time

import psycopg2
import pytest
from conftest import TEST_DATABASE_URL, http, postgres_only
from sqlalchemy import func
from sqlalchemy import select as sql_select

from database import UNAVAILABLE
from models import ParkingSpot, Ticket, db

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def assert_503(response, message=UNAVAILABLE):
    """A database fault answer: 503, the JSON error, Retry-After."""
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json() == {"error": message}
    assert int(response.headers["Retry-After"]) > 0


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


@pytest.fixture
def admin_connection():
    """A second, independent connection to the test database (autocommit)."""
    connection = psycopg2.connect(TEST_DATABASE_URL, connect_timeout=5)
    connection.autocommit = True
    yield connection
    connection.close()


@pytest.fixture
def bounded_app(app_factory, app):
    """The app with short database bounds, so faults surface within a second."""
    return app_factory(DB_STATEMENT_TIMEOUT_MS=1000, DB_LOCK_TIMEOUT_MS=300)


def booking(client, headers, vehicle, spot_id):
    return client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "parking_spot_id": spot_id},
        headers=headers,
    )


def open_tickets(app) -> int:
    with app.app_context():
        return db.session.scalar(
            sql_select(func.count()).select_from(Ticket).where(Ticket.check_out.is_(None))
        )


def spot_status(app, spot_id) -> str:
    with app.app_context():
        return db.session.get(ParkingSpot, spot_id).status


# ---------------------------------------------------------------------------
# A lock held by another connection
# ---------------------------------------------------------------------------


@postgres_only
def test_a_table_lock_held_elsewhere_answers_503_within_the_lock_timeout(
    app, bounded_app, admin_connection, lot, vehicle, driver, auth_headers
):
    headers = auth_headers(driver)
    client = bounded_app.test_client()
    with admin_connection.cursor() as cursor:
        cursor.execute("BEGIN; LOCK TABLE parking_spots IN ACCESS EXCLUSIVE MODE")
        try:
            response, seconds = timed(lambda: booking(client, headers, vehicle, lot["spot_ids"][0]))
            listing, list_seconds = timed(lambda: client.get("/api/spots"))
        finally:
            cursor.execute("ROLLBACK")

    assert_503(response)
    assert_503(listing)
    assert seconds < 3 and list_seconds < 3  # lock_timeout is 0.3 s; a hang never returns
    assert open_tickets(app) == 0
    assert spot_status(app, lot["spot_ids"][0]) == "available"
    # Once the lock is gone the same request succeeds.
    assert booking(client, headers, vehicle, lot["spot_ids"][0]).status_code == 201


@postgres_only
def test_a_row_lock_on_the_spot_answers_503_and_writes_nothing(
    app, bounded_app, admin_connection, lot, vehicle, driver, auth_headers
):
    headers = auth_headers(driver)
    spot_id = lot["spot_ids"][0]
    with admin_connection.cursor() as cursor:
        cursor.execute("BEGIN; SELECT id FROM parking_spots WHERE id = %s FOR UPDATE", (spot_id,))
        try:
            response, seconds = timed(
                lambda: booking(bounded_app.test_client(), headers, vehicle, spot_id)
            )
        finally:
            cursor.execute("ROLLBACK")

    assert_503(response)
    assert seconds < 3
    assert open_tickets(app) == 0
    assert spot_status(app, spot_id) == "available"


# ---------------------------------------------------------------------------
# Terminated backends
# ---------------------------------------------------------------------------


def terminate_other_backends(condition: str = "true") -> int:
    """Terminate the test database's other backends matching `condition`, from
    a connection of its own (pg_stat_activity is a snapshot per transaction)."""
    with contextlib.closing(psycopg2.connect(TEST_DATABASE_URL, connect_timeout=5)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND " + condition
            )
            return cursor.fetchone()[0]


@postgres_only
def test_backends_terminated_between_requests_are_replaced(bounded_app, lot, driver, auth_headers):
    """A restart or a failover drops every pooled connection: the next
    request checks its connection out, finds it dead and takes a new one."""
    client = bounded_app.test_client()
    headers = auth_headers(driver)
    assert client.get("/api/spots").status_code == 200
    assert client.get("/api/me", headers=headers).status_code == 200

    assert terminate_other_backends() >= 1

    assert client.get("/api/spots").status_code == 200
    assert client.get("/api/me", headers=headers).status_code == 200


@postgres_only
def test_a_backend_terminated_during_a_request_answers_503_and_writes_nothing(
    app, app_factory, admin_connection, lot, vehicle, driver, auth_headers
):
    """The request waits on a lock; its backend is killed under it."""
    patient = app_factory(DB_STATEMENT_TIMEOUT_MS=20000, DB_LOCK_TIMEOUT_MS=20000)
    headers = auth_headers(driver)
    spot_id = lot["spot_ids"][0]
    result = {}
    with admin_connection.cursor() as cursor:
        cursor.execute("BEGIN; SELECT id FROM parking_spots WHERE id = %s FOR UPDATE", (spot_id,))
        try:
            request = threading.Thread(
                target=lambda: result.update(
                    response=booking(patient.test_client(), headers, vehicle, spot_id)
                )
            )
            request.start()
            waiting = 0
            for _ in range(100):  # up to 10 s for the request to reach the lock
                waiting = terminate_other_backends("wait_event_type = 'Lock'")
                if waiting:
                    break
                time.sleep(0.1)
            request.join(10)
        finally:
            cursor.execute("ROLLBACK")

    assert waiting == 1
    assert not request.is_alive()
    assert_503(result["response"])
    assert open_tickets(app) == 0
    assert spot_status(app, spot_id) == "available"
    # The pool dropped the dead connection: the retry succeeds.
    assert booking(patient.test_client(), headers, vehicle, spot_id).status_code == 201


# ---------------------------------------------------------------------------
# A database that stops answering (paused server, dead network path)
# ---------------------------------------------------------------------------


class PausableProxy:
    """A TCP proxy on 127.0.0.1 in front of a server. `pause()` stops
    forwarding in both directions while keeping every socket open: to the
    client, a server that accepted the connection and then went silent."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.running = threading.Event()
        self.running.set()
        self.stopped = False
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.listener.settimeout(0.2)
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            server = socket.create_connection(self.target, timeout=5)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket):
        peers = {a: b, b: a}
        while not self.stopped:
            if not self.running.wait(0.2):
                continue
            try:
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                for sock in readable:
                    if not self.running.is_set():
                        break
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
            except (OSError, ValueError):  # closed under us (ValueError: fd -1)
                return

    def pause(self):
        self.running.clear()

    def resume(self):
        self.running.set()

    def close(self):
        self.stopped = True
        self.running.set()
        for sock in [self.listener, *self.sockets]:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def silent_database(app_factory, app):
    """(app, proxy): an app whose database connection goes through a proxy
    that can stop answering."""
    url = psycopg2.extensions.parse_dsn(TEST_DATABASE_URL)
    proxy = PausableProxy((url.get("host", "127.0.0.1"), int(url.get("port", 5432))))
    user, dbname = url.get("user", "postgres"), url["dbname"]
    uri = f"postgresql+psycopg2://{user}@127.0.0.1:{proxy.port}/{dbname}"
    proxied = app_factory(
        SQLALCHEMY_DATABASE_URI=uri, DB_STATEMENT_TIMEOUT_MS=500, HEALTH_TIMEOUT_MS=1000
    )
    yield proxied, proxy
    proxy.close()


@postgres_only
def test_a_silent_database_answers_503_within_the_bounds(silent_database, lot, driver):
    app, proxy = silent_database
    client = app.test_client()
    assert client.get("/api/spots").status_code == 200  # a pooled connection exists
    assert client.get("/api/test-db").status_code == 200

    proxy.pause()
    try:
        listing, seconds = timed(lambda: client.get("/api/spots"))
        health, health_seconds = timed(lambda: client.get("/api/test-db"))
    finally:
        proxy.resume()

    assert_503(listing)
    assert_503(health, "Database connection failed: OperationalError")
    # statement bound 0.5 s (+1 s for the client-side deadline), per wait;
    # the health check's 1 s bounds everything it does.
    assert seconds < 4, seconds
    assert health_seconds < 2, health_seconds
    # The timed-out connections were thrown away; the database is back.
    assert client.get("/api/spots").status_code == 200
    assert client.get("/api/test-db").status_code == 200


@postgres_only
def test_a_silent_database_at_connect_time_answers_503(silent_database):
    app, proxy = silent_database
    proxy.pause()  # no connection was ever made: connecting itself hangs
    try:
        health, seconds = timed(lambda: app.test_client().get("/api/test-db"))
    finally:
        proxy.resume()

    assert_503(health, "Database connection failed: OperationalError")
    assert seconds < 2, seconds


# ---------------------------------------------------------------------------
# A Redis that accepts and never replies
# ---------------------------------------------------------------------------


@pytest.fixture
def silent_redis():
    """A port that accepts connections and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    for sock in [listener, *accepted]:
        sock.close()


def test_a_hung_redis_slows_no_request_and_limits_fall_back_to_memory(
    app_factory, app, silent_redis, driver
):
    limited = app_factory(
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{silent_redis}/0",
        RATELIMIT_AUTH="3 per minute",
    )
    client = limited.test_client()

    def attempt():
        return client.post("/api/login", json={"email": driver["email"], "password": "wrong-1"})

    answers = [timed(attempt) for _ in range(4)]

    statuses = [response.status_code for response, _ in answers]
    seconds = [elapsed for _, elapsed in answers]
    assert statuses == [401, 401, 401, 429]  # counted in memory meanwhile
    # The first request pays one read timeout (0.3 s) before the fallback;
    # the hang it replaces took 5-15 s per request.
    assert seconds[0] < 1.5, seconds
    assert max(seconds[1:]) < 0.5, seconds


# ---------------------------------------------------------------------------
# Failures after the answer was made, and bodies over the limit
# ---------------------------------------------------------------------------


def test_a_failure_outside_the_error_handlers_still_answers_json(app_factory, app):
    """A teardown that raises (as closing the session on a dead connection
    did) used to reach the WSGI server, which sent its own HTML 500."""
    broken = app_factory()

    def fail(_exc):
        raise RuntimeError("teardown failed")

    broken.teardown_appcontext_funcs.insert(0, fail)  # after the session's clean-up
    try:
        response = broken.test_client().get("/api/spots")
    finally:
        broken.teardown_appcontext_funcs.remove(fail)

    assert response.status_code == 500
    assert response.mimetype == "application/json"
    assert response.get_json() == {"error": "Internal server error"}


@postgres_only
def test_a_connection_killed_after_the_answer_still_answers_json(
    app_factory, app, admin_connection
):
    """The session's clean-up runs on a connection that died meanwhile."""
    dying = app_factory()

    @dying.get("/test-only/dying-connection")
    def dying_connection():
        pid = db.session.execute(sql_select(func.pg_backend_pid())).scalar()
        with admin_connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return {"ok": True}

    response = dying.test_client().get("/test-only/dying-connection")

    assert response.status_code == 200
    assert response.get_json() == {"ok": True}
    assert dying.test_client().get("/api/spots").status_code == 200


def chunked_request(base_url: str, path: str, body: bytes) -> tuple[int, bytes]:
    """POST `body` with Transfer-Encoding: chunked over a raw socket."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        )
        with contextlib.suppress(OSError):  # the server may stop reading at the limit
            for start in range(0, len(body), 65536):
                chunk = body[start : start + 65536]
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        response = b""
        while b"\r\n\r\n" not in response and (chunk := sock.recv(65536)):
            response += chunk
        head, _, payload = response.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        while len(payload) < length and (chunk := sock.recv(65536)):
            payload += chunk
    return int(head.split()[1]), payload


def test_a_chunked_body_over_one_mib_is_413(live_server):
    body = b'{"email": "' + b"x" * (1100 * 1024) + b'", "password": "password123"}'

    status, payload = chunked_request(live_server, "/api/login", body)

    assert status == 413
    assert b'"error"' in payload and b"Request body too large" in payload


def test_a_small_chunked_body_is_read(live_server, driver):
    body = b'{"email": "driver@example.com", "password": "password123"}'

    status, payload = chunked_request(live_server, "/api/login", body)

    assert status == 200, payload


@postgres_only
def test_a_write_whose_client_gave_up_is_not_committed(
    app, live_server, admin_connection, lot, vehicle, driver, login
):
    """The booking waits on a lock; its client times out and closes the
    connection; when the lock goes, the booking must not be committed for a
    client that believes it failed."""
    app.config.update(DB_LOCK_TIMEOUT_MS=20000, DB_STATEMENT_TIMEOUT_MS=20000)
    token = login(driver)["token"]
    spot_id = lot["spot_ids"][0]
    waited = False
    body = json.dumps({"vehicle_id": vehicle["id"], "parking_spot_id": spot_id}).encode()
    host, port = live_server.removeprefix("http://").split(":")
    with admin_connection.cursor() as cursor:
        cursor.execute("BEGIN; SELECT id FROM parking_spots WHERE id = %s FOR UPDATE", (spot_id,))
        try:
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                head = (
                    f"POST /api/tickets HTTP/1.1\r\nHost: {host}\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                )
                sock.sendall(head.encode() + body)
                for _ in range(100):  # the request reached the lock
                    if waited := lock_waiters() == 1:
                        break
                    time.sleep(0.05)
            # The client is gone; now the lock goes.
        finally:
            cursor.execute("ROLLBACK")
    for _ in range(100):  # the request finished: no backend is busy any more
        if busy_backends() == 0:
            break
        time.sleep(0.05)

    assert waited
    assert open_tickets(app) == 0
    assert spot_status(app, spot_id) == "available"
    # A client that stays gets its booking.
    status, _ = http(
        "POST",
        f"{live_server}/api/tickets",
        {"vehicle_id": vehicle["id"], "parking_spot_id": spot_id},
        token=token,
    )
    assert status == 201


def count_backends(condition: str) -> int:
    with contextlib.closing(psycopg2.connect(TEST_DATABASE_URL, connect_timeout=5)) as connection:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND " + condition
            )
            return cursor.fetchone()[0]


def lock_waiters() -> int:
    return count_backends("wait_event_type = 'Lock'")


def busy_backends() -> int:
    return count_backends("state IN ('active', 'idle in transaction')")
