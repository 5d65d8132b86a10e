"""The OpenAPI 3.1 document of the app, served at /api/openapi.json, and the docs page.

Nothing here describes an endpoint: `build_openapi(app)` walks `app.url_map`
and reads each view's `@endpoint` declaration (endpoints.py) and the pydantic
models it names (schemas.py). Components are the models' JSON Schemas (OpenAPI
3.1 is JSON Schema 2020-12); the errors every endpoint of a kind can answer are
added here (400 with input, 413 with a body, 401/403 from its auth, 429 unless
Flask-Limiter exempts the route). The document is built once per app; the view
adds `servers` per request so Swagger UI's "Try it out" calls the server that
served the page. tests/test_openapi.py checks the document against the app,
tests/test_fuzz.py fuzzes every operation against it.
"""

import json
import os
import re
from collections.abc import Callable
from typing import Any, get_args, get_origin

import flask_swagger_ui
from flask import Flask, Response, send_from_directory
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from pydantic_core import core_schema

import idempotency
from endpoints import Endpoint
from ratelimit import limiter
from schemas import PATH_ID_SCHEMA, PATH_IDS, Error
from validation import SHORT_MESSAGES, ApiError

# Swagger UI 5 (OpenAPI 3.1 support) as shipped, pinned, by the flask-swagger-ui
# package; /api/docs/<filename> serves these files so the page needs no CDN.
SWAGGER_UI_DIR = os.path.join(os.path.dirname(flask_swagger_ui.__file__), "dist")
DOCS_ASSETS = {
    "swagger-ui.css": "text/css",
    "index.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
REF = "#/components/schemas/{model}"
METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE")
ERRORS = {
    400: "Invalid input; `error` says which field and why",
    413: SHORT_MESSAGES[413],
    429: "Too many requests (rate limit); retry after `Retry-After` seconds",
    503: "Database unavailable, retry shortly: nothing was written; retry after `Retry-After`",
}
# Operations that never touch the database (and so never answer 503).
NO_DATABASE_TAGS = frozenset({"Docs"})
PAGINATION_HEADERS = {
    "X-Total-Count": {
        "description": (
            "Number of items across all pages; left out when it cannot be counted cheaply "
            "(more than 10,000 items in a list the database keeps no counter for)"
        ),
        "required": False,
        "schema": {"type": "integer", "minimum": 0},
    },
    "Link": {
        "description": (
            'RFC 8288 links: rel="first", "prev", "next", "last"; "next" carries a `cursor` '
            '(keyset: as fast on page 100,000 as on page 2), "last" only with a total'
        ),
        "required": True,
        "schema": {"type": "string"},
    },
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 0},
    }
}
TAG_DESCRIPTIONS = {"Docs": "This document and its interactive viewer"}


class ApiJsonSchema(GenerateJsonSchema):
    """pydantic's JSON Schema, trimmed for the document: no per-field titles, no
    `default: null` (absent is absent), and a union picked by a callable reads
    `anyOf` (a body may match both branches; the app picks the first)."""

    def field_title_should_be_set(self, schema) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> dict:
        json_schema = super().default_schema(schema)
        if json_schema.get("default", ...) is None:
            json_schema.pop("default")
        return json_schema

    def tagged_union_schema(self, schema: core_schema.TaggedUnionSchema) -> dict:
        json_schema = super().tagged_union_schema(schema)
        if "oneOf" in json_schema and callable(schema.get("discriminator")):
            json_schema["anyOf"] = json_schema.pop("oneOf")
        return json_schema


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models named by a response annotation (a model or list[model])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models(arg)]


def _schema_ref(annotation: Any) -> dict:
    if get_origin(annotation) is list:
        return {"type": "array", "items": _schema_ref(get_args(annotation)[0])}
    return {"$ref": REF.format(model=annotation.__name__)}


def _json(schema: dict, example: Any = None) -> dict:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _error(described: str | tuple) -> dict:
    """An error answer: a description (the body is `Error`), or (model, description)
    for an error that carries more than its message (e.g. a 402's balance)."""
    model, description = described if isinstance(described, tuple) else (Error, described)
    return {"description": description, "content": _json(_schema_ref(model))}


def _body_example(component: dict) -> dict:
    """The model's own example, or one assembled from its fields' examples."""
    if component.get("examples"):
        return component["examples"][0]
    return {
        name: field["examples"][0]
        for name, field in component.get("properties", {}).items()
        if field.get("examples")
    }


def _accepts_empty(model: type[BaseModel]) -> bool:
    try:
        model.model_validate({})
    except ValueError:
        return False
    return True


def _query_parameters(model: type[BaseModel]) -> list[dict]:
    schema = model.model_json_schema(ref_template=REF, schema_generator=ApiJsonSchema)
    required = set(schema.get("required", ()))
    parameters = []
    for name, field in schema["properties"].items():
        field = dict(field)
        parameter = {"name": name, "in": "query", "required": name in required}
        if "description" in field:
            parameter["description"] = field.pop("description")
        if not parameter["required"]:
            parameter["allowEmptyValue"] = True  # `?page=` is the same as no `page`
        parameter["schema"] = field
        parameters.append(parameter)
    return parameters


DESCRIPTION = """\
REST API for parking lots: drivers register, add vehicles, book a spot (a ticket)
and check out with a receipt; operators (admins) manage lots, spots and tariffs and
read reports.

* **Auth**: `POST /api/login` (or `/api/register`) returns `token`; click
  **Authorize** and paste it. Access tokens are short-lived; renew them with
  `POST /api/token/refresh` using the `refresh_token`.
* **Errors**: every error is JSON `{"error": "<message>"}` with a 4xx status.
* **Lists** are JSON arrays, paged with `page` and `per_page` (default 100,
  max 1000); the total is in `X-Total-Count` and the pages in `Link`.
* **Money**: integers in the currency's minor unit (20000 = KES 200.00).
* **Rate limits**: login and register per IP and per e-mail, a generous default
  elsewhere; over the limit answers 429 with `Retry-After`.
"""


# `<int:lot_id>`, `<filename>`, `<string(length=2):code>`: converter and name, in order.
RULE_ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def _path_parameters(rule: str, spec: Endpoint) -> list[dict]:
    parameters = []
    for converter, name in RULE_ARGUMENT.findall(rule):
        if name in spec.path:
            parameters.append(
                {"name": name, "in": "path", "required": True, "schema": spec.path[name]}
            )
        elif converter == "int" and name in PATH_IDS:
            parameters.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "description": PATH_IDS[name],
                    "schema": PATH_ID_SCHEMA,
                    "example": 1,
                }
            )
        else:
            raise LookupError(
                f"<{name}> in {rule}: describe ids in schemas.PATH_IDS, others with "
                "@endpoint(path=...)"
            )
    return parameters


def _rate_limited(app: Flask, endpoint: str, blueprint: str | None) -> bool:
    """Whether the limiter counts requests to the route (it is not exempt), whether
    or not this app switched limits off (RATELIMIT_ENABLED, as in tests)."""
    return not limiter.limit_manager.exemption_scope(app, endpoint, blueprint)


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def _success(spec: Endpoint) -> dict:
    if spec.paginated:
        description = "A JSON array; pagination in the `X-Total-Count` and `Link` headers"
    else:
        description = "Created" if spec.status == 201 else "Success"
    content = _json(_schema_ref(spec.response)) if spec.response is not None else {}
    for media_type in spec.content:
        content[media_type] = {"schema": {"type": "string"}}
    texts = list(dict.fromkeys(spec.content.values()))  # each once, in order
    if texts:
        description = "; ".join(texts if spec.response is None else [description, *texts])
    success: dict[str, Any] = {"description": description, "content": content}
    if spec.paginated:
        success["headers"] = PAGINATION_HEADERS
    return success


IDEMPOTENCY_KEY = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "description": "Any 1-255 printable ASCII characters, e.g. a UUID: a retry with the same "
    "key gets the first answer again (`Idempotent-Replayed: true`), and nothing is done twice. "
    "Kept 24 hours per caller.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}
IDEMPOTENCY_ERRORS = {
    400: idempotency.INVALID_KEY,
    409: f"{idempotency.IN_PROGRESS} (Idempotency-Key)",
    422: idempotency.REUSED,
}


def _errors(app: Flask, rule, spec: Endpoint, keyed: bool = False) -> dict:
    statuses: dict[int, str | tuple] = {}
    if spec.body is not None or spec.query is not None:
        statuses[400] = ERRORS[400]
    if spec.auth is not None:
        statuses.update(spec.auth.errors())
    if spec.body is not None:
        statuses[413] = ERRORS[413]
    if _rate_limited(app, rule.endpoint, rule.endpoint.rpartition(".")[0] or None):
        statuses[429] = ERRORS[429]
    if spec.tag not in NO_DATABASE_TAGS:
        statuses[503] = ERRORS[503]
    statuses.update(spec.errors)
    if keyed:  # the Idempotency-Key's own answers, beside the view's
        for status, text in IDEMPOTENCY_ERRORS.items():
            if status not in statuses:
                statuses[status] = text
            elif isinstance(statuses[status], tuple):
                model, description = statuses[status]
                statuses[status] = (model, f"{description}; or {text}")
            else:
                statuses[status] = f"{statuses[status]}; or {text}"
    responses = {}
    for status in sorted(statuses):
        responses[str(status)] = _error(statuses[status])
        if status in (429, 503):
            responses[str(status)]["headers"] = RETRY_AFTER
    return responses


def _operation(app: Flask, rule, method: str, spec: Endpoint, components: dict) -> dict:
    operation: dict[str, Any] = {
        "tags": [spec.tag],
        "summary": spec.summary,
        "operationId": _camel(spec.name),
    }
    if spec.description:
        operation["description"] = spec.description
    parameters = _path_parameters(rule.rule, spec)
    if spec.query is not None:
        parameters += _query_parameters(spec.query)
    keyed = method in idempotency.WRITE_METHODS and spec.takes_idempotency_key
    if keyed:
        parameters.append(IDEMPOTENCY_KEY)
    if parameters:
        operation["parameters"] = parameters
    if spec.body is not None:
        component = components[spec.body.__name__]
        operation["requestBody"] = {
            "required": not _accepts_empty(spec.body),
            "content": _json(_schema_ref(spec.body), _body_example(component)),
        }
    successes = {str(spec.status): _success(spec)}
    for status, (model, description) in spec.also.items():
        successes[str(status)] = {"description": description, "content": _json(_schema_ref(model))}
    operation["responses"] = {**successes, **_errors(app, rule, spec, keyed)}
    operation["security"] = spec.auth.security() if spec.auth is not None else []
    return operation


def _declarations(app: Flask):
    """(rule, method, declaration) for every route but Flask's /static."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        spec = getattr(app.view_functions[rule.endpoint], "endpoint", None)
        if not isinstance(spec, Endpoint):
            raise LookupError(f"{rule.rule}: the view has no @endpoint declaration")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}, key=METHOD_ORDER.index):
            yield rule, method, spec


def _build(app: Flask) -> dict:
    declarations = list(_declarations(app))
    models: dict[type[BaseModel], None] = {}  # ordered set
    for _rule, _method, spec in declarations:
        also = (model for model, _ in spec.also.values())
        error_models = (e[0] for e in spec.errors.values() if isinstance(e, tuple))
        for model in (spec.body, *_models(spec.response), *also, *error_models):
            if model is not None:
                models[model] = None
    models[Error] = None
    _, schemas = models_json_schema(
        [(model, "validation") for model in models],
        ref_template=REF,
        schema_generator=ApiJsonSchema,
    )
    components = schemas["$defs"]
    paths: dict[str, dict] = {}
    tags: dict[str, None] = {}
    security_schemes = {}
    for rule, method, spec in declarations:
        path = RULE_ARGUMENT.sub(r"{\2}", rule.rule)
        paths.setdefault(path, {})[method.lower()] = _operation(app, rule, method, spec, components)
        tags[spec.tag] = None
        if spec.auth is not None:
            security_schemes.update(spec.auth.security_schemes())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Parking Lot API", "version": "1.0.0", "description": DESCRIPTION},
        "tags": [
            {
                "name": tag,
                **({"description": TAG_DESCRIPTIONS[tag]} if tag in TAG_DESCRIPTIONS else {}),
            }
            for tag in tags
        ],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": security_schemes},
    }


def build_openapi(app: Flask) -> dict:
    """The app's OpenAPI 3.1 document (without `servers`), built once per app."""
    document = app.extensions.get("openapi")
    if document is None:
        document = app.extensions["openapi"] = _build(app)
    return document


def document_for(app: Flask, server_url: str) -> dict:
    """The document with `servers` pointing at the server that was asked for it."""
    document = build_openapi(app)
    return {
        "openapi": document["openapi"],
        "info": document["info"],
        "servers": [{"url": server_url.rstrip("/") or "/", "description": "This server"}],
        **document,
    }


# ---------------------------------------------------------------------------
# Swagger UI page and assets
# ---------------------------------------------------------------------------

DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Parking Lot API docs</title>
  <link rel="stylesheet" href="{css}">
  <link rel="stylesheet" href="{index_css}">
  <link rel="icon" type="image/png" href="{icon32}" sizes="32x32">
  <link rel="icon" type="image/png" href="{icon16}" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{bundle}"></script>
  <script src="{preset}"></script>
  <script>
    window.onload = function () {{
      var config = {config};
      config.presets = [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset];
      config.plugins = [SwaggerUIBundle.plugins.DownloadUrl];
      window.ui = SwaggerUIBundle(config);
    }};
  </script>
</body>
</html>
"""


def docs_page(spec_url: str, asset_url: Callable[[str], str]) -> str:
    """The Swagger UI page; every asset comes from `asset_url(filename)`."""
    config = {
        "url": spec_url,
        "dom_id": "#swagger-ui",
        "layout": "StandaloneLayout",
        "deepLinking": True,
        # No call to the public validator service: the page works offline.
        "validatorUrl": None,
    }
    return DOCS_PAGE.format(
        css=asset_url("swagger-ui.css"),
        index_css=asset_url("index.css"),
        icon32=asset_url("favicon-32x32.png"),
        icon16=asset_url("favicon-16x16.png"),
        bundle=asset_url("swagger-ui-bundle.js"),
        preset=asset_url("swagger-ui-standalone-preset.js"),
        config=json.dumps(config),
    )


def send_docs_asset(filename: str) -> Response:
    """One of the listed Swagger UI files, or 404; nothing else in the folder is served."""
    if filename not in DOCS_ASSETS:
        raise ApiError(404, "Not found")
    return send_from_directory(SWAGGER_UI_DIR, filename, mimetype=DOCS_ASSETS[filename])
