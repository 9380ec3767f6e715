"""The legacy face: mounted at `/api/v1` and at `/v1` (gateways that strip `/api`)."""

from __future__ import annotations

from flask import Blueprint, Flask

from app.legacy_api.http import legacy_error
from app.legacy_api.views import openapi, order_sets, orders, referrals
from app.web import access
from app.web.errors import register_face

bp = Blueprint("legacy_api", __name__)
# Referrals first: `/orders/referrals` must never be read as an order id.
bp.register_blueprint(referrals.bp)
bp.register_blueprint(orders.bp)
bp.register_blueprint(order_sets.bp)
bp.register_blueprint(openapi.bp)
access.install(bp, "api-v1")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp, url_prefix="/api/v1")
    app.register_blueprint(bp, url_prefix="/v1", name="legacy_v1")
    register_face(app, ("/api/v1", "/v1"), legacy_error)
