"""schemas.py and @endpoint: one declaration validates, documents and checks.

The field helpers give the API's exact messages; a field added to a model
changes what the endpoint accepts and what the document says at once; in
TESTING mode an answer that strays from its declared model fails loudly;
every example the document shows is accepted by its own model.
"""

import logging

import pytest
from flask import Blueprint, Flask
from pydantic import ValidationError

import openapi
import schemas
from endpoints import USER, ResponseContractError, endpoint
from models import db
from validation import IdConverter, register_error_handlers

# ---------------------------------------------------------------------------
# A throwaway app: one blueprint, one declared endpoint
# ---------------------------------------------------------------------------


class Echo(schemas.Response):
    plate_number: str
    type: str | None
    colour: str | None = None


def make_app(body_model, answer=None, testing: bool = True) -> Flask:
    """POST /api/vehicles validates `body_model` and echoes it (or returns `answer`)."""
    app = Flask(__name__)
    app.config.update(TESTING=testing, SQLALCHEMY_DATABASE_URI="sqlite://")
    app.url_map.converters["int"] = IdConverter
    db.init_app(app)  # the error handler rolls the session back
    api = Blueprint("api", __name__)

    @api.route("/vehicles", methods=["POST"])
    @endpoint(
        tag="Vehicles",
        summary="Register a vehicle",
        body=body_model,
        response=(Echo, 201),
    )
    def create_vehicle(body):
        return (answer if answer is not None else body.model_dump()), 201

    app.register_blueprint(api, url_prefix="/api")
    register_error_handlers(app)
    return app


class VehicleWithColour(schemas.VehicleCreate):
    colour: schemas.Str(16, example="red", description="Paint colour")


def body_schema(app: Flask, model) -> tuple[dict, dict]:
    document = openapi.build_openapi(app)
    request_body = document["paths"]["/api/vehicles"]["post"]["requestBody"]
    media = request_body["content"]["application/json"]
    assert media["schema"] == {"$ref": f"#/components/schemas/{model.__name__}"}
    return document["components"]["schemas"][model.__name__], media["example"]


def test_a_new_body_field_changes_validation_and_the_document_together():
    before, after = make_app(schemas.VehicleCreate), make_app(VehicleWithColour)
    long_colour = {"plate_number": "kcb 1a", "colour": "x" * 17}

    # Without the field: unknown, ignored, undocumented.
    response = before.test_client().post("/api/vehicles", json=long_colour)
    assert response.status_code == 201
    assert response.get_json() == {"plate_number": "KCB 1A", "type": None}
    component, example = body_schema(before, schemas.VehicleCreate)
    assert "colour" not in component["properties"] and "colour" not in example

    # With it: validated with the house messages, and documented with its limit and example.
    client = after.test_client()
    response = client.post("/api/vehicles", json=long_colour)
    assert response.status_code == 400
    assert response.get_json() == {"error": "colour must be at most 16 characters"}
    response = client.post("/api/vehicles", json={"plate_number": "KCB 1A", "colour": 5})
    assert response.get_json() == {"error": "colour must be a string"}
    response = client.post("/api/vehicles", json={"plate_number": "KCB 1A", "colour": " red "})
    assert response.status_code == 201
    assert response.get_json() == {"plate_number": "KCB 1A", "type": None, "colour": "red"}

    component, example = body_schema(after, VehicleWithColour)
    assert component["properties"]["colour"] == {
        "type": ["string", "null"],
        "maxLength": 16,
        "description": "Paint colour",
        "examples": ["red"],
    }
    assert example == {"plate_number": "KCB 123A", "type": "SUV", "colour": "red"}
    assert component["required"] == ["plate_number"]


def test_in_testing_an_answer_outside_its_model_fails(caplog):
    extra_key = {"plate_number": "KCB 1A", "type": None, "owner": "someone"}
    app = make_app(schemas.VehicleCreate, answer=extra_key)

    with caplog.at_level(logging.ERROR):
        response = app.test_client().post("/api/vehicles", json={"plate_number": "KCB 1A"})

    assert response.status_code == 500
    assert response.get_json() == {"error": "Internal server error"}
    errors = [r.exc_info[0] for r in caplog.records if r.exc_info]
    assert errors == [ResponseContractError]
    assert "owner" in str(caplog.records[-1].exc_info[1])
    # Outside tests the answer goes out as the view built it (the check costs nothing).
    production = make_app(schemas.VehicleCreate, answer=extra_key, testing=False)
    response = production.test_client().post("/api/vehicles", json={"plate_number": "KCB 1A"})
    assert response.status_code == 201
    assert response.get_json() == extra_key


def test_a_path_id_without_a_description_stops_the_document():
    app = Flask(__name__)
    api = Blueprint("api", __name__)

    @api.route("/things/<int:thing_id>", methods=["GET"])
    @endpoint(tag="Things", summary="One thing", auth=USER, response=Echo)
    def get_thing(thing_id):
        raise AssertionError("never reached")

    app.register_blueprint(api, url_prefix="/api")

    # An `<int:...>` the contract does not describe is refused when the document is built.
    with pytest.raises(LookupError, match="thing_id"):
        openapi.build_openapi(app)


# ---------------------------------------------------------------------------
# Field helpers: the API's messages, in field order
# ---------------------------------------------------------------------------


class Sample(schemas.Body):
    name: schemas.Str(8, required=True)
    note: schemas.Str(4)
    count: schemas.Int(1, 5)
    kind: schemas.Choice(("a", "b"), default="a")


class SampleQuery(schemas.Query):
    n: schemas.QueryInt(0, 9)
    on: schemas.QueryBool(default=False)
    colour: schemas.QueryChoice(("red", "blue"))


def message(model, data) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return schemas.validation_error(caught.value, model).message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, "name is required"),
        ({"name": "   "}, "name is required"),
        ({"name": None}, "name is required"),
        ({"name": 7}, "name must be a string"),
        ({"name": "a\x00"}, "name must not contain NUL characters"),
        ({"name": "x" * 9}, "name must be at most 8 characters"),
        ({"name": "ok", "note": "12345"}, "note must be at most 4 characters"),
        ({"name": "ok", "count": True}, "count must be an integer"),
        ({"name": "ok", "count": 1.5}, "count must be an integer"),
        ({"name": "ok", "count": "2"}, "count must be an integer"),
        ({"name": "ok", "count": 6}, "count must be between 1 and 5"),
        ({"name": "ok", "kind": "c"}, "kind must be one of: a, b"),
        # The first invalid field in declaration order is the one reported.
        ({"name": 1, "count": "x", "kind": "c"}, "name must be a string"),
    ],
)
def test_body_fields_refuse_with_the_house_messages(data, expected):
    assert message(Sample, data) == expected


def test_body_fields_normalise_like_the_views_did():
    sample = Sample.model_validate(
        {"name": " ok ", "note": " ", "count": 3.0, "kind": " b ", "extra": 1}
    )
    assert sample.model_dump() == {"name": "ok", "note": None, "count": 3, "kind": "b"}
    assert Sample.model_validate({"name": "ok", "kind": None}).kind == "a"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"n": "1e3"}, "n must be an integer"),
        ({"n": "12345678901"}, "n must be an integer"),
        ({"n": "10"}, "n must be between 0 and 9"),
        ({"on": "maybe"}, "on must be true or false"),
        ({"colour": "Red"}, "colour must be one of: red, blue"),
    ],
)
def test_query_fields_refuse_with_the_house_messages(data, expected):
    assert message(SampleQuery, data) == expected


def test_empty_query_values_are_absent():
    query = SampleQuery.model_validate({"n": "", "on": "", "colour": ""})
    assert query.model_dump() == {"n": None, "on": False, "colour": None}
    assert SampleQuery.model_validate({"n": "-0", "on": "YES"}).model_dump() == {
        "n": 0,
        "on": True,
        "colour": None,
    }


# ---------------------------------------------------------------------------
# The document's examples are valid input
# ---------------------------------------------------------------------------


def test_every_documented_body_example_is_accepted_by_its_model(app):
    for rule in app.url_map.iter_rules():
        spec = getattr(app.view_functions[rule.endpoint], "endpoint", None)
        if spec is None or spec.body is None:
            continue
        path = openapi.RULE_ARGUMENT.sub(r"{\2}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = openapi.build_openapi(app)["paths"][path][method.lower()]
            example = operation["requestBody"]["content"]["application/json"]["example"]
            spec.body.model_validate(example)  # raises if the docs show an invalid body
