"""Start-up errors are one line that names the variable and the fix, a non-zero
exit and no traceback: gunicorn, `flask db upgrade`, seed.py and `make run`,
each run as the operator runs it, in a fresh process."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from conftest import IS_POSTGRES, TEST_DATABASE_URL
from sqlalchemy import create_engine, inspect, make_url

from checks import ConfigError, head_revision, secret_problem
from config import ProductionConfig, database_url

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.dirname(sys.executable)
GOOD_SECRET = "0123456789abcdef0123456789abcdef"
STARTUP_TIMEOUT = 120  # seconds a refused start may take on a busy machine


def environment(**variables: str) -> dict:
    """The test process's environment without the app's settings, plus `variables`.

    Unset settings are set empty, so a developer's .env cannot fill them in
    (python-dotenv never overrides a variable that is present).
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"FLASK_DEBUG", "DATABASE_URL", "JWT_SECRET_KEY", "TEST_DATABASE_URL"}
    }
    env.update(
        {
            "FLASK_APP": "app.py",
            "JWT_SECRET_KEY": "",
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(variables)
    return env


def run(command: list[str], **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=ROOT,
        env=environment(**variables),
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn(**variables: str) -> subprocess.CompletedProcess:
    """`gunicorn app:app` as Render starts it (gunicorn.conf.py), on the loopback only."""
    port = str(free_port())
    command = [os.path.join(BIN, "gunicorn"), "--bind", f"127.0.0.1:{port}", "app:app"]
    return run(command, PORT=port, **variables)


def flask(*args: str, **variables: str) -> subprocess.CompletedProcess:
    return run([os.path.join(BIN, "flask"), *args], **variables)


def seed(**variables: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "seed.py"], **variables)


def assert_one_line(done: subprocess.CompletedProcess, start: str) -> str:
    """The process failed with exactly one line on stderr, starting with `start`."""
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(start), lines[0]
    return lines[0]


# ---------------------------------------------------------------------------
# The JWT secret
# ---------------------------------------------------------------------------

MISSING_SECRET = "JWT_SECRET_KEY is missing, a placeholder or shorter than 32 characters: "
FEW_CHARACTERS = "JWT_SECRET_KEY has fewer than 8 different characters"


@pytest.mark.parametrize(
    ("secret", "start"),
    [
        ("", MISSING_SECRET),
        ("x" * 64, FEW_CHARACTERS),
    ],
)
def test_gunicorn_refuses_a_missing_or_weak_secret_in_one_line(secret, start):
    done = gunicorn(JWT_SECRET_KEY=secret, DATABASE_URL="sqlite://")

    line = assert_one_line(done, start)
    assert "openssl rand -hex 32" in line
    assert "Starting gunicorn" not in done.stdout + done.stderr  # refused before it started


def test_flask_db_upgrade_refuses_a_missing_secret_in_one_line(tmp_path):
    database = tmp_path / "app.db"

    done = flask("db", "upgrade", DATABASE_URL=f"sqlite:///{database}")

    assert_one_line(done, MISSING_SECRET)
    assert not database.exists()


def test_seed_refuses_a_missing_secret_outside_debug(tmp_path):
    done = seed(DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}")

    assert_one_line(done, MISSING_SECRET)


def test_importing_the_module_level_app_refuses_a_placeholder_in_one_line():
    """What any other WSGI server or script meets; status 4 stops a gunicorn master."""
    code = "from app import app"

    done = run([sys.executable, "-c", code], JWT_SECRET_KEY="your_secure_jwt_secret_key")

    assert_one_line(done, MISSING_SECRET)
    assert done.returncode == 4


@pytest.mark.parametrize("secret", ["a" * 32, "Z" * 100, "0101" * 10, "abcdefg" * 6])
def test_a_secret_with_few_different_characters_is_refused(secret):
    assert secret_problem(secret).startswith(FEW_CHARACTERS)


@pytest.mark.parametrize(
    "secret", [GOOD_SECRET, "correct-horse-battery-staple-parking-lot", "abcdefgh" * 4]
)
def test_a_long_varied_secret_is_accepted(secret):
    assert secret_problem(secret) is None


def test_production_app_refuses_a_repeated_character_secret():
    config = type(
        "Production",
        (ProductionConfig,),
        {"SQLALCHEMY_DATABASE_URI": "sqlite://", "JWT_SECRET_KEY": "k" * 48},
    )
    from app import create_app

    with pytest.raises(ConfigError, match=FEW_CHARACTERS):
        create_app(config)


# ---------------------------------------------------------------------------
# DATABASE_URL
# ---------------------------------------------------------------------------

NOT_A_URL = "DATABASE_URL is not a database URL: set it like postgresql://"


def test_gunicorn_refuses_a_database_url_that_is_not_a_url():
    done = gunicorn(JWT_SECRET_KEY=GOOD_SECRET, DATABASE_URL="not-a-url")

    assert_one_line(done, NOT_A_URL)


def test_flask_db_upgrade_refuses_a_database_url_that_is_not_a_url():
    done = flask("db", "upgrade", FLASK_DEBUG="1", DATABASE_URL="not-a-url")

    assert_one_line(done, NOT_A_URL)


def test_seed_refuses_a_database_url_that_is_not_a_url():
    done = seed(FLASK_DEBUG="1", DATABASE_URL="not-a-url")

    assert_one_line(done, NOT_A_URL)


def test_a_database_the_app_has_no_driver_for_is_refused():
    done = flask("db", "upgrade", FLASK_DEBUG="1", DATABASE_URL="mysql://user@db.example/parking")

    assert_one_line(done, "DATABASE_URL names a database this app cannot use (mysql)")


def test_a_bad_database_url_does_not_stop_the_test_suite():
    """TestConfig reads TEST_DATABASE_URL; DATABASE_URL is checked only where it is used."""
    done = run(
        [sys.executable, "-c", "import app, config, seed; print('imported')"],
        FLASK_DEBUG="1",
        DATABASE_URL="not-a-url",
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"


# ---------------------------------------------------------------------------
# A database that does not answer, does not exist, or was never migrated
# ---------------------------------------------------------------------------


def postgres_url(port: int, database: str) -> str:
    """A PostgreSQL URL on the test server (or the loopback, on SQLite runs)."""
    if IS_POSTGRES:
        url = make_url(TEST_DATABASE_URL).set(database=database)
        if port:
            url = url.set(port=port)
        return url.render_as_string(hide_password=False)
    return f"postgresql://postgres@127.0.0.1:{port or 5432}/{database}"


def unreachable_databases() -> list:
    closed = free_port()  # nothing listens there: the connection is refused
    cases = [
        pytest.param(
            "sqlite:////nonexistent-folder/parking.db",
            "Cannot open the SQLite database sqlite:////nonexistent-folder/parking.db: "
            "unable to open database file. Check that its folder exists and is writable.",
            id="sqlite-folder-missing",
        ),
        pytest.param(
            postgres_url(closed, "parking"),
            "Cannot connect to the database postgresql://",
            id="postgres-refused",
        ),
    ]
    if IS_POSTGRES:
        cases.append(
            pytest.param(
                postgres_url(0, "firsthour_no_such_database"),
                "Cannot connect to the database postgresql://",
                id="postgres-database-missing",
            )
        )
    return cases


@pytest.mark.parametrize(("url", "start"), unreachable_databases())
def test_flask_db_upgrade_names_an_unreachable_database_in_one_line(url, start):
    done = flask("db", "upgrade", FLASK_DEBUG="1", DATABASE_URL=url)

    line = assert_one_line(done, start)
    if "no_such_database" in url:
        assert 'database "firsthour_no_such_database" does not exist' in line
        assert "Create it (createdb " in line
    if url.startswith("postgresql"):
        assert "unset DATABASE_URL to use SQLite" in line


@pytest.mark.parametrize(("url", "start"), unreachable_databases()[:2])
def test_seed_names_an_unreachable_database_in_one_line(url, start):
    done = seed(FLASK_DEBUG="1", DATABASE_URL=url)

    assert_one_line(done, start)


def test_a_password_in_the_url_is_never_printed():
    url = f"postgresql://parking:s3cret-pw@127.0.0.1:{free_port()}/parking"

    done = flask("db", "upgrade", FLASK_DEBUG="1", DATABASE_URL=url)

    line = assert_one_line(done, "Cannot connect to the database postgresql://parking:***@")
    assert "s3cret-pw" not in done.stderr + done.stdout
    assert "Check that the server runs and accepts connections" in line


def test_seed_on_an_unmigrated_database_says_to_migrate(fresh_database_uri):
    done = seed(FLASK_DEBUG="1", DATABASE_URL=fresh_database_uri)

    assert_one_line(
        done, f"Database schema is at none, code expects {head_revision()}: run flask db upgrade"
    )
    assert done.stdout == ""
    engine = create_engine(database_url(fresh_database_uri))
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------
# make run: the port first, then migrate, seed and serve
# ---------------------------------------------------------------------------


def make_run(tmp_path, port: int, **variables: str) -> subprocess.Popen:
    """`make run PORT=...` with this test's Python environment and a SQLite file of its own."""
    stamp = tmp_path / "runtime-installed"
    stamp.touch()  # newer than requirements.txt: make installs nothing
    command = ["make", "--no-print-directory", "run", f"PORT={port}", f"BIN={BIN}"]
    command.append(f"RUNTIME={stamp}")
    env = environment(DATABASE_URL=f"sqlite:///{tmp_path / 'run.db'}", **variables)
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: make, flask and the reloader's child
    )


def test_make_run_refuses_a_busy_port_before_migrating(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = make_run(tmp_path, port)
        stdout, stderr = process.communicate(timeout=STARTUP_TIMEOUT)

    assert process.returncode != 0
    assert f"Port {port} is in use: stop what listens there, or run on another: " in stderr
    assert f"PORT={port + 1} make run" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "run.db").exists()  # nothing migrated or seeded


def test_make_run_serves_on_the_port_given(tmp_path):
    port = free_port()
    process = make_run(tmp_path, port)
    base = f"http://127.0.0.1:{port}/api"
    try:
        status = None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"{base}/test-db", timeout=2) as response:
                    status = response.status
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        assert status == 200, process.poll()
        login = urllib.request.Request(
            f"{base}/login",
            data=b'{"email": "admin@example.com", "password": "adminpass"}',
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(login, timeout=10) as response:
            assert response.status == 200  # migrated and seeded
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)

    assert "Created: lot Lot A (Nairobi CBD) with spots A1-A10" in stdout
    assert (
        "Login and register allow 100 per minute per client IP and per e-mail under make run"
        in stdout
    )
    assert f"http://127.0.0.1:{port}" in stdout + stderr
