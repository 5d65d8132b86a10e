"""Docs: /openapi.json, /docs, /docs/<filename> (public; content in openapi.py)."""

from flask import Response, current_app, request, url_for

import openapi
import schemas
from endpoints import endpoint
from ratelimit import limiter
from routes.common import api

# ===========================================================================
# Docs: /openapi.json, /docs, /docs/<filename> (public; content in openapi.py)
# ===========================================================================
# Exempt from rate limits like /test-db: static content, nothing to protect.


@api.route("/openapi.json", methods=["GET"])
@limiter.exempt
@endpoint(tag="Docs", summary="This OpenAPI document", response=schemas.OpenApiDocument)
def openapi_json():
    # "servers" is this host, so Swagger UI's "Try it out" calls the same server.
    return openapi.document_for(current_app, request.url_root)


@api.route("/docs", methods=["GET"])
@limiter.exempt
@endpoint(
    tag="Docs",
    summary="Interactive documentation (Swagger UI)",
    content={"text/html": "The HTML page"},
)
def docs():
    page = openapi.docs_page(
        url_for("api.openapi_json"), lambda name: url_for("api.docs_asset", filename=name)
    )
    return Response(page, mimetype="text/html")


@api.route("/docs/<filename>", methods=["GET"])
@limiter.exempt
@endpoint(
    tag="Docs",
    summary="A Swagger UI asset, served by the app (no CDN)",
    content=dict.fromkeys(sorted(set(openapi.DOCS_ASSETS.values())), "The file"),
    path={"filename": {"type": "string", "enum": sorted(openapi.DOCS_ASSETS)}},
    errors={404: "Not found"},
)
def docs_asset(filename):
    return openapi.send_docs_asset(filename)
