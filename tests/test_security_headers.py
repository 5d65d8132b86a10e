"""Security headers on every response, and CORS restricted to CORS_ORIGINS.

TestConfig allows the origin http://localhost:5173 (the SPA's dev server).
"""

import pytest

ALLOWED = "http://localhost:5173"
FOREIGN = "https://evil.example"
CORS_HEADERS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Headers",
    "Access-Control-Allow-Methods",
    "Access-Control-Expose-Headers",
    "Access-Control-Allow-Credentials",
)


def assert_security_headers(response):
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def header_list(response, name) -> set[str]:
    return {item.strip().lower() for item in response.headers.get(name, "").split(",") if item}


# ---------------------------------------------------------------------------
# Headers on every response
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", "/api/spots", 200),
        ("GET", "/api/test-db", 200),
        ("GET", "/api/me", 401),
        ("GET", "/api/no-such-route", 404),
        ("DELETE", "/api/spots", 405),
        ("POST", "/api/login", 400),
        ("GET", "/static/anything.js", 404),
        ("GET", "/", 404),
    ],
)
def test_every_response_carries_the_security_headers(client, lot, method, url, status):
    response = client.open(url, method=method, data="{", content_type="application/json")

    assert response.status_code == status
    assert response.is_json
    assert_security_headers(response)


def test_too_large_body_carries_the_security_headers(client):
    response = client.post("/api/login", data=b"x" * (1024 * 1024 + 1))

    assert response.status_code == 413
    assert_security_headers(response)


def test_authenticated_responses_are_not_cached(client, driver, auth_headers, lot):
    headers = auth_headers(driver)
    for url in ("/api/me", "/api/vehicles", "/api/tickets", "/api/parking-lots", "/api/spots"):
        response = client.get(url, headers=headers)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert_security_headers(response)


def test_authenticated_csv_download_is_not_cached(client, admin, auth_headers, lot):
    response = client.get(
        f"/api/parking-lots/{lot['id']}/report?from=2026-01-01&to=2026-01-02&format=csv",
        headers=auth_headers(admin),
    )

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Cache-Control"] == "no-store"


def test_token_responses_and_auth_errors_are_not_cached(client, driver):
    login = client.post("/api/login", json={"email": driver["email"], "password": "password123"})
    refused = client.get("/api/me", headers={"Authorization": "Bearer nonsense"})

    assert login.status_code == 200 and "token" in login.get_json()
    assert login.headers["Cache-Control"] == "no-store"
    assert refused.status_code == 401
    assert refused.headers["Cache-Control"] == "no-store"


# ---------------------------------------------------------------------------
# CORS
# ---------------------------------------------------------------------------


def preflight(client, url, origin, method="POST"):
    return client.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )


@pytest.mark.parametrize(
    ("url", "method"),
    [
        ("/api/vehicles", "POST"),
        ("/api/me", "GET"),
        ("/api/checkout/1", "PATCH"),
        ("/api/vehicles/1", "DELETE"),
    ],
)
def test_preflight_from_an_allowed_origin(client, url, method):
    response = preflight(client, url, ALLOWED, method)

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert {"authorization", "content-type"} <= header_list(
        response, "Access-Control-Allow-Headers"
    )
    assert method.lower() in header_list(response, "Access-Control-Allow-Methods")
    # Bearer tokens, not cookies: credentials are never allowed cross-origin.
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert_security_headers(response)


def test_real_request_from_an_allowed_origin_exposes_pagination_headers(client, lot):
    response = client.get("/api/spots", headers={"Origin": ALLOWED})

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    exposed = header_list(response, "Access-Control-Expose-Headers")
    assert {"x-total-count", "link", "retry-after"} <= exposed
    assert response.headers["X-Total-Count"] == "10"


def test_authenticated_request_from_an_allowed_origin(client, driver, auth_headers):
    response = client.get("/api/me", headers={"Origin": ALLOWED, **auth_headers(driver)})

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED


def test_error_responses_carry_cors_headers_for_an_allowed_origin(client):
    """The SPA must be able to read a 401's {"error": ...}."""
    response = client.get("/api/me", headers={"Origin": ALLOWED})

    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.parametrize(
    "origin",
    [FOREIGN, "http://localhost:5174", "http://localhost:5173.evil.example", "null"],
)
def test_other_origins_get_no_cors_headers(client, lot, origin):
    responses = [
        preflight(client, "/api/vehicles", origin),
        client.get("/api/spots", headers={"Origin": origin}),
    ]

    for response in responses:
        for name in CORS_HEADERS:
            assert name not in response.headers, (origin, name)
    # The request itself is still answered (CORS is enforced by the browser).
    assert responses[1].status_code == 200


def test_cors_origins_come_from_config(app, app_factory, lot):
    client = app_factory(CORS_ORIGINS=["https://parking.example.com"]).test_client()

    allowed = client.get("/api/spots", headers={"Origin": "https://parking.example.com"})
    default_dev = client.get("/api/spots", headers={"Origin": ALLOWED})

    assert allowed.headers["Access-Control-Allow-Origin"] == "https://parking.example.com"
    assert "Access-Control-Allow-Origin" not in default_dev.headers


def test_no_cors_origins_means_no_cross_origin_access(app, app_factory, lot):
    """Production's default (CORS_ORIGINS unset) lets no browser origin in."""
    client = app_factory(CORS_ORIGINS=[]).test_client()

    for origin in (ALLOWED, FOREIGN):
        assert "Access-Control-Allow-Origin" not in preflight(client, "/api/me", origin).headers
        response = client.get("/api/spots", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in response.headers
