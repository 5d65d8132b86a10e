"""Response details a new user meets in the first hour (issue 14, item 7).

`Retry-After` asks a client to come back later, so it appears only on a 429
(rate limit) and a 503 (database fault), never on an ordinary answer, even
though Flask-Limiter adds it to every answer of a limited route. A garbage
bearer token answers 401 "Invalid token" without the decoder's internals.
(A driver's `?all=true` is refused in tests/test_tickets_list.py.)
"""

import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest
from conftest import IS_POSTGRES, TEST_DATABASE_URL
from sqlalchemy import make_url

import database

# ---------------------------------------------------------------------------
# Retry-After: only on 429 and 503
# ---------------------------------------------------------------------------


@pytest.fixture
def limited(app, app_factory):
    """An app with the limiter on (fresh memory storage), 2 logins a minute,
    and short database waits so a held lock answers 503 quickly."""
    return app_factory(
        RATELIMIT_ENABLED=True,
        RATELIMIT_AUTH="2 per minute",
        RATELIMIT_STORAGE_URI="memory://",
        DB_LOCK_TIMEOUT_MS=300,
        DB_STATEMENT_TIMEOUT_MS=1000,
    )


@contextmanager
def vehicles_locked(database_uri: str):
    """Another connection holds a lock that blocks writing a vehicle: an
    exclusive table lock (PostgreSQL) or the whole file (SQLite)."""
    if IS_POSTGRES:
        connection = psycopg2.connect(TEST_DATABASE_URL, connect_timeout=5)
        connection.autocommit = True
        cursor = connection.cursor()
        cursor.execute("BEGIN; LOCK TABLE vehicles IN ACCESS EXCLUSIVE MODE")
    else:
        connection = sqlite3.connect(make_url(database_uri).database, isolation_level=None)
        cursor = connection.cursor()
        cursor.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        cursor.execute("ROLLBACK")
        connection.close()


def test_an_ordinary_answer_has_no_retry_after(limited, driver, make_user):
    client = limited.test_client()
    token = client.post(
        "/api/login", json={"email": driver["email"], "password": driver["password"]}
    ).get_json()["token"]

    for response in (
        client.get("/api/spots"),
        client.get("/api/me", headers={"Authorization": f"Bearer {token}"}),
        client.get("/api/test-db"),
    ):
        assert response.status_code == 200, response.get_json()
        assert "Retry-After" not in response.headers
    # The limiter was on for them: its own headers are still there.
    assert client.get("/api/spots").headers["X-RateLimit-Limit"] == "600"


def test_a_refusal_other_than_429_has_no_retry_after(limited, driver):
    client = limited.test_client()
    wrong = client.post("/api/login", json={"email": driver["email"], "password": "wrong-pass"})
    missing = client.get("/api/me")

    assert wrong.status_code == 401 and missing.status_code == 401
    assert "Retry-After" not in wrong.headers
    assert "Retry-After" not in missing.headers


def test_a_429_has_retry_after(limited, driver):
    client = limited.test_client()
    body = {"email": driver["email"], "password": "wrong-pass"}
    answers = [client.post("/api/login", json=body) for _ in range(3)]

    assert [r.status_code for r in answers] == [401, 401, 429]
    assert answers[-1].get_json() == {"error": "Too many requests"}
    assert 0 < int(answers[-1].headers["Retry-After"]) <= 60


def test_a_503_has_the_databases_retry_after(limited, _migrated, driver):
    """The database's own 2 seconds, not the limiter's window reset (up to a
    minute), which Flask-Limiter would otherwise put there."""
    client = limited.test_client()
    token = client.post(
        "/api/login", json={"email": driver["email"], "password": driver["password"]}
    ).get_json()["token"]

    with vehicles_locked(_migrated):
        response = client.post(
            "/api/vehicles",
            json={"plate_number": "KDA 001X"},
            headers={"Authorization": f"Bearer {token}"},
        )

    assert response.status_code == 503, response.get_json()
    assert response.get_json() == {"error": database.UNAVAILABLE}
    assert response.headers["Retry-After"] == str(database.RETRY_AFTER_SECONDS)


# ---------------------------------------------------------------------------
# Garbage bearer tokens: 401 "Invalid token", nothing of the decoder
# ---------------------------------------------------------------------------

GARBAGE_TOKENS = [
    "garbage",  # one segment
    "a.b",  # two segments
    "abc.def.ghi",  # three segments of base64 that is not JSON (not UTF-8 either)
    "t7c.t7c.t7c",  # decodes to the byte 0xb7 (the report's "can't decode byte 0xb7")
    "eyJhbGciOiJIUzI1NiJ9.t7c.sig",  # a real header, a payload that is not UTF-8
    "e30.e30.e30",  # {} as header: no algorithm
    "eyJ.eyJ.eyJ",  # bad padding
    "////.////.////",  # bytes 0xff...
    "a.b.c.d.e",  # too many segments
]


@pytest.mark.parametrize("token", GARBAGE_TOKENS)
def test_a_garbage_bearer_token_answers_invalid_token(client, driver, token):
    for method, path in (("GET", "/api/me"), ("POST", "/api/token/refresh")):
        response = client.open(path, method=method, headers={"Authorization": f"Bearer {token}"})

        assert response.status_code == 401, (path, response.get_data(as_text=True))
        assert response.get_json() == {"error": "Invalid token"}, path


def test_non_ascii_bytes_in_the_header_answer_invalid_token(client):
    """Bytes outside ASCII in the header itself (as a client that sends raw
    bytes does: WSGI hands them over as latin-1)."""
    for token in ("\xb7garbage", "abc.\xff\xfe.def", "\xb7.\xb7.\xb7"):
        response = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})

        assert response.status_code == 401
        assert response.get_json() == {"error": "Invalid token"}


def test_a_token_of_the_wrong_kind_still_says_which(client, driver, login):
    """The wrong kind of token is something a client can fix: that detail stays."""
    tokens = login(driver)
    response = client.post(
        "/api/token/refresh", headers={"Authorization": f"Bearer {tokens['token']}"}
    )

    assert response.status_code == 401
    assert response.get_json() == {"error": "Invalid token: Only refresh tokens are allowed"}


# ---------------------------------------------------------------------------
# The README's tour is docs/tour.sh (which CI runs against live servers)
# ---------------------------------------------------------------------------


def test_every_command_of_the_readme_tour_is_in_docs_tour_sh():
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    tour = {line.strip() for line in (root / "docs" / "tour.sh").read_text().splitlines()}
    section = readme.split("## Using the API", 1)[1].split("That is the whole tour", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    commands = [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]

    assert len(commands) > 40
    assert [line for line in commands if line not in tour] == []
