"""GET /api/openapi.json and GET /api/docs: the API's description and its viewer.

The document must be valid OpenAPI 3.1, describe exactly the routes the app
serves (an undocumented or stale route fails here), and say what the app
really does: which operations need a token or an admin, which answer errors
as `{"error": ...}`, which lists are paged, which limits hold. The Swagger UI
page must work offline: every asset comes from the app, out of a pinned package.
tests/test_fuzz.py then fuzzes every operation against this document.
"""

import copy
import json
import os
import re
from importlib.metadata import version

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

import openapi
from app import create_app
from config import TestConfig
from models import Webhook, db, utcnow
from openapi import DOCS_ASSETS, SWAGGER_UI_DIR

# The document is generated from the app's routes and declarations; this app's
# document is the one every app of the test configuration serves.
APP = create_app(TestConfig)


def build_openapi() -> dict:
    return openapi.build_openapi(APP)


METHODS = {"get", "post", "put", "patch", "delete"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Routes Flask-Limiter does not count (health check and static documentation).
RATE_LIMIT_EXEMPT = {"/api/test-db", "/api/openapi.json", "/api/docs", "/api/docs/{filename}"}


def operations(document=None):
    """(path, method, operation) for every operation in the document."""
    document = document or build_openapi()
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def resolve(schema: dict) -> dict:
    ref = schema.get("$ref")
    return build_openapi()["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def url_for_path(path: str) -> str:
    """A concrete URL for a documented path: ids are 1, files a real asset."""
    return path.replace("{filename}", "swagger-ui.css").format_map(
        {name: 1 for name in re.findall(r"{(\w+)}", path)}
    )


def call(client, method: str, path: str, token: str | None = None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.open(
        url_for_path(path), method=method.upper(), headers=headers, buffered=True, **kwargs
    )


@pytest.fixture
def world(app, lot, admin, driver, make_vehicle, login):
    """Lot 1 with spots, admin's vehicle 1; world["admin"]()() is a fresh admin token
    (a fresh one per request: POST /api/logout revokes the one it is sent)."""
    make_vehicle(admin, plate="KAA 001A")
    with app.app_context():  # webhook 1, for its deliveries
        db.session.add(
            Webhook(
                url="http://127.0.0.1:9/",
                events=["lot.full"],
                secret="whsec_AAAA",
                created_at=utcnow(),
            )
        )
        db.session.commit()
    return {
        "admin": lambda: login(admin)["token"],
        "driver": lambda: login(driver)["token"],
    }


# ---------------------------------------------------------------------------
# The document
# ---------------------------------------------------------------------------


def test_document_is_valid_openapi_3_1():
    document = build_openapi()
    assert document["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(document).validate()


def test_document_is_built_once_and_served_with_this_server(client):
    assert build_openapi() is build_openapi()
    pristine = copy.deepcopy(build_openapi())

    response = client.get("/api/openapi.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    served = response.get_json()
    OpenAPIV31SpecValidator(served).validate()
    assert served["servers"] == [{"url": "http://localhost", "description": "This server"}]
    assert {k: v for k, v in served.items() if k != "servers"} == json.loads(json.dumps(pristine))
    assert build_openapi() == pristine  # serving never changes the cached document


@pytest.mark.parametrize(
    ("base_url", "headers", "expected"),
    [
        ("http://127.0.0.1:5000", {}, "http://127.0.0.1:5000"),
        # Behind Render's proxy (one hop): the public scheme and host.
        ("http://api.example.com", {"X-Forwarded-Proto": "https"}, "https://api.example.com"),
    ],
)
def test_servers_is_the_host_the_client_called(client, base_url, headers, expected):
    response = client.get("/api/openapi.json", base_url=base_url, headers=headers)

    assert response.status_code == 200
    assert response.get_json()["servers"][0]["url"] == expected


def test_every_route_is_documented_and_nothing_else(app):
    """The (path, method) pairs of the document are exactly the app's URL map."""
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":  # Flask's own /static/<path>, not part of the API
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        served |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, method, _ in operations()}

    assert served - documented == set(), "routes missing from openapi.py"
    assert documented - served == set(), "documented routes the app does not serve"
    assert all(path.startswith("/api/") for path, _ in documented)


def test_path_parameters_are_documented():
    for path, method, op in operations():
        names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert names == set(re.findall(r"{(\w+)}", path)), f"{method} {path}"


def test_operation_ids_are_unique():
    ids = [op["operationId"] for _, _, op in operations()]
    assert len(ids) == len(set(ids))


def test_every_error_response_has_the_error_shape():
    """Every error is {"error": "..."}; a few carry more (a 402's balance, an
    exit's candidates), each declared by a model that still requires `error`."""
    error = build_openapi()["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"] == {"error": {"type": "string"}}
    richer = set()
    for path, method, op in operations():
        for status, response in op["responses"].items():
            if int(status) >= 400:
                schema = resolve(response["content"]["application/json"]["schema"])
                assert "error" in schema["required"], f"{method} {path} {status}"
                assert schema["properties"]["error"]["type"] == "string", f"{method} {path}"
                assert schema.get("additionalProperties") is False, f"{method} {path}"
                if schema is not error:
                    richer.add((method, path, status))
    assert richer == {
        ("post", "/api/parking-lots/{lot_id}/exits", "402"),
        ("post", "/api/parking-lots/{lot_id}/exits", "404"),
        ("post", "/api/tickets/{ticket_id}/payments", "409"),
        ("post", "/api/reservations", "409"),
        ("post", "/api/reservations/{reservation_id}/check-in", "409"),
    }


def test_every_operation_documents_its_common_errors():
    for path, method, op in operations():
        statuses = set(op["responses"])
        label = f"{method.upper()} {path}"
        if op["security"]:
            assert "401" in statuses, label
        if "requestBody" in op:
            assert {"400", "413"} <= statuses, label
        if path not in RATE_LIMIT_EXEMPT:
            assert "429" in statuses, label
            assert "Retry-After" in op["responses"]["429"]["headers"], label


def test_request_bodies_have_types_limits_and_an_example():
    for path, method, op in operations():
        if "requestBody" not in op:
            continue
        media = op["requestBody"]["content"]["application/json"]
        assert "example" in media, f"{method} {path}"
        schema = resolve(media["schema"])
        properties = schema.get("properties") or {
            k: v for branch in schema["anyOf"] for k, v in resolve(branch)["properties"].items()
        }
        for name, field in properties.items():
            assert "type" in field, f"{method} {path} {name}"
            if "string" in field["type"] and "enum" not in field:
                limited = "maxLength" in field or name in {"password", "current_password"}
                assert limited, f"{method} {path} {name} has no maxLength"


# ---------------------------------------------------------------------------
# The document says what the app does
# ---------------------------------------------------------------------------


def test_security_requirements_match_the_app(client, world):
    """Operations with bearerAuth (alone, or beside a gate device's key) refuse
    a request without a token; others do not."""
    for path, method, op in operations():
        response = call(client, method, path)
        if {"bearerAuth": []} in op["security"]:
            assert response.status_code == 401, f"{method} {path}"
            assert response.get_json() == {"error": "Missing Authorization Header"}
        else:
            assert op["security"] == [], f"{method} {path}"
            assert response.status_code != 401, f"{method} {path}"


def test_admin_operations_are_the_ones_that_refuse_drivers(client, world):
    admin_only = set()
    for path, method, _ in operations():
        response = call(client, method, path, world["driver"](), json={})
        if response.get_json() == {"error": "Admin privileges required"}:
            assert response.status_code == 403
            admin_only.add((path, method))
    documented = {
        (path, method) for path, method, op in operations() if op["summary"].endswith("(admin)")
    }

    assert admin_only == documented
    assert all("403" in build_openapi()["paths"][p][m]["responses"] for p, m in documented)


def test_list_operations_document_and_send_pagination_headers(client, world):
    lists = [
        (path, op)
        for path, method, op in operations()
        if method == "get"
        and "application/json" in op["responses"]["200"]["content"]
        and resolve(op["responses"]["200"]["content"]["application/json"]["schema"]).get("type")
        == "array"
    ]
    # The availability feed is every active lot in one answer: not paged.
    lists = [(path, op) for path, op in lists if path != "/api/availability"]
    assert {path for path, _ in lists} == {
        "/api/vehicles",
        "/api/parking-lots",
        "/api/spots",
        "/api/tickets",
        "/api/users",
        "/api/parking-lots/{lot_id}/staff",
        "/api/parking-lots/{lot_id}/devices",
        "/api/audit",
        "/api/permits",
        "/api/webhooks",
        "/api/webhooks/{webhook_id}/deliveries",
        "/api/reservations",
    }
    for path, op in lists:
        headers = op["responses"]["200"]["headers"]
        assert headers["Link"]["required"] and "X-Total-Count" in headers
        assert {"page", "per_page", "cursor"} <= {p["name"] for p in op["parameters"]}

        response = call(client, "get", path, world["admin"](), query_string={"per_page": 1})

        assert response.status_code == 200, path
        assert isinstance(response.get_json(), list)
        assert int(response.headers["X-Total-Count"]) >= 0
        assert 'rel="first"' in response.headers["Link"]


def body_limit_cases():
    """(path, method, field, value beyond the documented limit) for every body field."""
    for path, method, op in operations():
        if "requestBody" not in op:
            continue
        schema = resolve(op["requestBody"]["content"]["application/json"]["schema"])
        for name, field in schema.get("properties", {}).items():
            if "maxLength" in field:
                yield path, method, name, "x" * (field["maxLength"] + 1)
            if "maximum" in field:
                yield path, method, name, field["maximum"] + 1
            if "minimum" in field:
                yield path, method, name, field["minimum"] - 1


def test_documented_body_limits_are_enforced(client, world):
    """The document's example with one field just beyond its documented limit is a 400."""
    cases = list(body_limit_cases())
    assert len(cases) > 30
    for path, method, field, value in cases:
        op = build_openapi()["paths"][path][method]
        body = {**op["requestBody"]["content"]["application/json"]["example"], field: value}

        response = call(client, method, path, world["admin"](), json=body)

        assert response.status_code == 400, (method, path, field, response.get_json())
        assert response.get_json()["error"]


def test_bodies_that_are_not_json_or_too_large_get_the_documented_errors(client, world):
    for path, method, op in operations():
        if "requestBody" not in op:
            continue
        not_json = call(
            client, method, path, world["admin"](), data="name=x", content_type="text/plain"
        )
        too_large = call(
            client,
            method,
            path,
            world["admin"](),
            data=b"{" + b" " * (1024 * 1024) + b"}",
            content_type="application/json",
        )

        assert not_json.status_code == 400, (method, path, not_json.get_json())
        assert not_json.get_json() == {"error": "Content-Type must be application/json"}
        assert too_large.status_code == 413, (method, path)
        assert too_large.get_json() == {"error": "Request body too large (limit 1 MiB)"}


# ---------------------------------------------------------------------------
# Swagger UI at /api/docs, offline
# ---------------------------------------------------------------------------


def page_references(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_docs_page_loads_only_local_assets(client):
    response = client.get("/api/docs")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    references = page_references(html)
    assert {
        "/api/docs/swagger-ui.css",
        "/api/docs/swagger-ui-bundle.js",
        "/api/docs/swagger-ui-standalone-preset.js",
    } <= set(references)
    assert all(ref.startswith("/api/docs/") for ref in references), references
    # No CDN, no public validator badge: nothing leaves this server.
    assert "http://" not in html and "https://" not in html and '"//' not in html
    assert '"url": "/api/openapi.json"' in html
    assert '"validatorUrl": null' in html
    # The page is public and keeps the security headers; it is not framed by anyone.
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_docs_assets_are_served_from_the_pinned_package(client):
    html = client.get("/api/docs").get_data(as_text=True)
    for reference in page_references(html):
        filename = reference.rsplit("/", 1)[1]

        response = client.get(reference, buffered=True)

        assert response.status_code == 200, reference
        # nosniff is on: browsers run scripts and styles only with the right type.
        assert response.mimetype == DOCS_ASSETS[filename]
        with open(os.path.join(SWAGGER_UI_DIR, filename), "rb") as file:
            assert response.get_data() == file.read()


def test_docs_asset_enum_lists_every_served_file():
    op = build_openapi()["paths"]["/api/docs/{filename}"]["get"]
    assert op["parameters"][0]["schema"]["enum"] == sorted(DOCS_ASSETS)
    assert all(os.path.isfile(os.path.join(SWAGGER_UI_DIR, name)) for name in DOCS_ASSETS)


@pytest.mark.parametrize(
    "filename",
    ["LICENSE", "VERSION", "oauth2-redirect.html", "nope.js", "..%2Fapp.py", "%2e%2e%2fconfig.py"],
)
def test_docs_serves_no_other_file(client, filename):
    response = client.get(f"/api/docs/{filename}")

    assert response.status_code == 404
    assert response.get_json() == {"error": "Not found"}


def test_swagger_ui_is_pinned_and_renders_openapi_3_1():
    """Swagger UI renders OpenAPI 3.1 from version 5 on (4.x shows an error)."""
    with open(os.path.join(SWAGGER_UI_DIR, "VERSION")) as file:
        assert file.read().strip().startswith("v5.")
    with open(os.path.join(ROOT, "requirements.txt")) as file:
        pins = file.read()
    assert f"flask-swagger-ui=={version('flask-swagger-ui')}" in pins


def test_docs_page_points_at_the_served_document(client):
    html = client.get("/api/docs").get_data(as_text=True)
    spec_url = re.search(r'"url": "([^"]+)"', html).group(1)

    response = client.get(spec_url)

    assert response.status_code == 200
    assert response.get_json()["info"]["title"] == build_openapi()["info"]["title"]
