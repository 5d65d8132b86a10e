"""Configuration and deployment files: config.py, Procfile, gunicorn.conf.py,
render.yaml and .env.example, checked against each other and the app."""

import os
import re
import runpy
import subprocess
import sys
import types

import pytest
import yaml
from dotenv import dotenv_values
from flask import Flask
from gunicorn.config import KNOWN_SETTINGS

from app import create_app
from config import ProductionConfig, database_url, replica_binds
from models import db

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
GOOD_SECRET = "0123456789abcdef0123456789abcdef"
# Read by Render and the Python runtime, not by the app: documented in the README instead.
PLATFORM_VARIABLES = {"PYTHON_VERSION", "PYTHONUNBUFFERED"}


def read(name: str) -> str:
    with open(os.path.join(ROOT, name), encoding="utf-8") as handle:
        return handle.read()


def production_config(**overrides):
    return type(
        "Production", (ProductionConfig,), {"SQLALCHEMY_DATABASE_URI": "sqlite://", **overrides}
    )


# ---------------------------------------------------------------------------
# config.py
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgres://u:p@db.example.com:5432/parking",
            "postgresql+psycopg2://u:p@db.example.com:5432/parking",
        ),
        (
            "postgresql://u:p@db.example.com/parking",
            "postgresql+psycopg2://u:p@db.example.com/parking",
        ),
        (
            "postgresql://postgres@127.0.0.1:5432/x?sslmode=require",
            "postgresql+psycopg2://postgres@127.0.0.1:5432/x?sslmode=require",
        ),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:////tmp/parking.db", "sqlite:////tmp/parking.db"),
        ("sqlite://", "sqlite://"),
    ],
)
def test_database_url_uses_the_psycopg2_driver(given, expected):
    assert database_url(given) == expected


@pytest.mark.parametrize("given", [None, ""])
def test_database_url_defaults_to_sqlite_in_the_instance_folder(given):
    instance_path = Flask("app", root_path=ROOT, instance_relative_config=True).instance_path

    assert database_url(given) == "sqlite:///" + os.path.join(instance_path, "parking.db")


@pytest.mark.parametrize("given", [None, ""])
def test_the_read_replica_is_optional(given):
    assert replica_binds(given, 2) == {}


def test_the_read_replica_gets_the_driver_and_a_short_connect_timeout():
    binds = replica_binds("postgres://reader@replica.internal:5432/parking", 3)

    assert binds == {
        "replica": {
            "url": "postgresql+psycopg2://reader@replica.internal:5432/parking",
            "pool_pre_ping": True,
            "connect_args": {"connect_timeout": 3},
        }
    }


def test_an_app_with_a_replica_has_a_replica_engine_and_the_primary_default():
    app = create_app(
        production_config(
            JWT_SECRET_KEY=GOOD_SECRET, SQLALCHEMY_BINDS=replica_binds("sqlite://", 2)
        )
    )
    with app.app_context():
        assert set(db.engines) == {None, "replica"}
        assert db.session.get_bind() is db.engines[None]  # outside a @replica_reads view
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "   ",
        "your_secure_jwt_secret_key",
        "change-me",
        "CHANGEME",
        "secret",
        "dev",
        "too-short",
    ],
)
def test_production_refuses_a_missing_or_placeholder_secret(secret):
    with pytest.raises(RuntimeError) as raised:
        create_app(production_config(JWT_SECRET_KEY=secret))

    message = str(raised.value)
    assert "JWT_SECRET_KEY" in message
    assert "\n" not in message


def test_production_starts_with_a_real_secret():
    app = create_app(production_config(JWT_SECRET_KEY=GOOD_SECRET))

    assert not app.debug and not app.testing
    assert app.config["JWT_SECRET_KEY"] == GOOD_SECRET


def test_dict_config_outside_debug_is_production(monkeypatch):
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    with pytest.raises(RuntimeError, match="JWT_SECRET_KEY"):
        create_app({"JWT_SECRET_KEY": "", "SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_debug_runs_without_a_secret(monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})

    assert app.debug
    assert app.config["JWT_SECRET_KEY"]


def test_request_bodies_are_capped_at_one_mebibyte():
    assert ProductionConfig.MAX_CONTENT_LENGTH == 1024 * 1024


def app_process(secret: str) -> subprocess.CompletedProcess:
    """Import `app:app` the way gunicorn does, in a fresh process."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"FLASK_DEBUG", "DATABASE_URL", "JWT_SECRET_KEY"}
    }
    env.update({"JWT_SECRET_KEY": secret, "DATABASE_URL": "sqlite://"})
    code = "from app import app; print(sorted(r.rule for r in app.url_map.iter_rules()))"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_module_level_app_refuses_a_placeholder_secret():
    done = app_process("your_secure_jwt_secret_key")

    assert done.returncode != 0
    # One line that names the variable, not a wall of text (tests/test_startup_errors.py).
    assert done.stderr.strip().startswith("JWT_SECRET_KEY")
    assert "Traceback" not in done.stderr


def test_module_level_app_serves_with_a_real_secret():
    done = app_process(GOOD_SECRET)

    assert done.returncode == 0, done.stderr[-2000:]
    assert "/api/test-db" in done.stdout


# ---------------------------------------------------------------------------
# Procfile and gunicorn.conf.py
# ---------------------------------------------------------------------------


@pytest.fixture
def startable(monkeypatch):
    """An environment gunicorn.conf.py lets start (it exits on a missing secret)."""
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    monkeypatch.setenv("JWT_SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv("DATABASE_URL", "sqlite://")


def test_procfile_migrates_on_release_and_serves_with_gunicorn():
    processes = dict(line.split(":", 1) for line in read("Procfile").splitlines() if line.strip())

    assert {name: command.strip() for name, command in processes.items()} == {
        "release": "flask db upgrade",
        "web": "gunicorn app:app",
    }


def test_gunicorn_binds_port_and_reads_web_concurrency(startable, monkeypatch):
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")

    settings = runpy.run_path(os.path.join(ROOT, "gunicorn.conf.py"))

    assert settings["bind"] == "0.0.0.0:8123"
    assert settings["workers"] == 3


def test_gunicorn_defaults_without_environment(startable, monkeypatch):
    for name in ("PORT", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)

    settings = runpy.run_path(os.path.join(ROOT, "gunicorn.conf.py"))

    assert re.fullmatch(r"0\.0\.0\.0:\d+", settings["bind"])
    assert isinstance(settings["workers"], int) and settings["workers"] >= 1


def test_gunicorn_serves_with_gevent_and_stops_before_render_kills_it(monkeypatch, startable):
    monkeypatch.delenv("GUNICORN_WORKER_CLASS", raising=False)
    settings = runpy.run_path(os.path.join(ROOT, "gunicorn.conf.py"))

    # Slow and idle clients cost a greenlet each (tests/test_slow_clients.py).
    assert settings["worker_class"] == "gevent"
    assert settings["worker_connections"] >= 1000
    # Render sends SIGKILL 30 s after SIGTERM: requests in flight finish before.
    assert settings["graceful_timeout"] < 30

    monkeypatch.setenv("GUNICORN_WORKER_CLASS", "sync")
    assert runpy.run_path(os.path.join(ROOT, "gunicorn.conf.py"))["worker_class"] == "sync"


def test_gunicorn_conf_names_only_real_settings(startable):
    settings = runpy.run_path(os.path.join(ROOT, "gunicorn.conf.py"))
    known = {setting.name for setting in KNOWN_SETTINGS}
    names = {
        name
        for name, value in settings.items()
        if not name.startswith("__") and not isinstance(value, types.ModuleType)
    }

    assert names <= known, names - known


# ---------------------------------------------------------------------------
# render.yaml
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blueprint():
    return yaml.safe_load(read("render.yaml"))


@pytest.fixture(scope="module")
def web(blueprint):
    [service] = [s for s in blueprint["services"] if s["type"] == "web"]
    return service


def env_vars(service) -> dict:
    return {var["key"]: var for var in service["envVars"]}


def test_render_web_service(web):
    assert web["runtime"] == "python"
    assert "requirements.txt" in web["buildCommand"]
    assert web["preDeployCommand"] == "flask db upgrade"
    assert web["startCommand"] == "gunicorn app:app"
    assert env_vars(web)["FLASK_APP"]["value"] == "app.py"


def test_render_health_check_path_exists_and_answers(web, client):
    path = web["healthCheckPath"]
    rules = {rule.rule for rule in client.application.url_map.iter_rules()}

    assert path in rules
    response = client.get(path)
    assert response.status_code == 200


def test_render_database_url_comes_from_a_declared_database(blueprint, web):
    source = env_vars(web)["DATABASE_URL"]["fromDatabase"]
    declared = {database["name"] for database in blueprint["databases"]}

    assert source["name"] in declared
    assert source["property"] == "connectionString"


def test_render_generates_the_jwt_secret(web):
    assert env_vars(web)["JWT_SECRET_KEY"]["generateValue"] is True


def test_render_declares_the_admin_variables_without_values(web):
    """Set in the dashboard for `flask create-admin`, never committed."""
    for key in ("ADMIN_EMAIL", "ADMIN_PASSWORD", "ADMIN_USERNAME"):
        assert env_vars(web)[key] == {"key": key, "sync": False}


def test_render_service_references_exist(blueprint, web):
    names = {service["name"] for service in blueprint["services"]}
    for var in web["envVars"]:
        if "fromService" in var:
            assert var["fromService"]["name"] in names, var


# ---------------------------------------------------------------------------
# .env.example, .gitignore, requirements
# ---------------------------------------------------------------------------


def python_variables(name: str) -> set[str]:
    """Environment variables a Python file reads (os.environ.get and config's env_* helpers)."""
    pattern = r"""(?:os\.environ\.get|env_int|env_bool|env_list)\(\s*["']([A-Z0-9_]+)["']"""
    return set(re.findall(pattern, read(name)))


def render_variables() -> set[str]:
    services = yaml.safe_load(read("render.yaml"))["services"]
    return {var["key"] for service in services for var in service.get("envVars", [])}


def documented_variables() -> dict[str, bool]:
    """Variables in .env.example (set or commented out) -> has an explaining comment above."""
    lines = read(".env.example").splitlines()
    assignment = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=")
    documented = {}
    for index, line in enumerate(lines):
        match = assignment.match(line)
        if not match:
            continue
        explained = False
        for above in reversed(lines[:index]):
            if not above.strip():
                break
            if above.startswith("#") and not assignment.match(above):
                explained = True
                break
        documented[match.group(1)] = explained
    return documented


def test_variable_scan_finds_the_known_variables():
    # Guard against the regex silently finding nothing.
    assert {"DATABASE_URL", "JWT_SECRET_KEY", "CORS_ORIGINS"} <= python_variables("config.py")
    assert {"PORT", "WEB_CONCURRENCY"} <= python_variables("gunicorn.conf.py")


@pytest.mark.parametrize("source", ["config.py", "gunicorn.conf.py", "render.yaml"])
def test_every_variable_is_in_env_example(source):
    names = render_variables() if source == "render.yaml" else python_variables(source)
    missing = names - PLATFORM_VARIABLES - set(documented_variables())

    assert not missing, f"{source} names variables missing from .env.example: {sorted(missing)}"


def test_every_env_example_variable_has_a_comment():
    undocumented = [name for name, explained in documented_variables().items() if not explained]

    assert not undocumented


def test_env_example_keeps_the_zero_setup_defaults():
    """`cp .env.example .env && make run` still uses SQLite and make run's login limit."""
    values = dotenv_values(os.path.join(ROOT, ".env.example"))

    assert "DATABASE_URL" not in values
    assert "# DATABASE_URL=postgresql://" in read(".env.example")
    assert "RATELIMIT_AUTH" not in values
    assert not values["JWT_SECRET_KEY"]  # make run's development key applies


def test_env_file_is_git_ignored():
    ignored = {line.strip() for line in read(".gitignore").splitlines()}

    assert ".env" in ignored


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt"])
def test_requirements_are_pinned(name):
    for line in read(name).splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", line), line


def test_runtime_pins_sqlalchemy_and_werkzeug():
    pinned = {
        line.split("==")[0].lower()
        for line in read("requirements.txt").splitlines()
        if "==" in line
    }

    assert {"sqlalchemy", "werkzeug", "psycopg2-binary", "gunicorn"} <= pinned
