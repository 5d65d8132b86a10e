"""GET /api/test-db: Render's health check, 200 only when the app can serve.

It can serve when the database answers within a second and its schema is at
the code's head revision (or ahead: a rolling deploy); a database that
answers but is empty or behind is 503 with the fix. The revision is re-read
at most every SCHEMA_CHECK_SECONDS per process.
"""

import os

import pytest
from conftest import make_config
from flask_migrate import upgrade
from sqlalchemy import inspect, text

import checks
from app import create_app
from checks import head_revision
from models import db

MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "migrations")
HEAD = head_revision()


def test_test_db_reports_a_working_connection(client):
    response = client.get("/api/test-db")
    assert response.status_code == 200
    assert response.get_json() == {"message": "Database connection successful"}


def test_test_db_is_public_and_json(client):
    response = client.get("/api/test-db")
    assert response.is_json
    assert "Authorization" not in response.request.headers


def test_head_is_the_newest_migration_file():
    newest = max(
        name.split("_")[0]
        for name in os.listdir(os.path.join(MIGRATIONS, "versions"))
        if name.endswith(".py")
    )

    assert HEAD == newest


@pytest.fixture
def app_on(fresh_database_uri):
    """`app_on(**config)`: an app on the empty database of this test."""
    apps = []

    def build(**overrides):
        application = create_app(make_config(fresh_database_uri, **overrides))
        apps.append(application)
        return application

    yield build
    for application in apps:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()


def migrate(app, revision="head") -> None:
    with app.app_context():
        upgrade(directory=MIGRATIONS, revision=revision)


def test_an_empty_database_is_not_healthy(app_on):
    app = app_on()

    response = app.test_client().get("/api/test-db")

    assert response.status_code == 503
    assert response.get_json() == {
        "error": f"Database schema is at none, code expects {HEAD}: run flask db upgrade"
    }
    with app.app_context():
        assert inspect(db.engine).get_table_names() == []  # looked, created nothing


def test_an_old_revision_is_not_healthy_until_upgraded(app_on):
    app = app_on(SCHEMA_CHECK_SECONDS=0)
    migrate(app, "0003")
    client = app.test_client()

    behind = client.get("/api/test-db")
    migrate(app)
    upgraded = client.get("/api/test-db")

    assert behind.status_code == 503
    assert behind.get_json() == {
        "error": f"Database schema is at 0003, code expects {HEAD}: run flask db upgrade"
    }
    assert upgraded.status_code == 200
    assert upgraded.get_json() == {"message": "Database connection successful"}


def test_a_revision_newer_than_the_code_stays_healthy(app_on):
    """Migrated by a newer release: the moment of a rolling deploy between
    the migration and the new instances; the old ones keep serving."""
    app = app_on()
    migrate(app)
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))

    response = app.test_client().get("/api/test-db")

    assert response.status_code == 200
    assert response.get_json() == {"message": "Database connection successful"}


class FakeMonotonic:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_revision_is_read_again_only_after_the_interval(app_on, monkeypatch):
    clock = FakeMonotonic()
    monkeypatch.setattr(checks.time, "monotonic", clock)
    app = app_on()  # default interval
    migrate(app, "0003")
    client = app.test_client()

    first = client.get("/api/test-db")
    migrate(app)
    clock.now += checks.SCHEMA_CHECK_SECONDS - 0.5
    cached = client.get("/api/test-db")
    clock.now += 1
    fresh = client.get("/api/test-db")

    assert first.status_code == 503
    assert cached.status_code == 503  # still within the interval: the answer kept
    assert fresh.status_code == 200


def test_a_healthy_check_reads_the_revision_once_per_interval(client, count_queries):
    with count_queries() as statements:
        for _ in range(3):
            assert client.get("/api/test-db").status_code == 200

    revision_reads = [s for s in statements if "SELECT version_num" in s]
    assert len(revision_reads) == 1
    assert sum(1 for s in statements if s.strip().upper() == "SELECT 1") == 3
