"""The Postman collection stays in step with the app.

The collection itself runs against a live server in CI (.ci/live.sh, newman);
these checks are static and fast: one request per route the app serves, the
variables the README promises, a test script on every request, newman pinned.
"""

import json
import re
from pathlib import Path

import pytest

from app import create_app
from config import TestConfig

ROOT = Path(__file__).resolve().parent.parent
COLLECTION = ROOT / "Parking_Lot_API_Collection.json"
ENVIRONMENT = ROOT / "Parking_Lot_API.postman_environment.json"
SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def requests(items: list) -> list[dict]:
    """Every request item, depth first (folders hold `item`, requests hold `request`)."""
    found = []
    for item in items:
        if "item" in item:
            found.extend(requests(item["item"]))
        else:
            found.append(item)
    return found


def script(item: dict, listen: str) -> str:
    return "\n".join(
        "\n".join(event["script"]["exec"])
        for event in item.get("event", [])
        if event["listen"] == listen
    )


def collection_route(item: dict) -> tuple[str, str]:
    """("PATCH", "/api/vehicles/{{vehicle_id}}") for a request to that URL under base_url."""
    raw = item["request"]["url"]["raw"]
    assert raw.startswith("{{base_url}}/"), raw
    return item["request"]["method"], "/api" + raw.removeprefix("{{base_url}}").split("?")[0]


def app_routes() -> list[tuple[str, str, re.Pattern]]:
    """(method, rule, pattern) of every route; a pattern matches concrete or {{var}} paths."""
    app = create_app(TestConfig)
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        pattern = re.compile(
            "".join(
                "[^/]+" if part.startswith("<") else re.escape(part)
                for part in re.split(r"(<[^>]+>)", rule.rule)
            )
        )
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, rule.rule, pattern))
    return routes


@pytest.fixture(scope="module")
def collection():
    return load(COLLECTION)


def test_collection_is_postman_v21_with_its_variables(collection):
    assert collection["info"]["schema"] == SCHEMA
    variables = {v["key"]: v["value"] for v in collection["variable"]}
    assert variables["base_url"] == "http://127.0.0.1:5000/api"
    assert "jwt_token" in variables
    assert collection["auth"]["type"] == "bearer"
    assert collection["auth"]["bearer"][0]["value"] == "{{jwt_token}}"


def test_every_route_of_the_app_has_a_request(collection):
    covered = [collection_route(item) for item in requests(collection["item"])]
    missing = [
        (method, rule)
        for method, rule, pattern in app_routes()
        if not any(m == method and pattern.fullmatch(path) for m, path in covered)
    ]
    assert not missing, f"routes without a request in the collection: {sorted(missing)}"


def test_register_and_login_store_the_token(collection):
    by_name = {item["name"]: item for item in requests(collection["item"])}
    for name in ("Register", "Login"):
        tests = script(by_name[name], "test")
        assert 'pm.collectionVariables.set("jwt_token", body.token)' in tests, name
    assert "Date.now()" in script(by_name["Register"], "prerequest")


def test_every_request_asserts_its_status(collection):
    for item in requests(collection["item"]):
        tests = script(item, "test")
        assert "pm.test(" in tests and "to.have.status(" in tests, item["name"]


def test_environment_points_at_the_local_server(collection):
    environment = load(ENVIRONMENT)
    values = {v["key"]: v["value"] for v in environment["values"] if v["enabled"]}
    assert values["base_url"] == "http://127.0.0.1:5000/api"
    # Tokens live in collection variables; an environment copy would shadow them.
    assert "jwt_token" not in values


def test_newman_is_pinned_exactly():
    package = load(ROOT / "package.json")
    version = package["devDependencies"]["newman"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    lock = load(ROOT / "package-lock.json")
    assert lock["packages"]["node_modules/newman"]["version"] == version
