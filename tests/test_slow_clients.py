"""Slow and idle clients do not stop an instance (issue 15, item 4).

With sync workers, two half-sent requests blocked both workers for ~30 s and
200 idle connections stopped the instance. These tests run the real server
(gunicorn with gunicorn.conf.py, 2 workers as in production) and attack it
from the same process over the loopback, bounded in time:

- 200 connections that never send a byte and 2 half-sent requests (one cut
  in the headers, one in the body), all opened again whenever the server
  closes them, while `/api/test-db` must keep answering within 2 s;
- (PostgreSQL) a request that waits on a table lock must not stop its worker
  from answering others: psycopg2 waits cooperatively (gunicorn.conf.py).

Both fail with `GUNICORN_WORKER_CLASS=sync`; the second also fails with gevent
workers when psycopg2 has no wait callback.
"""

import select
import socket
import threading
import time

import psycopg2
from conftest import TEST_DATABASE_URL, gunicorn_server, http, postgres_only

IDLE = 200
# Longer than gunicorn's keepalive (5 s): the server closes the silent connections
# once, and the attacker opens them again at once, as a persistent one would.
ATTACK_SECONDS = 8
PROBE_TIMEOUT = 2  # "answers within a couple of seconds"
HALF_SENT = (
    b"GET /api/test-db HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: sl",
    b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 60\r\n\r\n" + b'{"email": "slow@example.com", "pass',
)


class SlowClients:
    """Idle and half-sent connections to `port`; `refresh()` reopens what the server closed."""

    def __init__(self, port: int):
        self.port = port
        self.sockets: dict[socket.socket, bytes] = {}

    def open(self, first_bytes: bytes) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        if first_bytes:
            sock.sendall(first_bytes)
        self.sockets[sock] = first_bytes

    def open_all(self) -> None:
        for first_bytes in HALF_SENT:
            self.open(first_bytes)
        for _ in range(IDLE):
            self.open(b"")

    def refresh(self) -> None:
        """A socket that turned readable was answered or closed by the server: replace it."""
        readable, _, _ = select.select(list(self.sockets), [], [], 0)
        for sock in readable:
            first_bytes = self.sockets.pop(sock)
            sock.close()
            self.open(first_bytes)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


def test_health_check_answers_while_clients_are_slow_or_idle(_migrated, tmp_path):
    log_path = tmp_path / "gunicorn.log"
    with gunicorn_server(_migrated, log_path, WEB_CONCURRENCY="2") as (base, process):
        clients = SlowClients(int(base.rsplit(":", 1)[1]))
        latencies = []
        try:
            clients.open_all()
            deadline = time.monotonic() + ATTACK_SECONDS
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    status, body = http("GET", base + "/api/test-db", timeout=PROBE_TIMEOUT)
                except OSError as error:  # timed out: the instance stopped serving
                    status, body = None, repr(error)
                latencies.append(time.monotonic() - started)
                assert (status, body) == (200, {"message": "Database connection successful"}), (
                    f"probe {len(latencies)} under slow clients: {status} {body}"
                )
                clients.refresh()
                time.sleep(0.1)
        finally:
            clients.close()
        assert process.poll() is None
    assert len(latencies) >= 10
    assert max(latencies) < PROBE_TIMEOUT
    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]


@postgres_only
def test_a_request_waiting_on_the_database_does_not_stop_its_worker(
    _migrated, app, make_user, tmp_path
):
    user = make_user()
    # One worker: if the waiting request blocked it, nothing else could answer.
    with gunicorn_server(_migrated, tmp_path / "gunicorn.log", WEB_CONCURRENCY="1") as (base, _):
        status, body = http(
            "POST", base + "/api/login", {"email": user["email"], "password": user["password"]}
        )
        assert status == 200, body
        token = body["token"]
        locker = psycopg2.connect(TEST_DATABASE_URL, connect_timeout=10)
        waiting: dict = {}
        try:
            with locker.cursor() as cur:
                cur.execute("SET lock_timeout = '10s'")
                cur.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            # GET /api/me reads its user row: it waits for the lock.
            thread = threading.Thread(
                target=lambda: waiting.update(
                    result=http("GET", base + "/api/me", token=token, timeout=20)
                ),
                daemon=True,
            )
            thread.start()
            assert wait_for_lock_waiter(locker), "GET /api/me never waited for the lock"

            started = time.monotonic()
            try:
                status, body = http("GET", base + "/api/test-db", timeout=PROBE_TIMEOUT)
            except OSError as error:  # timed out: the waiting request holds the worker
                status, body = None, repr(error)
            elapsed = time.monotonic() - started
            assert (status, body) == (200, {"message": "Database connection successful"})
            assert elapsed < PROBE_TIMEOUT
            assert "result" not in waiting  # still waiting on the lock meanwhile
        finally:
            locker.rollback()
            locker.close()
        thread.join(20)
    status, body = waiting["result"]
    assert status == 200, body
    assert (body["id"], body["email"]) == (user["id"], user["email"])


def wait_for_lock_waiter(conn, seconds: float = 10) -> bool:
    """True once another backend of this database waits for a lock."""
    deadline = time.monotonic() + seconds
    with conn.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cur.fetchone()[0]:
                return True
            time.sleep(0.05)
    return False
