"""Application factory (flask tutorial pattern): every extension is built here, and the
error handling every face registers its renderer with (app/web/errors.py)."""

from __future__ import annotations

import logging

from flask import Flask

from app import health, observability
from app.cds_hooks import routes as cds_hooks_routes
from app.fhir import routes as fhir_routes
from app.front_door import routes as front_door
from app.legacy_api import routes as legacy_routes
from app.runtime import Runtime
from app.services import outbox
from app.settings import DEV_MODE_WARNING, Settings
from app.web import errors, headers
from app.web import metrics as metrics_endpoint

log = logging.getLogger("app")


def create_app(settings: Settings | None = None) -> Flask:
    if settings is None:
        # The WSGI entry point (wsgi.py, gunicorn workers): development mode must be asked for.
        settings = Settings.from_env()
        settings.check_dev_mode_opt_in()
    if settings.dev_mode:
        log.warning(DEV_MODE_WARNING)
    app = Flask("app", instance_path=str(settings.instance_path.resolve()))
    app.config["SETTINGS"] = settings
    if settings.trusted_hosts:
        # Flask 3.1: a request naming another Host is 400 before any view runs.
        app.config["TRUSTED_HOSTS"] = list(settings.trusted_hosts)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider attribute
    observability.init_app(app)
    runtime = Runtime.build(settings)
    app.extensions["orders"] = runtime
    metrics_endpoint.init_app(
        app,
        runtime.cache.ping if settings.redis_url else None,
        lambda: outbox.backlog(runtime.database),
    )
    errors.init_app(app, max_body_bytes=settings.max_body_bytes)
    health.init_app(app)
    fhir_routes.init_app(app)
    cds_hooks_routes.init_app(app)
    legacy_routes.init_app(app)
    headers.init_app(app)
    app.register_blueprint(front_door.bp)
    return app
