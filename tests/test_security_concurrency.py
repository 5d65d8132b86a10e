"""Accounts under real concurrency: threads hitting a live server at once.

One e-mail registered by ten clients at the same instant gives one account
(the unique index decides); one refresh token presented eight times at once
gives at most one new pair (the primary key of revoked_tokens decides, and
the losers revoke every token of the user as a detected reuse).
PostgreSQL only: SQLite serialises writers, so it cannot show a race.
"""

from conftest import http, postgres_only, run_at_once
from sqlalchemy import func, select

from models import RevokedToken, User, db

pytestmark = postgres_only


def users_with(app, **where) -> int:
    with app.app_context():
        stmt = select(func.count()).select_from(User)
        for column, value in where.items():
            stmt = stmt.where(func.lower(getattr(User, column)) == value.lower())
        return db.session.scalar(stmt)


def test_ten_registrations_with_one_email_make_one_account(app, live_server):
    def register(n):
        body = {"username": f"racer{n}", "email": "race@example.com", "password": "password123"}
        return lambda: http("POST", f"{live_server}/api/register", body)

    results = run_at_once([register(n) for n in range(10)])

    statuses = sorted(status for status, _ in results)
    assert statuses.count(201) == 1, results
    for status, body in results:
        if status != 201:
            assert status == 400, (status, body)
            assert body["error"] in {"Email already taken", "Username or email already taken"}
    assert users_with(app, email="race@example.com") == 1
    assert users_with(app) == 1
    [(_, winner)] = [result for result in results if result[0] == 201]
    assert http("GET", f"{live_server}/api/me", token=winner["token"])[0] == 200


def test_ten_registrations_with_one_username_make_one_account(app, live_server):
    def register(n):
        # The same name in different cases: usernames are unique case-insensitively.
        name = "Racer" if n % 2 else "racer"
        body = {"username": name, "email": f"racer{n}@example.com", "password": "password123"}
        return lambda: http("POST", f"{live_server}/api/register", body)

    results = run_at_once([register(n) for n in range(10)])

    assert [status for status, _ in results].count(201) == 1, results
    for status, body in results:
        if status != 201:
            assert status == 400, (status, body)
            assert body["error"] in {"Username already taken", "Username or email already taken"}
    assert users_with(app, username="racer") == 1


def test_eight_simultaneous_refreshes_give_at_most_one_new_pair(app, live_server, driver):
    status, session = http(
        "POST", f"{live_server}/api/login", {"email": driver["email"], "password": "password123"}
    )
    assert status == 200
    refresh = session["refresh_token"]

    results = run_at_once(
        [lambda: http("POST", f"{live_server}/api/token/refresh", token=refresh)] * 8
    )

    winners = [body for status, body in results if status == 200]
    assert len(winners) <= 1, results
    for status, body in results:
        if status != 200:
            assert status == 401, (status, body)
            assert set(body) == {"error"} and body["error"]
    # The presented token is spent, whoever won.
    assert http("POST", f"{live_server}/api/token/refresh", token=refresh)[0] == 401
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RevokedToken)) >= 1
    # Afterwards at most one refresh token in circulation still works.
    usable = [
        body["refresh_token"]
        for body in winners
        if http("POST", f"{live_server}/api/token/refresh", token=body["refresh_token"])[0] == 200
    ]
    assert len(usable) <= 1
    # Whatever happened, the owner can log in again and use the API.
    status, again = http(
        "POST", f"{live_server}/api/login", {"email": driver["email"], "password": "password123"}
    )
    assert status == 200
    assert http("GET", f"{live_server}/api/me", token=again["token"])[0] == 200


def test_simultaneous_logouts_with_one_token_revoke_it_once(app, live_server, driver):
    status, session = http(
        "POST", f"{live_server}/api/login", {"email": driver["email"], "password": "password123"}
    )
    assert status == 200
    body = {"refresh_token": session["refresh_token"]}

    results = run_at_once(
        [lambda: http("POST", f"{live_server}/api/logout", body, token=session["token"])] * 6
    )

    assert all(status in (200, 401) for status, _ in results), results
    assert [status for status, _ in results].count(200) == 1
    with app.app_context():
        jtis = list(db.session.scalars(select(RevokedToken.jti)))
    assert len(jtis) == len(set(jtis)) == 2
    assert http("GET", f"{live_server}/api/me", token=session["token"])[0] == 401
