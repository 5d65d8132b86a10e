"""Abuse limits: Flask-Limiter on login/register (per client IP and per e-mail),
the global default limit, ProxyFix's client IP, and login's equal work for
unknown e-mails and wrong passwords.

Every other test module runs with RATELIMIT_ENABLED=False (TestConfig). The
limiter is one module-level object that each create_app re-initialises, so
every limited app here is built inside its test, after the `app` fixture, and
gets fresh memory:// storage.
"""

import pytest
from sqlalchemy import func, select

import routes
from models import User, db

AUTH_LIMIT = 3


@pytest.fixture
def limited(app, app_factory):
    """An app with limits on: 3 per minute on login/register, storage in memory."""

    def build(**overrides):
        config = {
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_AUTH": f"{AUTH_LIMIT} per minute",
            "RATELIMIT_STORAGE_URI": "memory://",
            **overrides,
        }
        return app_factory(**config)

    return build


def from_ip(ip: str) -> dict:
    return {"X-Forwarded-For": ip}


def login(client, email, password="wrong-password", ip="203.0.113.1"):
    return client.post(
        "/api/login", json={"email": email, "password": password}, headers=from_ip(ip)
    )


def register(client, n, email=None, ip="203.0.113.1"):
    body = {
        "username": f"user{n}",
        "email": email or f"user{n}@example.com",
        "password": "password123",
    }
    return client.post("/api/register", json=body, headers=from_ip(ip))


def assert_429(response):
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.get_json() == {"error": "Too many requests"}
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= 60
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def user_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


# ---------------------------------------------------------------------------
# Login and register: per client IP
# ---------------------------------------------------------------------------


def test_login_is_limited_per_ip(limited, driver):
    client = limited().test_client()
    for n in range(AUTH_LIMIT):
        response = login(client, f"nobody{n}@example.com")
        assert response.status_code == 401
        assert response.get_json() == {"error": "Invalid email or password"}

    assert_429(login(client, "nobody-else@example.com"))
    # Right credentials do not get past the limit either.
    assert_429(login(client, driver["email"], driver["password"]))


def test_register_is_limited_per_ip(app, limited):
    client = limited().test_client()
    for n in range(AUTH_LIMIT):
        assert register(client, n).status_code == 201

    assert_429(register(client, 99))
    assert user_count(app) == AUTH_LIMIT


def test_clients_behind_the_proxy_have_separate_budgets(limited, driver):
    client = limited().test_client()
    for n in range(AUTH_LIMIT):
        login(client, f"nobody{n}@example.com", ip="203.0.113.1")
    assert_429(login(client, "nobody@example.com", ip="203.0.113.1"))

    other = login(client, driver["email"], driver["password"], ip="198.51.100.7")

    assert other.status_code == 200
    assert other.get_json()["user"]["id"] == driver["id"]


def test_only_the_last_forwarded_hop_is_trusted(limited):
    """ProxyFix with one hop: a client cannot pick its IP by sending its own X-Forwarded-For.

    Render appends the address it saw; what the client wrote before it is ignored.
    """
    client = limited().test_client()
    for n in range(AUTH_LIMIT):
        login(client, f"nobody{n}@example.com", ip=f"10.0.0.{n}, 203.0.113.1")

    assert_429(login(client, "nobody@example.com", ip="10.9.9.9, 203.0.113.1"))
    assert login(client, "nobody@example.com", ip="203.0.113.1, 10.9.9.9").status_code == 401


def test_without_a_proxy_header_the_socket_address_counts(limited):
    client = limited().test_client()
    for n in range(AUTH_LIMIT):
        response = client.post(
            "/api/login",
            json={"email": f"nobody{n}@example.com", "password": "x"},
            environ_base={"REMOTE_ADDR": "192.0.2.10"},
        )
        assert response.status_code == 401

    blocked = client.post(
        "/api/login",
        json={"email": "nobody@example.com", "password": "x"},
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
    )
    assert_429(blocked)


# ---------------------------------------------------------------------------
# Login and register: per account e-mail, whatever the IP
# ---------------------------------------------------------------------------


def test_login_is_limited_per_email_across_ips(limited, driver):
    client = limited().test_client()
    for n in range(AUTH_LIMIT):
        assert login(client, driver["email"], ip=f"198.51.100.{n}").status_code == 401

    # The same account, spelled differently, from yet another address.
    assert_429(login(client, "  DRIVER@Example.com ", driver["password"], ip="192.0.2.200"))
    # Another account from a fresh address is not affected.
    assert login(client, "other@example.com", ip="192.0.2.201").status_code == 401


def test_register_is_limited_per_email_across_ips(app, limited):
    client = limited().test_client()
    assert register(client, 0, email="taken@example.com", ip="198.51.100.1").status_code == 201
    for n in (1, 2):
        response = register(client, n, email="taken@example.com", ip=f"198.51.100.{n + 1}")
        assert response.status_code == 400
        assert response.get_json() == {"error": "Email already taken"}

    assert_429(register(client, 3, email="taken@example.com", ip="198.51.100.9"))
    assert user_count(app) == 1


def test_login_and_register_share_neither_ip_nor_email_budget_with_other_routes(limited, driver):
    """The auth limit applies to login and register only; /me keeps working."""
    application = limited()
    client = application.test_client()
    token = login(client, driver["email"], driver["password"], ip="203.0.113.5").get_json()["token"]
    for n in range(AUTH_LIMIT):
        login(client, f"nobody{n}@example.com", ip="203.0.113.5")

    me = client.get(
        "/api/me", headers={"Authorization": f"Bearer {token}", **from_ip("203.0.113.5")}
    )

    assert me.status_code == 200


# ---------------------------------------------------------------------------
# Password change: per account, so a stolen token cannot guess the password
# ---------------------------------------------------------------------------


def change_password(client, token, current, ip="203.0.113.1"):
    return client.patch(
        "/api/me/password",
        json={"current_password": current, "new_password": "new-password-456"},
        headers={"Authorization": f"Bearer {token}", **from_ip(ip)},
    )


def test_password_change_is_limited_per_account_across_ips(app, limited, driver, other_driver):
    client = limited().test_client()
    tokens = {}
    for user in (driver, other_driver):
        body = {"email": user["email"], "password": user["password"]}
        tokens[user["id"]] = client.post(
            "/api/login", json=body, headers=from_ip(f"192.0.2.{user['id']}")
        ).get_json()["token"]
    for n in range(AUTH_LIMIT):
        wrong = change_password(client, tokens[driver["id"]], f"guess-{n}", ip=f"198.51.100.{n}")
        assert wrong.status_code == 400
        assert wrong.get_json() == {"error": "Current password is incorrect"}

    # Even the right password is refused now, from anywhere.
    assert_429(change_password(client, tokens[driver["id"]], "password123", ip="198.51.100.99"))
    with app.app_context():
        assert db.session.get(User, driver["id"]).token_version == 0
    # Another account is not affected.
    other = change_password(client, tokens[other_driver["id"]], "password123", ip="198.51.100.0")
    assert other.status_code == 200


def test_password_change_limit_needs_a_valid_token_first(limited):
    client = limited().test_client()
    for _ in range(AUTH_LIMIT + 2):
        response = change_password(client, "not-a-token", "password123")
        assert response.status_code == 401


# ---------------------------------------------------------------------------
# The global default limit
# ---------------------------------------------------------------------------


def test_default_limit_applies_to_every_route(limited, lot):
    client = limited(RATELIMIT_DEFAULT="5 per minute").test_client()
    for _ in range(5):
        assert client.get("/api/spots", headers=from_ip("203.0.113.1")).status_code == 200

    assert_429(client.get("/api/spots", headers=from_ip("203.0.113.1")))
    assert_429(client.get("/api/spots?page=2", headers=from_ip("203.0.113.1")))
    # Counted per route (Flask-Limiter's default limits) and per client.
    assert client.get("/api/spots/1", headers=from_ip("203.0.113.1")).status_code == 200
    assert client.get("/api/spots", headers=from_ip("198.51.100.1")).status_code == 200


def test_health_check_is_exempt_from_the_default_limit(limited):
    client = limited(RATELIMIT_DEFAULT="2 per minute").test_client()
    for _ in range(5):
        assert client.get("/api/test-db").status_code == 200


def test_limit_headers_are_sent(limited, lot):
    response = limited(RATELIMIT_DEFAULT="5 per minute").test_client().get("/api/spots")

    assert response.headers["X-RateLimit-Limit"] == "5"
    assert response.headers["X-RateLimit-Remaining"] == "4"


# ---------------------------------------------------------------------------
# Switched off, and isolation between apps
# ---------------------------------------------------------------------------


def test_no_limits_when_disabled(app_factory, app, driver):
    client = app_factory(
        RATELIMIT_ENABLED=False, RATELIMIT_AUTH="1 per minute", RATELIMIT_DEFAULT="1 per minute"
    ).test_client()

    for _ in range(10):
        assert login(client, driver["email"]).status_code == 401
    for n in range(5):
        assert register(client, n).status_code == 201


def test_the_default_test_app_is_not_limited(client, driver):
    for _ in range(AUTH_LIMIT * 4):
        assert login(client, driver["email"]).status_code == 401


def test_each_limited_app_starts_with_a_fresh_budget(limited):
    first = limited().test_client()
    for n in range(AUTH_LIMIT):
        login(first, f"nobody{n}@example.com")
    assert_429(login(first, "nobody@example.com"))

    second = limited().test_client()

    assert login(second, "nobody@example.com").status_code == 401


def test_a_disabled_app_is_not_limited_while_a_limited_app_exists(client, limited, driver):
    """`client` (limits off) was built first; the limited app re-initialised the shared limiter."""
    limited_client = limited().test_client()
    for _ in range(15):  # more than RATELIMIT_AUTH of the unlimited app's config
        assert login(client, driver["email"]).status_code == 401

    # The limited app kept its own, untouched budget.
    for n in range(AUTH_LIMIT):
        assert login(limited_client, driver["email"], ip=f"192.0.2.{n}").status_code == 401
    assert_429(login(limited_client, driver["email"], ip="192.0.2.99"))


def test_a_disabled_app_built_later_is_not_limited(limited, app_factory, driver):
    limited_client = limited().test_client()
    for n in range(AUTH_LIMIT):
        login(limited_client, f"nobody{n}@example.com")
    assert_429(login(limited_client, "nobody@example.com"))

    unlimited = app_factory(RATELIMIT_ENABLED=False).test_client()

    for _ in range(AUTH_LIMIT * 2):
        assert login(unlimited, "nobody@example.com").status_code == 401


# ---------------------------------------------------------------------------
# Login: an unknown e-mail costs the same work as a wrong password
# ---------------------------------------------------------------------------


@pytest.fixture
def hash_checks(monkeypatch):
    """Record the hashes routes/accounts.py checks passwords against (the check still runs)."""
    seen = []
    real = routes.accounts.check_password_hash

    def spy(pwhash, password):
        seen.append(pwhash)
        return real(pwhash, password)

    monkeypatch.setattr(routes.accounts, "check_password_hash", spy)
    return seen


def method_of(pwhash: str) -> str:
    return pwhash.split("$", 1)[0]


def test_unknown_email_and_wrong_password_answer_identically(client, driver, hash_checks):
    wrong = client.post("/api/login", json={"email": driver["email"], "password": "not-it-123"})
    unknown = client.post(
        "/api/login", json={"email": "nobody@example.com", "password": "not-it-123"}
    )

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json() == {"error": "Invalid email or password"}
    assert sorted(wrong.headers.keys()) == sorted(unknown.headers.keys())
    # One real hash check each, with the same method and cost.
    assert len(hash_checks) == 2
    user_hash, dummy_hash = hash_checks
    assert method_of(dummy_hash) == method_of(user_hash)


def test_unknown_email_checks_a_dummy_hash_of_the_configured_method(app, app_factory, hash_checks):
    method = "pbkdf2:sha256:4321"
    application = app_factory(PASSWORD_HASH_METHOD=method)

    response = application.test_client().post(
        "/api/login", json={"email": "nobody@example.com", "password": "password123"}
    )

    assert response.status_code == 401
    assert response.get_json() == {"error": "Invalid email or password"}
    [checked] = hash_checks
    assert method_of(checked) == method
    assert routes.accounts._dummy_hashes[method] == checked


def test_password_matches_hashes_even_without_a_user(app, hash_checks):
    with app.app_context():
        assert routes.accounts.password_matches(None, "password123") is False
    assert len(hash_checks) == 1
    assert method_of(hash_checks[0]) == app.config["PASSWORD_HASH_METHOD"]


def test_an_unreachable_limit_store_does_not_take_the_api_down(limited):
    """Redis down: limits fall back to per-process memory instead of answering 500."""
    client = limited(RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0").test_client()
    statuses = [
        client.post(
            "/api/login", json={"email": "x@example.com", "password": "wrongpass1"}
        ).status_code
        for _ in range(3)
    ]
    assert statuses[0] == 401
    assert 500 not in statuses
    # The in-memory fallback still counts: the fourth try is refused.
    assert_429(client.post("/api/login", json={"email": "x@example.com", "password": "wrongpass1"}))


# ---------------------------------------------------------------------------
# make run (debug): generous login limits, so the README's examples never hit 429
# ---------------------------------------------------------------------------


def test_debug_mode_allows_100_logins_a_minute(app, monkeypatch):
    from app import create_app

    monkeypatch.setenv("FLASK_DEBUG", "1")
    debug = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "PASSWORD_HASH_METHOD": app.config["PASSWORD_HASH_METHOD"],
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    client = debug.test_client()
    try:
        assert debug.debug
        assert debug.config["RATELIMIT_AUTH"] == "100 per minute"
        statuses = {login(client, "nobody@example.com").status_code for _ in range(12)}
    finally:
        with debug.app_context():
            db.engine.dispose()

    assert statuses == {401}  # twelve tries: more than production's 10 a minute
