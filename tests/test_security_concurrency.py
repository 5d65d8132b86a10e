"""Accounts under real concurrency: threads hitting a live server at once.

One e-mail registered by ten clients at the same instant gives one account
(the unique index decides); one refresh token presented eight times at once
gives eight times the same new pair (a retry, not a theft); a logout racing a
refresh revokes everything it was given, and the refreshed pair with it.
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


def login_session(live_server, user) -> dict:
    status, session = http(
        "POST", f"{live_server}/api/login", {"email": user["email"], "password": "password123"}
    )
    assert status == 200, session
    return session


def test_eight_simultaneous_refreshes_all_get_the_same_new_pair(app, live_server, driver):
    """An app that retried a refresh is not logged out: every copy of the
    request gets the same new pair, and nothing else is revoked."""
    app.config["JWT_REFRESH_REUSE_LEEWAY"] = 60  # however slow the machine
    session = login_session(live_server, driver)
    refresh = session["refresh_token"]

    results = run_at_once(
        [lambda: http("POST", f"{live_server}/api/token/refresh", token=refresh)] * 8
    )

    assert [status for status, _ in results] == [200] * 8, results
    pairs = {(body["token"], body["refresh_token"]) for _, body in results}
    assert len(pairs) == 1, "every retry gets the same pair"
    [(access, new_refresh)] = pairs
    with app.app_context():
        assert db.session.get(User, driver["id"]).token_version == 0
        assert db.session.scalar(select(func.count()).select_from(RevokedToken)) == 1
    assert http("GET", f"{live_server}/api/me", token=access)[0] == 200
    assert http("GET", f"{live_server}/api/me", token=session["token"])[0] == 200
    assert http("POST", f"{live_server}/api/token/refresh", token=new_refresh)[0] == 200


def test_a_logout_racing_a_refresh_revokes_everything_it_was_given(app, live_server, driver):
    """The security bug of the faults issue: logout with T and R at the same
    moment as a refresh of R. Logout must revoke T whatever happens, and a
    pair minted by the refresh must not outlive the logout. 20 trials."""
    for trial in range(20):
        session = login_session(live_server, driver)
        token, refresh = session["token"], session["refresh_token"]

        logout, rotated = run_at_once(
            [
                lambda t=token, r=refresh: http(
                    "POST", f"{live_server}/api/logout", {"refresh_token": r}, token=t
                ),
                lambda r=refresh: http("POST", f"{live_server}/api/token/refresh", token=r),
            ]
        )

        assert logout == (200, {"message": "Logged out"}), (trial, logout)
        assert http("GET", f"{live_server}/api/me", token=token)[0] == 401, trial
        if rotated[0] == 200:
            pair = rotated[1]
            assert http("GET", f"{live_server}/api/me", token=pair["token"])[0] == 401, trial
            refreshed = http(
                "POST", f"{live_server}/api/token/refresh", token=pair["refresh_token"]
            )
            assert refreshed[0] == 401, trial
        else:
            assert rotated == (401, {"error": "Token has been revoked"}), (trial, rotated)
        assert http("POST", f"{live_server}/api/token/refresh", token=refresh)[0] == 401, trial


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
    assert len(jtis) == len(set(jtis)) == 3  # the two tokens and their family
    assert http("GET", f"{live_server}/api/me", token=session["token"])[0] == 401
