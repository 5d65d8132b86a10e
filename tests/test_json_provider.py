"""Response bodies are encoded by orjson (app.FastJSONProvider) with the
stdlib encoder's output: anything orjson refuses falls back to it."""

import json
from datetime import UTC, datetime
from decimal import Decimal


def body(app, obj):
    with app.test_request_context():
        response = app.json.response(obj)
    assert response.mimetype == "application/json"
    raw = response.get_data()
    assert raw.endswith(b"\n")
    return raw, json.loads(raw)


def test_plain_bodies_are_compact_and_keep_key_order(app):
    obj = {"z": 1, "a": [1, 2, None, True], "name": "Kilimani Café", "n": {"b": 2, "a": 1}}
    raw, parsed = body(app, obj)
    assert parsed == obj
    # orjson's bytes: compact, insertion order, UTF-8 (the stdlib would escape the é).
    assert raw == '{"z":1,"a":[1,2,null,true],"name":"Kilimani Café","n":{"b":2,"a":1}}\n'.encode()


def test_what_orjson_refuses_falls_back_to_the_stdlib(app):
    huge = 2**70  # beyond 64 bits
    _, parsed = body(app, {"big": huge})
    assert parsed == {"big": huge}
    surrogate = "\ud800"  # a lone surrogate: not UTF-8
    raw, parsed = body(app, {"s": surrogate})
    assert raw == b'{"s":"\\ud800"}\n'
    assert parsed == {"s": surrogate}


def test_dates_and_decimals_go_through_flasks_default(app):
    when = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
    _, parsed = body(app, {"when": when, "amount": Decimal("12.50")})
    # Flask's default: HTTP dates and decimals as strings, as before orjson.
    assert parsed == {"when": "Thu, 15 Jan 2026 08:00:00 GMT", "amount": "12.50"}


def test_debug_mode_keeps_flasks_indented_output(app_factory):
    debug_app = app_factory(DEBUG=True)
    with debug_app.test_request_context():
        raw = debug_app.json.response({"a": 1}).get_data()
    assert raw == b'{\n  "a": 1\n}\n'
