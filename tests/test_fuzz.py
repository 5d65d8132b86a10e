"""Property-based fuzzing of every operation with Schemathesis, in-process.

Schemathesis reads the OpenAPI document (openapi.py), generates valid and
invalid requests for every operation, sends them to the Flask app through its
WSGI interface, authenticated as a real admin, and checks each answer: never a
5xx, a documented status code and content type, a body and headers that match
the documented schema, a 401 when the token is left out or forged, and a 4xx
for every request that the document says is invalid (so the documented types,
limits and required fields are the ones the app enforces).

Each operation is one pytest test with its own freshly emptied database seeded
with a lot, vehicles and an open ticket, so ids like 1 hit real rows. Examples
run against the shared state of that test (a checkout closes ticket 1 for the
rest of the test). The run is bounded and repeatable: MAX_EXAMPLES generated
cases per operation plus Schemathesis' deterministic boundary ("coverage")
cases, derandomized.
"""

import pytest
import schemathesis
from flask_jwt_extended import create_access_token, create_refresh_token
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app import create_app
from config import TestConfig
from models import Ticket, User, db
from openapi import build_openapi

MAX_EXAMPLES = 25

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,
    negative_data_rejection,
]


class AppForwarder:
    """The schema's WSGI app: forwards every request, Schemathesis' own probes
    included, to the Flask app (and database) of the test that is running."""

    app = None

    def __call__(self, environ, start_response):
        body = self.app(environ, start_response)
        try:
            return [b"".join(body)]
        finally:
            if hasattr(body, "close"):
                body.close()  # as a WSGI server does: send_file's file is closed


forwarder = AppForwarder()
schema = schemathesis.openapi.from_dict(
    build_openapi(create_app(TestConfig)),
    config=SchemathesisConfig.from_dict(
        {
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "phases": {"stateful": {"enabled": False}},
        }
    ),
)
schema.app = forwarder


@pytest.fixture
def fuzz_world(app, admin, make_lot, make_vehicle, client, auth_headers):
    """Lot 1 (spots 1-10), admin vehicles 1 and 2, ticket 1: vehicle 2 parked on spot 2."""
    make_lot(spots=10)
    make_vehicle(admin, plate="KAA 001A")
    parked = make_vehicle(admin, plate="KAA 002B")
    response = client.post(
        "/api/tickets",
        json={"vehicle_id": parked["id"], "parking_spot_id": 2},
        headers=auth_headers(admin),
    )
    assert response.status_code == 201, response.get_json()
    with app.app_context():
        assert db.session.get(Ticket, response.get_json()["ticket_id"]).check_out is None
    forwarder.app = app
    yield admin
    forwarder.app = None


def fresh_token(app, user_id: int, refresh: bool = False) -> str:
    """A valid token for every example: earlier ones may have revoked theirs."""
    with app.app_context():
        user = db.session.get(User, user_id)
        claims = {"role": user.role, "ver": user.token_version}
        make = create_refresh_token if refresh else create_access_token
        return make(identity=str(user.id), additional_claims=claims)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    # State shared by the examples of one operation is intended (see the module docstring).
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_conforms_to_its_openapi_document(case, app, fuzz_world):
    refresh = case.operation.path == "/api/token/refresh"
    token = fresh_token(app, fuzz_world["id"], refresh=refresh)
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
