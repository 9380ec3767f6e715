"""Orders service: a FHIR R4-native clinical orders server."""

from __future__ import annotations

from flask import Flask

from app.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Application factory (flask tutorial pattern): every extension is built here."""
    from app import health, http_errors, observability
    from app.cds import routes as cds_routes
    from app.fhir import routes as fhir_routes
    from app.legacy_api import routes as legacy_routes
    from app.runtime import Runtime

    settings = settings or Settings.from_env()
    app = Flask(__name__, instance_path=str(settings.instance_path.resolve()))
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider attribute
    observability.init_app(app)
    app.extensions["orders"] = Runtime.build(settings)
    health.init_app(app)
    fhir_routes.init_app(app)
    cds_routes.init_app(app)
    legacy_routes.init_app(app)
    http_errors.init_app(app)
    return app
