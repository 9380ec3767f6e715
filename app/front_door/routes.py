"""`/` and `/docs/…`: server-rendered pages, no token, no build step, no CDN.

Swagger UI's assets come from the `swagger-ui-bundle` package and are served from here, so
the interactive docs work on a network with no way out (a hospital's).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import orjson
import swagger_ui_bundle
from flask import Blueprint, Response, abort, render_template, send_from_directory, url_for

from app.front_door import documents
from app.runtime import get_runtime

bp = Blueprint("front_door", __name__, template_folder="templates")
SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)
OWN_STATIC = Path(__file__).parent / "static"
#: The Swagger UI files the docs page loads; nothing else of the package is served.
SWAGGER_ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})
ASSET_CACHE = 3600


def _version() -> str:
    try:
        return metadata.version("orders-service")
    except metadata.PackageNotFoundError:  # a source tree run without installing
        return "unknown"


def _page(template: str, **context: object) -> Response:
    html = render_template(
        f"front_door/{template}",
        version=_version(),
        dev_mode=get_runtime().settings.dev_mode,
        **context,
    )
    return Response(html, content_type="text/html; charset=utf-8")


@bp.get("/")
def index() -> Response:
    return _page(
        "index.html",
        links=[
            ("Interactive API docs (/api/v1)", url_for("front_door.api_docs"), "Try calls"),
            ("FHIR CapabilityStatement, as a table", url_for("front_door.fhir_docs"), ""),
            ("FHIR CapabilityStatement (JSON)", "/fhir/R4/metadata", "no token needed"),
            ("OpenAPI document of /api/v1", "/api/v1/openapi.json", "no token needed"),
            ("CDS Hooks discovery", "/cds-services", "token and X-Tenant-ID needed"),
            ("Liveness", "/healthz", ""),
            ("Readiness", "/readyz", ""),
        ],
    )


@bp.get("/docs/api")
def api_docs() -> Response:
    return _page("api_docs.html")


@bp.get("/docs/api/openapi.json")
def api_docs_openapi() -> Response:
    return Response(orjson.dumps(documents.docs_openapi()), content_type="application/json")


@bp.get("/docs/fhir")
def fhir_docs() -> Response:
    statement = documents.capability_statement()
    return _page(
        "fhir.html",
        statement=statement,
        rows=documents.capability_rows(),
        system=documents.system_interactions(),
    )


@bp.get("/docs/assets/<name>")
def asset(name: str) -> Response:
    if name in SWAGGER_ASSETS:
        resp = send_from_directory(SWAGGER_DIR, name, max_age=ASSET_CACHE)
    elif name in {"api-docs.js", "front-door.css"}:
        resp = send_from_directory(OWN_STATIC, name, max_age=ASSET_CACHE)
    else:
        abort(404)
    return resp
