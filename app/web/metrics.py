"""`GET /metrics`: Prometheus text exposition (app/metrics.py), protected by configuration.

Answered only to clients in `METRICS_ALLOW_NETWORKS` (default loopback) or bearing
`METRICS_TOKEN` (`Authorization: Bearer …`); anyone else gets 404, as if it did not exist.
Behind a reverse proxy every client appears as the proxy: see docs/operations.md.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable

from flask import Flask, Response, request

from app import metrics
from app.errors import RouteNotFound
from app.settings import Settings


def _allowed(settings: Settings) -> bool:
    token = settings.metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in net for net in settings.metrics_networks)


def init_app(
    app: Flask,
    ping_cache: Callable[[], bool] | None,
    outbox_backlog: Callable[[], tuple[int, float] | None] | None = None,
) -> None:
    settings: Settings = app.config["SETTINGS"]

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        if not _allowed(settings):
            raise RouteNotFound("No such endpoint")  # not even its existence is disclosed
        if ping_cache is not None:
            metrics.set_redis_up(ping_cache())
        backlog = outbox_backlog() if outbox_backlog is not None else None
        if backlog is not None:
            metrics.set_outbox(*backlog)
        body, media_type = metrics.scrape()
        return Response(body, content_type=media_type, headers={"Cache-Control": "no-store"})
