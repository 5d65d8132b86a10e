"""Idempotency keys (idempotency.py): a write retried with its Idempotency-Key is done once.

Every rule on both databases through the test client; the races (twenty
bookings with one key, a retry while the first request waits on a lock) on
PostgreSQL through a real threaded server.
"""

import json
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from conftest import postgres_only, run_at_once
from sqlalchemy import func, select, text, update

import idempotency
import schemas
from endpoints import USER, endpoint
from models import IdempotencyKey, ParkingLot, Ticket, Vehicle, db

KEY = "3f0c6c1e-6a57-4e0e-9d3b-2f4f0c8a9b11"


def with_key(headers: dict, key: str = KEY) -> dict:
    return {**headers, "Idempotency-Key": key}


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def key_rows(app) -> list[IdempotencyKey]:
    with app.app_context():
        return list(db.session.scalars(select(IdempotencyKey).order_by(IdempotencyKey.id)))


def booking(vehicle, lot):
    return {"vehicle_id": vehicle["id"], "parking_spot_id": lot["spot_ids"][0]}


# ---------------------------------------------------------------------------
# Replay
# ---------------------------------------------------------------------------


def test_a_booking_retried_after_a_lost_answer_gets_the_original_ticket(
    app, client, driver, vehicle, lot, auth_headers
):
    headers = with_key(auth_headers(driver))
    first = client.post("/api/tickets", json=booking(vehicle, lot), headers=headers)
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    # The answer was lost on the way; the app retries with the same key.
    retry = client.post("/api/tickets", json=booking(vehicle, lot), headers=headers)
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json() == first.get_json()
    assert retry.headers["Content-Type"] == first.headers["Content-Type"]
    assert retry.headers["Cache-Control"] == "no-store"
    assert count(app, Ticket) == 1
    (row,) = key_rows(app)
    assert (row.actor_type, row.actor_id, row.key, row.state) == (
        "user",
        driver["id"],
        KEY,
        "completed",
    )
    assert row.response_status == 201
    assert row.expires_at - row.created_at == timedelta(hours=24)


def test_the_same_body_with_its_keys_in_another_order_is_the_same_request(
    app, client, driver, auth_headers
):
    headers = with_key(auth_headers(driver))
    first = client.post(
        "/api/vehicles", json={"plate_number": "KDA 1A", "type": "SUV"}, headers=headers
    )
    raw = json.dumps({"type": "SUV", "plate_number": "KDA 1A"})
    retry = client.post(
        "/api/vehicles", data=raw, headers={**headers, "Content-Type": "application/json"}
    )
    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert count(app, Vehicle) == 1


def test_a_refused_request_is_replayed_too(app, client, driver, vehicle, lot, auth_headers):
    spot_id = lot["spot_ids"][0]
    with app.app_context():
        db.session.execute(
            text(f"UPDATE parking_spots SET status = 'out_of_service' WHERE id = {spot_id}")
        )
        db.session.commit()
    headers = with_key(auth_headers(driver))
    first = client.post("/api/tickets", json=booking(vehicle, lot), headers=headers)
    assert first.status_code == 400 and first.get_json() == {"error": "Spot unavailable"}
    with app.app_context():
        db.session.execute(
            text(f"UPDATE parking_spots SET status = 'available' WHERE id = {spot_id}")
        )
        db.session.commit()
    # Bookable now, but the key's answer stands: the retry hears the same.
    retry = client.post("/api/tickets", json=booking(vehicle, lot), headers=headers)
    assert retry.status_code == 400 and retry.get_json() == {"error": "Spot unavailable"}
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert count(app, Ticket) == 0
    # A new key is a new request.
    other = client.post("/api/tickets", json=booking(vehicle, lot), headers=with_key(headers, "k2"))
    assert other.status_code == 201


def test_an_invalid_body_is_an_answer_and_is_replayed(app, client, driver, auth_headers):
    headers = with_key(auth_headers(driver))
    first = client.post("/api/vehicles", json={"type": "SUV"}, headers=headers)
    retry = client.post("/api/vehicles", json={"type": "SUV"}, headers=headers)
    assert first.status_code == retry.status_code == 400
    assert retry.get_json() == {"error": "Plate number is required"}
    assert retry.headers["Idempotent-Replayed"] == "true"


def test_patch_and_delete_take_keys(app, client, driver, vehicle, auth_headers):
    headers = with_key(auth_headers(driver), "patch-1")
    url = f"/api/vehicles/{vehicle['id']}"
    first = client.patch(url, json={"type": "Sedan"}, headers=headers)
    assert (
        client.patch(url, json={"type": "Sedan"}, headers=headers).headers["Idempotent-Replayed"]
        == "true"
    )
    assert first.status_code == 200
    delete_headers = with_key(auth_headers(driver), "delete-1")
    gone = client.delete(url, headers=delete_headers)
    again = client.delete(url, headers=delete_headers)
    assert gone.status_code == again.status_code == 200
    assert again.get_json() == gone.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    # Without the key, the second delete is a new request: the vehicle is gone.
    assert client.delete(url, headers=auth_headers(driver)).status_code == 404


# ---------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------


def test_the_same_key_with_another_body_or_path_is_422(
    app, client, driver, vehicle, lot, auth_headers
):
    headers = with_key(auth_headers(driver))
    assert (
        client.post("/api/tickets", json=booking(vehicle, lot), headers=headers).status_code == 201
    )
    other_spot = {"vehicle_id": vehicle["id"], "parking_spot_id": lot["spot_ids"][1]}
    refused = client.post("/api/tickets", json=other_spot, headers=headers)
    assert refused.status_code == 422
    assert refused.get_json() == {"error": "Idempotency key reused with different parameters"}
    elsewhere = client.post("/api/vehicles", json={"plate_number": "KDA 2B"}, headers=headers)
    assert elsewhere.status_code == 422
    assert count(app, Ticket) == 1 and count(app, Vehicle) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_a_malformed_key_is_400(app, client, driver, key):
    headers = {"Idempotency-Key": key}
    response = client.post(
        "/api/vehicles",
        json={"plate_number": "KDA 3C"},
        headers={**headers, **auth(client, driver)},
    )
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "Idempotency-Key must be 1-255 printable ASCII characters"
    }
    assert key_rows(app) == []


def auth(client, user) -> dict:
    body = client.post("/api/login", json={"email": user["email"], "password": user["password"]})
    return {"Authorization": f"Bearer {body.get_json()['token']}"}


def test_keys_are_scoped_to_the_caller(app, client, driver, other_driver, auth_headers):
    body = {"plate_number": "KDA 4D"}
    mine = client.post("/api/vehicles", json=body, headers=with_key(auth_headers(driver)))
    theirs = client.post("/api/vehicles", json=body, headers=with_key(auth_headers(other_driver)))
    assert mine.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.get_json()["user_id"] == other_driver["id"]
    assert [(r.actor_id, r.key) for r in key_rows(app)] == [
        (driver["id"], KEY),
        (other_driver["id"], KEY),
    ]


def test_writes_that_answer_with_tokens_or_need_no_credentials_ignore_the_key(
    app, client, driver, login
):
    tokens = login(driver)
    refresh = {"Authorization": f"Bearer {tokens['refresh_token']}", "Idempotency-Key": "r1"}
    assert client.post("/api/token/refresh", headers=refresh).status_code == 200
    new_user = {"username": "kim", "email": "kim@example.com", "password": "password123"}
    registered = client.post("/api/register", json=new_user, headers={"Idempotency-Key": "r2"})
    assert registered.status_code == 201
    logged_in = client.post(
        "/api/login",
        json={"email": "kim@example.com", "password": "password123"},
        headers={"Idempotency-Key": "r3"},
    )
    assert logged_in.status_code == 200 and "Idempotent-Replayed" not in logged_in.headers
    assert key_rows(app) == []  # no answer carrying a token is ever stored


def test_reads_ignore_the_key(app, client, driver, auth_headers):
    response = client.get("/api/vehicles", headers=with_key(auth_headers(driver)))
    assert response.status_code == 200 and key_rows(app) == []


# ---------------------------------------------------------------------------
# In progress, abandoned, lost answers, expiry
# ---------------------------------------------------------------------------


def claim_row(app, user, path, body, state, locked_at, method="POST"):
    """A key row as a request that is still running (or died) left it."""
    with app.test_request_context(path, method=method, json=body):
        digest = idempotency.request_hash()
    with app.app_context():
        db.session.add(
            IdempotencyKey(
                actor_type="user",
                actor_id=user["id"],
                key=KEY,
                request_hash=digest,
                state=state,
                lock_token="a" * 32,
                locked_at=locked_at,
                created_at=locked_at,
                expires_at=locked_at + timedelta(hours=24),
            )
        )
        db.session.commit()


def test_a_retry_while_the_first_request_runs_is_409_then_an_abandoned_claim_is_taken_over(
    app, client, clock, driver, vehicle, lot, auth_headers
):
    claim_row(app, driver, "/api/tickets", booking(vehicle, lot), "in_progress", clock.now)
    headers = with_key(auth_headers(driver))
    busy = client.post("/api/tickets", json=booking(vehicle, lot), headers=headers)
    assert busy.status_code == 409
    assert busy.get_json() == {"error": "A request with this key is in progress"}
    assert count(app, Ticket) == 0
    # Its worker died (nothing committed): after IDEMPOTENCY_ABANDONED_SECONDS
    # the retry takes the key over and does the work, once.
    clock.advance(seconds=app.config["IDEMPOTENCY_ABANDONED_SECONDS"] + 1)
    taken = client.post("/api/tickets", json=booking(vehicle, lot), headers=headers)
    assert taken.status_code == 201 and "Idempotent-Replayed" not in taken.headers
    replay = client.post("/api/tickets", json=booking(vehicle, lot), headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json()["ticket_id"] == taken.get_json()["ticket_id"]
    assert count(app, Ticket) == 1


def test_work_committed_without_a_stored_answer_is_never_done_again(
    app, client, clock, driver, vehicle, lot, auth_headers
):
    # The worker committed the booking, then died before storing the answer.
    claim_row(app, driver, "/api/tickets", booking(vehicle, lot), "committed", clock.now)
    headers = with_key(auth_headers(driver))
    busy = client.post("/api/tickets", json=booking(vehicle, lot), headers=headers)
    assert busy.status_code == 409
    assert busy.get_json() == {"error": "A request with this key is in progress"}
    clock.advance(minutes=10)
    lost = client.post("/api/tickets", json=booking(vehicle, lot), headers=headers)
    assert lost.status_code == 409
    assert lost.get_json() == {
        "error": "A request with this key was processed, but its answer was lost"
    }
    assert count(app, Ticket) == 0  # (the row was made by hand: no booking to find)


def test_an_expired_key_is_a_new_request(app, client, clock, driver, auth_headers):
    headers = with_key(auth_headers(driver))
    first = client.post("/api/vehicles", json={"plate_number": "KDA 5E"}, headers=headers)
    clock.advance(hours=24, seconds=1)
    client.delete(f"/api/vehicles/{first.get_json()['id']}", headers=auth_headers(driver))
    again = client.post("/api/vehicles", json={"plate_number": "KDA 5E"}, headers=headers)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.get_json()["id"] != first.get_json()["id"]
    assert len(key_rows(app)) == 1


def test_prune_idempotency_deletes_expired_keys(app, client, runner, clock, driver, auth_headers):
    headers = auth_headers(driver)
    client.post("/api/vehicles", json={"plate_number": "KDA 6F"}, headers=with_key(headers, "old"))
    clock.advance(hours=23)
    client.post("/api/vehicles", json={"plate_number": "KDA 7G"}, headers=with_key(headers, "new"))
    clock.advance(hours=1)  # "old" is 24 hours old now
    result = runner.invoke(args=["prune-idempotency"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Pruned 1 expired idempotency keys"
    assert [row.key for row in key_rows(app)] == ["new"]


# ---------------------------------------------------------------------------
# 5xx releases the key; a claim taken over makes the first request's commit fail
# ---------------------------------------------------------------------------


@pytest.fixture
def flaky_app(app_factory):
    """An app with one more write: it fails with a 500 the first time (after
    its work, uncommitted), and succeeds after; or commits, then fails."""
    application = app_factory()
    calls = {"n": 0}

    @endpoint(tag="Test", summary="flaky", auth=USER, response=schemas.Message)
    def flaky():
        calls["n"] += 1
        db.session.execute(update(ParkingLot).values(name=ParkingLot.name + "!"))
        if calls["n"] == 1:
            raise RuntimeError("boom")
        db.session.commit()
        return {"message": "done"}

    @endpoint(tag="Test", summary="commits then fails", auth=USER, response=schemas.Message)
    def commits_then_fails():
        db.session.execute(update(ParkingLot).values(name=ParkingLot.name + "?"))
        db.session.commit()
        raise RuntimeError("boom after the commit")

    @endpoint(tag="Test", summary="taken over", auth=USER, response=schemas.Message)
    def taken_over():
        db.session.execute(update(ParkingLot).values(name="taken"))
        # Another request took the abandoned-looking claim over meanwhile.
        db.session.execute(update(IdempotencyKey).values(lock_token="b" * 32))
        db.session.commit()
        return {"message": "done"}

    application.add_url_rule("/api/flaky", view_func=flaky, methods=["POST"])
    application.add_url_rule(
        "/api/commits-then-fails", view_func=commits_then_fails, methods=["POST"]
    )
    application.add_url_rule("/api/taken-over", view_func=taken_over, methods=["POST"])
    with application.app_context():
        from conftest import empty_tables

        empty_tables()
    return application


def lot_name(app, lot_id) -> str:
    with app.app_context():
        return db.session.get(ParkingLot, lot_id).name


def test_a_5xx_releases_the_key(flaky_app, lot, driver):
    client = flaky_app.test_client()
    headers = with_key(auth(client, driver))
    failed = client.post("/api/flaky", headers=headers)
    assert failed.status_code == 500
    assert failed.get_json() == {"error": "Internal server error"}
    assert key_rows(flaky_app) == []
    assert lot_name(flaky_app, lot["id"]) == "Lot A"  # rolled back
    retried = client.post("/api/flaky", headers=headers)
    assert retried.status_code == 200 and "Idempotent-Replayed" not in retried.headers
    assert lot_name(flaky_app, lot["id"]) == "Lot A!"
    replayed = client.post("/api/flaky", headers=headers)
    assert replayed.status_code == 200 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.get_json() == {"message": "done"}
    assert lot_name(flaky_app, lot["id"]) == "Lot A!"


def test_a_5xx_after_committed_work_keeps_the_key(flaky_app, lot, driver):
    client = flaky_app.test_client()
    headers = with_key(auth(client, driver))
    assert client.post("/api/commits-then-fails", headers=headers).status_code == 500
    (row,) = key_rows(flaky_app)
    assert row.state == "committed"
    retry = client.post("/api/commits-then-fails", headers=headers)
    assert retry.status_code == 409
    assert lot_name(flaky_app, lot["id"]) == "Lot A?"  # done once


def test_a_request_whose_claim_was_taken_over_cannot_commit(flaky_app, lot, driver):
    client = flaky_app.test_client()
    response = client.post("/api/taken-over", headers=with_key(auth(client, driver)))
    assert response.status_code == 409
    assert response.get_json() == {"error": "A request with this key is in progress"}
    assert lot_name(flaky_app, lot["id"]) == "Lot A"


# ---------------------------------------------------------------------------
# Races (PostgreSQL, real HTTP)
# ---------------------------------------------------------------------------


def send(method, url, body=None, headers=None, timeout=30):
    """(status, headers, parsed body) of one real HTTP request."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, got, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, got, raw = error.code, error.headers, error.read()
    return status, got, json.loads(raw) if raw else None


@postgres_only
def test_twenty_simultaneous_bookings_with_one_key_make_one_ticket(
    app, live_server, driver, vehicle, lot, login
):
    headers = {"Authorization": f"Bearer {login(driver)['token']}", "Idempotency-Key": KEY}
    url = f"{live_server}/api/tickets"
    results = run_at_once(
        [lambda: send("POST", url, booking(vehicle, lot), headers) for _ in range(20)]
    )
    created = [r for r in results if r[0] == 201 and r[1].get("Idempotent-Replayed") is None]
    replayed = [r for r in results if r[0] == 201 and r[1].get("Idempotent-Replayed") == "true"]
    busy = [r for r in results if r[0] == 409]
    assert len(created) == 1, [(r[0], r[2]) for r in results]
    assert len(created) + len(replayed) + len(busy) == 20
    assert all(r[2] == created[0][2] for r in replayed)
    assert all(r[2] == {"error": "A request with this key is in progress"} for r in busy)
    assert count(app, Ticket) == 1
    (row,) = key_rows(app)
    assert row.state == "completed" and row.response_status == 201
    # Every one that heard 409 gets the original ticket when it retries.
    status, got, body = send("POST", url, booking(vehicle, lot), headers)
    assert (status, got["Idempotent-Replayed"], body) == (201, "true", created[0][2])


@postgres_only
def test_a_retry_while_the_booking_waits_is_409_and_later_gets_the_ticket(
    app, live_server, driver, vehicle, lot, login
):
    """The first booking waits on the lot's row lock, held by another
    connection; its retry hears 409 "in progress" at once; when the lock goes,
    the first books, and the next retry gets its ticket."""
    headers = {"Authorization": f"Bearer {login(driver)['token']}", "Idempotency-Key": KEY}
    url = f"{live_server}/api/tickets"
    with app.app_context():
        blocker = db.engine.connect()
    holder = blocker.begin()
    blocker.execute(text(f"SELECT 1 FROM parking_lots WHERE id = {lot['id']} FOR UPDATE"))
    first: dict = {}
    thread = threading.Thread(
        target=lambda: first.update(r=send("POST", url, booking(vehicle, lot), headers)),
        daemon=True,
    )
    try:
        thread.start()
        deadline = time.monotonic() + 10
        while not key_rows(app) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert key_rows(app)[0].state == "in_progress"
        status, _, body = send("POST", url, booking(vehicle, lot), headers)
        assert (status, body) == (409, {"error": "A request with this key is in progress"})
    finally:
        holder.rollback()
        blocker.close()
    thread.join(30)
    assert not thread.is_alive()
    assert first["r"][0] == 201
    status, got, body = send("POST", url, booking(vehicle, lot), headers)
    assert (status, got["Idempotent-Replayed"], body) == (201, "true", first["r"][2])
    assert count(app, Ticket) == 1
