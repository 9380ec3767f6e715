"""Liveness and readiness probes for orchestrators and load balancers.

`/healthz` answers whether the process serves HTTP at all (no I/O, so a slow database
never gets a healthy process restarted). `/readyz` answers whether it can do useful work:
PostgreSQL is required, Redis is not — without Redis the service goes on and reports
itself "degraded" (DESIGN §5 "Faults"). Neither endpoint needs a token: probes carry none.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from app.runtime import get_runtime
from app.web import draining

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

_NO_STORE = {"Cache-Control": "no-store"}


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok"), 200, _NO_STORE


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    if draining.is_draining():  # shutting down: take this node out of rotation
        return jsonify(status="draining"), 503, {**_NO_STORE, "Retry-After": "5"}
    checks: dict[str, str] = {"database": _check_database(), "cache": _check_cache()}
    if checks["database"] != "ok":
        body: dict[str, Any] = {"status": "unavailable", "checks": checks}
        return jsonify(body), 503, {**_NO_STORE, "Retry-After": "5"}
    status = "degraded" if checks["cache"] == "unavailable" else "ready"
    return jsonify(status=status, checks=checks), 200, _NO_STORE


def _check_database() -> str:
    """SELECT 1 on a pooled connection; the engine's connect and pool timeouts (a few
    seconds) bound how long a dead database can hold the probe."""
    try:
        with get_runtime().engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready", never a 500
        log.warning("readiness: database unavailable (%s)", type(exc).__name__)
        return "unavailable"
    return "ok"


def _check_cache() -> str:
    cache = get_runtime().cache
    if cache.kind == "in-process":
        return "in-process"
    if cache.ping():
        return "ok"
    log.warning("readiness: cache unavailable; serving without the replay cache")
    return "unavailable"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
