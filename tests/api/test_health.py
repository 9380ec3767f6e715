"""Health endpoints through the real application, on both backends."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.runtime import get_runtime


def test_healthz_needs_no_token(client: FlaskClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json == {"status": "ok"}


def test_readyz_reports_database_and_cache(app: Flask, client: FlaskClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.json
    assert r.json["status"] == "ready"
    assert r.json["checks"]["database"] == "ok"
    expected = "ok" if app.config["BACKEND"] == "postgresql" else "in-process"
    assert r.json["checks"]["cache"] == expected


def test_readyz_is_degraded_not_down_when_redis_is_unreachable(app: Flask, tmp_path: Path) -> None:
    """Redis is a cache, never a dependency of correctness (DESIGN §5 Faults)."""
    settings = replace(
        app.config["SETTINGS"], redis_url="redis://127.0.0.1:1/0", instance_path=tmp_path
    )
    degraded = create_app(settings)
    try:
        r = degraded.test_client().get("/readyz")
        assert r.status_code == 200, r.json
        assert r.json["status"] == "degraded"
        assert r.json["checks"] == {"database": "ok", "cache": "unavailable"}
    finally:
        with degraded.app_context():
            get_runtime().close()


def test_every_response_carries_a_request_id(client: FlaskClient) -> None:
    r = client.get("/fhir/R4/metadata", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    assert len(client.get("/healthz").headers["X-Request-ID"]) >= 16
