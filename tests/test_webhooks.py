"""Webhooks: the admin API, the outbox, and real deliveries to a receiver in this process.

The receiver is a real HTTP server on 127.0.0.1 that verifies every delivery
with the `standardwebhooks` reference library. Deliveries are made by `flask
deliver-events --once` (in-process through the CLI runner, or as a real
process that is killed mid-delivery). Nothing is sent anywhere but the
loopback: URLs with other hosts are refused before any connection, and
names are resolved by a stand-in.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import ROOT, TEST_DATABASE_URL, postgres_only
from sqlalchemy import func, select
from standardwebhooks import Webhook as StandardWebhook

import webhooks
from models import Event, Ticket, WebhookDelivery, db

ALL_TICKET_EVENTS = ["ticket.opened", "ticket.closed"]


# ---------------------------------------------------------------------------
# The receiver
# ---------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1: records each POST and answers with the
    next of `statuses` (then 200); `hold` keeps an answer back until set."""

    def __init__(self):
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.hold: threading.Event | None = None
        self.delay = 0.0
        self.got_one = threading.Event()
        self.secret: str | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                record = {"path": self.path, "headers": dict(self.headers), "body": body}
                receiver.requests.append(record)
                receiver.got_one.set()
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"{receiver.url}/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def verified(self, secret: str) -> list[dict]:
        """Every delivery, checked with the standardwebhooks library: its payload."""
        verifier = StandardWebhook(secret)
        return [verifier.verify(r["body"], r["headers"]) for r in self.requests]


@pytest.fixture
def receiver():
    server = Receiver()
    server.thread.start()
    try:
        yield server
    finally:
        if server.hold is not None:
            server.hold.set()
        server.server.shutdown()
        server.server.server_close()
        server.thread.join(10)


@pytest.fixture
def admin_headers(admin, auth_headers):
    return auth_headers(admin)


def subscribe(client, headers, url, events=ALL_TICKET_EVENTS, description=None):
    body = {"url": url, "events": events}
    if description is not None:
        body["description"] = description
    response = client.post("/api/webhooks", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def book(client, headers, vehicle, spot_id):
    response = client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "parking_spot_id": spot_id},
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["ticket_id"]


def deliver(runner):
    result = runner.invoke(args=["deliver-events", "--once"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def deliveries(app) -> list[WebhookDelivery]:
    with app.app_context():
        return list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def events_in_db(app) -> list[Event]:
    with app.app_context():
        return list(db.session.scalars(select(Event).order_by(Event.id)))


# ---------------------------------------------------------------------------
# The admin API
# ---------------------------------------------------------------------------


def test_create_list_and_delete_a_webhook(app, client, admin_headers, receiver):
    created = subscribe(client, admin_headers, receiver.url + "/hook", description="Signage")
    assert created["url"] == receiver.url + "/hook"
    assert created["events"] == ALL_TICKET_EVENTS
    assert created["description"] == "Signage"
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(__import__("base64").b64decode(secret.removeprefix("whsec_"))) == 32
    listed = client.get("/api/webhooks", headers=admin_headers)
    assert listed.status_code == 200
    assert listed.get_json() == [{k: v for k, v in created.items() if k != "secret"}]
    assert listed.headers["X-Total-Count"] == "1"
    gone = client.delete(f"/api/webhooks/{created['id']}", headers=admin_headers)
    assert gone.get_json() == {"message": "Webhook deleted", "webhook_id": created["id"]}
    again = client.delete(f"/api/webhooks/{created['id']}", headers=admin_headers)
    assert again.status_code == 404 and again.get_json() == {"error": "Webhook not found"}
    assert client.get("/api/webhooks", headers=admin_headers).get_json() == []


def test_webhooks_are_for_admins(client, driver, auth_headers, receiver):
    headers = auth_headers(driver)
    body = {"url": receiver.url, "events": ["lot.full"]}
    assert client.post("/api/webhooks", json=body, headers=headers).status_code == 403
    assert client.get("/api/webhooks", headers=headers).status_code == 403
    assert client.get("/api/webhooks").status_code == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"events": ["lot.full"]}, "url is required"),
        ({"url": "https://x.example"}, "events is required"),
        (
            {"url": "https://x.example", "events": []},
            "events must be a non-empty list of event types",
        ),
        ({"url": "https://x.example", "events": ["lot.burning"]}, "events must be a list of: "),
        ({"url": "ftp://x.example/", "events": ["lot.full"]}, "url must be an https URL"),
        ({"url": "not a url", "events": ["lot.full"]}, "url must be an https URL"),
        (
            {"url": "http://93.184.216.34/hook", "events": ["lot.full"]},
            "url must be https (http is allowed only for localhost in development)",
        ),
        (
            {"url": "https://user:pw@93.184.216.34/", "events": ["lot.full"]},
            "url must not contain a user name or password",
        ),
    ],
)
def test_invalid_subscriptions_are_400(client, admin_headers, body, message):
    response = client.post("/api/webhooks", json=body, headers=admin_headers)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(message)


PRIVATE = "url must not resolve to a private, loopback or link-local address"


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.7/hook",
        "https://192.168.1.20/hook",
        "https://172.16.0.1/hook",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://127.0.0.1:8443/hook",
        "https://[::1]/hook",
        "https://[::ffff:10.0.0.7]/hook",
        "https://0.0.0.0/hook",
        "https://metadata.internal/hook",  # a name that resolves to a private address
    ],
)
def test_the_ssrf_guard_refuses_private_addresses(app, client, admin_headers, monkeypatch, url):
    """As in production: loopback too (only debug and testing allow localhost)."""
    monkeypatch.setitem(app.config, "TESTING", False)
    real = webhooks.resolve
    monkeypatch.setattr(
        webhooks,
        "resolve",
        lambda host, port: ["10.1.2.3"] if host == "metadata.internal" else real(host, port),
    )
    response = client.post(
        "/api/webhooks", json={"url": url, "events": ["lot.full"]}, headers=admin_headers
    )
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(PRIVATE)


def test_public_https_and_allowlisted_hosts_are_accepted(app, client, admin_headers, monkeypatch):
    monkeypatch.setattr(
        webhooks,
        "resolve",
        lambda host, port: {"hooks.example.com": ["93.184.216.34"], "erp.lan": ["10.0.0.9"]}.get(
            host, []
        ),
    )
    public = client.post(
        "/api/webhooks",
        json={"url": "https://hooks.example.com/p", "events": ["lot.full"]},
        headers=admin_headers,
    )
    assert public.status_code == 201
    unknown = client.post(
        "/api/webhooks",
        json={"url": "https://nowhere.example/p", "events": ["lot.full"]},
        headers=admin_headers,
    )
    assert unknown.get_json() == {"error": "url host cannot be resolved"}
    internal = {"url": "https://erp.lan/hooks", "events": ["lot.full"]}
    assert client.post("/api/webhooks", json=internal, headers=admin_headers).status_code == 400
    app.config["WEBHOOK_ALLOWED_HOSTS"] = ["erp.lan"]
    assert client.post("/api/webhooks", json=internal, headers=admin_headers).status_code == 201


def test_http_to_localhost_only_under_debug_or_testing(app, client, admin_headers, receiver):
    app.config["TESTING"] = False
    try:
        refused = client.post(
            "/api/webhooks",
            json={"url": receiver.url, "events": ["lot.full"]},
            headers=admin_headers,
        )
    finally:
        app.config["TESTING"] = True
    assert refused.status_code == 400
    assert refused.get_json()["error"].startswith("url must be https")


# ---------------------------------------------------------------------------
# The outbox: events in the same transaction as the change
# ---------------------------------------------------------------------------


def listed(client, headers, ticket_id) -> dict:
    """The ticket as GET /api/tickets lists it (an event's data)."""
    return next(
        t for t in client.get("/api/tickets", headers=headers).get_json() if t["id"] == ticket_id
    )


def test_booking_and_checkout_write_their_events_with_the_api_shape(
    app, client, clock, driver, vehicle, lot, auth_headers
):
    headers = auth_headers(driver)
    ticket_id = book(client, headers, vehicle, lot["spot_ids"][0])
    opened = listed(client, headers, ticket_id)
    clock.advance(minutes=30)
    client.patch(f"/api/checkout/{ticket_id}", headers=headers)
    closed = listed(client, headers, ticket_id)
    found = [(e.type, e.data) for e in events_in_db(app) if e.type.startswith("ticket.")]
    assert found == [("ticket.opened", opened), ("ticket.closed", closed)]


def test_no_event_from_a_rolled_back_booking(app, client, driver, vehicle, lot, auth_headers):
    headers = auth_headers(driver)
    book(client, headers, vehicle, lot["spot_ids"][0])
    # The same car again: the ticket's INSERT fails on the unique index, the
    # transaction (spot, ticket and its event) is rolled back.
    second = client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle["id"], "parking_spot_id": lot["spot_ids"][1]},
        headers=headers,
    )
    assert second.status_code == 409
    assert [e.type for e in events_in_db(app) if e.type != "lot.available"] == ["ticket.opened"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Ticket)) == 1


def test_taking_the_last_spot_and_freeing_it_emit_lot_full_and_lot_available(
    app, client, make_lot, driver, vehicle, auth_headers
):
    small = make_lot(name="Kiosk", spots=1, prefix="K")
    # Its first spot made it available (0 -> 1): an event already.
    assert [e.type for e in events_in_db(app)] == ["lot.available"]
    before = len(events_in_db(app))
    headers = auth_headers(driver)
    ticket_id = book(client, headers, vehicle, small["spot_ids"][0])
    full_feed = next(
        i for i in client.get("/api/availability").get_json() if i["lot_id"] == small["id"]
    )
    client.patch(f"/api/checkout/{ticket_id}", headers=headers)
    free_feed = next(
        i for i in client.get("/api/availability").get_json() if i["lot_id"] == small["id"]
    )
    lot_events = [(e.type, e.data) for e in events_in_db(app)[before:] if e.type.startswith("lot.")]
    assert [t for t, _ in lot_events] == ["lot.full", "lot.available"]
    # The data is the lot's entry of the availability feed at that moment.
    for (_, data), feed in zip(lot_events, (full_feed, free_feed), strict=True):
        assert {k: v for k, v in data.items() if k != "updated_at"} == {
            k: v for k, v in feed.items() if k != "updated_at"
        }
        assert abs(
            __import__("datetime").datetime.fromisoformat(data["updated_at"])
            - __import__("datetime").datetime.fromisoformat(feed["updated_at"])
        ) < timedelta(seconds=1)
    assert lot_events[0][1]["status"] == "FULL" and lot_events[1][1]["status"] == "SPACES_AVAILABLE"


def test_archiving_a_lot_with_free_spots_reports_it_closed(app, client, make_lot, admin_headers):
    small = make_lot(name="Pop-up", spots=2, prefix="P")
    before = len(events_in_db(app))
    archived = client.delete(f"/api/parking-lots/{small['id']}", headers=admin_headers)
    assert archived.status_code == 200
    (event,) = events_in_db(app)[before:]
    assert (event.type, event.data["status"], event.data["available"]) == ("lot.full", "CLOSED", 0)


# ---------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------


def test_deliveries_are_signed_as_standard_webhooks(
    app, client, runner, clock, admin_headers, driver, vehicle, lot, auth_headers, receiver
):
    hook = subscribe(client, admin_headers, receiver.url + "/in")
    headers = auth_headers(driver)
    ticket_id = book(client, headers, vehicle, lot["spot_ids"][0])
    ticket = listed(client, headers, ticket_id)
    # The lot's lot.available (its spots were added) has no subscriber.
    assert deliver(runner) == "Dispatched 2 events; 1 delivered, 0 not"
    (payload,) = receiver.verified(hook["secret"])
    assert payload["type"] == "ticket.opened" and payload["data"] == ticket
    event = events_in_db(app)[-1]
    assert payload["timestamp"] == event.created_at.isoformat()
    request = receiver.requests[0]
    assert request["path"] == "/in"
    assert request["headers"]["Content-Type"] == "application/json"
    assert abs(int(request["headers"]["webhook-timestamp"]) - time.time()) < 60
    (delivery,) = deliveries(app)
    assert request["headers"]["webhook-id"] == delivery.message_id
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 1, 200)
    # A forged or altered body fails verification.
    with pytest.raises(Exception, match="signature"):
        StandardWebhook(hook["secret"]).verify(request["body"] + b" ", request["headers"])
    # Nothing is sent twice.
    assert deliver(runner) == "Dispatched 0 events; 0 delivered, 0 not"
    assert len(receiver.requests) == 1


def test_only_subscribed_types_are_delivered(
    app, client, runner, admin_headers, driver, vehicle, lot, auth_headers, receiver
):
    subscribe(client, admin_headers, receiver.url, events=["ticket.closed"])
    headers = auth_headers(driver)
    ticket_id = book(client, headers, vehicle, lot["spot_ids"][0])
    client.patch(f"/api/checkout/{ticket_id}", headers=headers)
    deliver(runner)
    assert [json.loads(r["body"])["type"] for r in receiver.requests] == ["ticket.closed"]


def test_a_500_is_retried_with_backoff_under_the_same_webhook_id(
    app, client, runner, clock, admin_headers, driver, vehicle, lot, auth_headers, receiver
):
    hook = subscribe(client, admin_headers, receiver.url)
    receiver.statuses = [500]
    book(client, auth_headers(driver), vehicle, lot["spot_ids"][0])
    assert deliver(runner) == "Dispatched 2 events; 0 delivered, 1 not"
    (delivery,) = deliveries(app)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, 500)
    assert delivery.last_error == "HTTP 500"
    wait = delivery.next_attempt_at - clock.now
    assert timedelta(seconds=5) <= wait <= timedelta(seconds=10)  # 10 s, half of it jitter
    # Not due yet: nothing is sent.
    assert deliver(runner) == "Dispatched 0 events; 0 delivered, 0 not"
    clock.advance(seconds=10)
    assert deliver(runner) == "Dispatched 0 events; 1 delivered, 0 not"
    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert len(receiver.verified(hook["secret"])) == 2
    (delivery,) = deliveries(app)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 2, 200)
    assert delivery.last_error is None
    listed = client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=admin_headers).get_json()
    assert [(d["status"], d["attempts"], d["event_type"]) for d in listed] == [
        ("delivered", 2, "ticket.opened")
    ]


def test_retries_back_off_exponentially_and_stop_after_24_hours(
    app, client, runner, clock, admin_headers, driver, vehicle, lot, auth_headers, receiver
):
    subscribe(client, admin_headers, receiver.url)
    receiver.statuses = [503] * 100
    book(client, auth_headers(driver), vehicle, lot["spot_ids"][0])
    start = clock.now
    waits = []
    for _ in range(60):  # bounded: 24 hours of hourly retries at most
        deliver(runner)
        (delivery,) = deliveries(app)
        if delivery.status != "pending":
            break
        waits.append(delivery.next_attempt_at - clock.now)
        clock.now = delivery.next_attempt_at
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert delivery.attempts == len(receiver.requests) == len(waits) + 1
    assert clock.now - start <= timedelta(hours=24)
    # Each wait is at least half of 10 s * 2^n, and never more than an hour.
    for n, wait in enumerate(waits):
        nominal = min(3600, 10 * 2**n)
        assert timedelta(seconds=nominal / 2) <= wait <= timedelta(seconds=nominal)


def test_redirects_are_not_followed(
    app, client, runner, admin_headers, driver, vehicle, lot, auth_headers, receiver
):
    subscribe(client, admin_headers, receiver.url + "/start")
    receiver.statuses = [307]
    book(client, auth_headers(driver), vehicle, lot["spot_ids"][0])
    deliver(runner)
    assert [r["path"] for r in receiver.requests] == ["/start"]
    (delivery,) = deliveries(app)
    assert (delivery.status, delivery.response_status, delivery.last_error) == (
        "pending",
        307,
        "HTTP 307",
    )


def test_a_receiver_that_does_not_answer_times_out(
    app, client, runner, admin_headers, driver, vehicle, lot, auth_headers, receiver
):
    app.config["WEBHOOK_TIMEOUT_SECONDS"] = 1
    subscribe(client, admin_headers, receiver.url)
    receiver.hold = threading.Event()
    book(client, auth_headers(driver), vehicle, lot["spot_ids"][0])
    started = time.monotonic()
    deliver(runner)
    assert time.monotonic() - started < 5
    (delivery,) = deliveries(app)
    assert (delivery.status, delivery.response_status) == ("pending", None)
    assert delivery.last_error == "Timed out after 1 s"


def test_the_guard_runs_again_at_every_send(
    app, client, runner, admin_headers, driver, vehicle, lot, auth_headers, monkeypatch
):
    answers = {"hooks.example.com": ["93.184.216.34"]}
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: answers.get(host, []))
    subscribe(client, admin_headers, "https://hooks.example.com/in")
    answers["hooks.example.com"] = ["10.0.0.5"]  # DNS now points inside
    book(client, auth_headers(driver), vehicle, lot["spot_ids"][0])
    deliver(runner)  # refused before any connection is made
    (delivery,) = deliveries(app)
    assert delivery.status == "pending" and delivery.last_error.startswith(PRIVATE)


def test_the_test_endpoint_sends_a_ping_now(app, client, admin_headers, receiver):
    hook = subscribe(client, admin_headers, receiver.url, events=["lot.full"])
    response = client.post(f"/api/webhooks/{hook['id']}/test", headers=admin_headers)
    assert response.status_code == 200
    body = response.get_json()
    assert (body["event_type"], body["status"], body["attempts"], body["response_status"]) == (
        "ping",
        "delivered",
        1,
        200,
    )
    (payload,) = receiver.verified(hook["secret"])
    assert payload["type"] == "ping" and payload["data"] == {"webhook_id": hook["id"]}
    assert receiver.requests[0]["headers"]["webhook-id"] == body["message_id"]
    assert client.post("/api/webhooks/999/test", headers=admin_headers).status_code == 404


def test_a_failed_ping_is_pending_with_its_error(app, client, admin_headers, receiver):
    hook = subscribe(client, admin_headers, receiver.url)
    receiver.statuses = [500]
    body = client.post(f"/api/webhooks/{hook['id']}/test", headers=admin_headers).get_json()
    assert (body["status"], body["response_status"], body["last_error"]) == (
        "pending",
        500,
        "HTTP 500",
    )
    assert body["next_attempt_at"] is not None


def test_deleting_a_webhook_deletes_its_deliveries(app, client, runner, admin_headers, receiver):
    hook = subscribe(client, admin_headers, receiver.url)
    client.post(f"/api/webhooks/{hook['id']}/test", headers=admin_headers)
    assert len(deliveries(app)) == 1
    client.delete(f"/api/webhooks/{hook['id']}", headers=admin_headers)
    assert deliveries(app) == []
    missing = client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=admin_headers)
    assert missing.status_code == 404 and missing.get_json() == {"error": "Webhook not found"}


# ---------------------------------------------------------------------------
# Workers under failure (PostgreSQL)
# ---------------------------------------------------------------------------


def worker_process(database_uri: str) -> subprocess.Popen:
    """`flask deliver-events --once` as its own process (debug: http to localhost)."""
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    env = {
        **os.environ,
        "DATABASE_URL": database_uri,
        "FLASK_APP": "app.py",
        "FLASK_DEBUG": "1",
        "RATELIMIT_ENABLED": "false",
    }
    return subprocess.Popen(
        [flask, "deliver-events", "--once"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@postgres_only
def test_a_worker_killed_mid_delivery_leaves_it_to_be_sent_again(
    app, client, runner, clock, admin_headers, driver, vehicle, lot, auth_headers, receiver
):
    hook = subscribe(client, admin_headers, receiver.url)
    book(client, auth_headers(driver), vehicle, lot["spot_ids"][0])
    receiver.hold = threading.Event()
    worker = worker_process(TEST_DATABASE_URL)
    try:
        assert receiver.got_one.wait(30), "the worker never sent the delivery"
        worker.send_signal(signal.SIGKILL)  # dies before hearing the answer
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    receiver.hold.set()
    (delivery,) = deliveries(app)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    # Claimed, so not due at once; due again when the lease runs out.
    clock.now = delivery.next_attempt_at - timedelta(seconds=1)
    assert deliver(runner) == "Dispatched 0 events; 0 delivered, 0 not"
    clock.now = delivery.next_attempt_at
    assert deliver(runner) == "Dispatched 0 events; 1 delivered, 0 not"
    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert len(receiver.verified(hook["secret"])) == 2
    (delivery,) = deliveries(app)
    assert (delivery.status, delivery.attempts) == ("delivered", 2)


@postgres_only
def test_two_workers_never_send_one_delivery_at_once(
    app, client, make_lot, admin_headers, make_user, make_vehicle, auth_headers, receiver
):
    hook = subscribe(client, admin_headers, receiver.url)
    big = make_lot(name="Big", spots=8, prefix="B")
    for n, spot_id in enumerate(big["spot_ids"]):
        driver = make_user(username=f"d{n}")
        book(client, auth_headers(driver), make_vehicle(driver, plate=f"KDB {n}A"), spot_id)
    receiver.delay = 0.2  # each delivery takes a while: the workers overlap
    workers = [worker_process(TEST_DATABASE_URL) for _ in range(2)]
    for worker in workers:
        assert worker.wait(60) == 0
    ids = Counter(r["headers"]["webhook-id"] for r in receiver.requests)
    assert len(ids) == 8 and set(ids.values()) == {1}, ids
    assert len(receiver.verified(hook["secret"])) == 8
    assert {(d.status, d.attempts) for d in deliveries(app)} == {("delivered", 1)}


def test_a_recorded_payment_writes_its_event_in_its_transaction(
    app, client, clock, make_lot, admin, driver, vehicle, auth_headers
):
    import parking

    paid_lot = make_lot(name="Paid", spots=2, prefix="M", hourly_rate=10_000)
    ticket_id = book(client, auth_headers(driver), vehicle, paid_lot["spot_ids"][0])
    clock.advance(hours=1)
    actor = parking.Actor("user", admin["id"], "boss", role="admin")
    with app.test_request_context():
        ticket = parking.lock_ticket(ticket_id)
        payment, created = parking.record_payment(
            ticket,
            amount=5_000,
            method="cash",
            reference=None,
            reason=None,
            actor=actor,
            at=clock.now,
        )
        expected = parking.payment_dict(payment)
        db.session.rollback()  # a payment that is not committed sends nothing
    assert [e.type for e in events_in_db(app) if e.type == "payment.recorded"] == []
    with app.test_request_context():
        ticket = parking.lock_ticket(ticket_id)
        payment, created = parking.record_payment(
            ticket,
            amount=5_000,
            method="cash",
            reference=None,
            reason=None,
            actor=actor,
            at=clock.now,
        )
        expected = parking.payment_dict(payment)
        db.session.commit()
    (event,) = [e for e in events_in_db(app) if e.type == "payment.recorded"]
    assert created and event.data == expected and event.data["amount"] == 5_000


def test_gate_entries_and_exits_write_their_events_with_the_api_shape(
    app, client, clock, admin_headers, lot
):
    entered = client.post(
        f"/api/parking-lots/{lot['id']}/entries",
        json={"plate_number": "kdg 777g"},
        headers=admin_headers,
    )
    assert entered.status_code == 201
    ticket_id = entered.get_json()["ticket_id"]
    everyone = client.get("/api/tickets?all=true", headers=admin_headers).get_json()
    opened = next(t for t in everyone if t["id"] == ticket_id)
    clock.advance(minutes=5)
    left = client.post(
        f"/api/parking-lots/{lot['id']}/exits",
        json={"plate_number": "KDG777G"},
        headers=admin_headers,
    )
    assert left.status_code == 200, left.get_json()
    everyone = client.get("/api/tickets?all=true", headers=admin_headers).get_json()
    closed = next(t for t in everyone if t["id"] == ticket_id)
    found = [(e.type, e.data) for e in events_in_db(app) if e.type.startswith("ticket.")]
    assert found == [("ticket.opened", opened), ("ticket.closed", closed)]
    assert opened["plate_number"] == "KDG 777G" and opened["user_id"] is None
