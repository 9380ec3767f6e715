"""Defects found while reading the code for the layering work (issue 10, point 7): one
regression test each, on both backends where storage is involved."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event
from werkzeug.exceptions import BadRequest

from app import create_app
from app.auth.devkeys import mint_token
from app.migrate import upgrade
from app.runtime import get_runtime
from app.settings import Settings
from tests.clinical.ward import Ward
from tests.conftest import TokenFactory

BASE = "/fhir/R4"


def _versions(client: FlaskClient, headers: dict[str, str], rtype: str, rid: str) -> str:
    r = client.get(f"{BASE}/{rtype}/{rid}", headers=headers)
    assert r.status_code == 200, r.get_json()
    return str(r.get_json()["meta"]["versionId"])


def test_put_of_an_order_with_another_id_in_the_body_is_400_and_changes_nothing(
    ward: Ward,
) -> None:
    pid = ward.patient()
    order = ward.order(ward.lab(pid))
    body = {k: v for k, v in ward.read(order).items() if k != "meta"}
    before = _versions(ward.client, ward.doc, "ServiceRequest", order["id"])
    r = ward.client.put(
        f"{BASE}/ServiceRequest/{order['id']}",
        json={**body, "id": "someone-else", "priority": "stat"},
        headers={**ward.doc, "If-Match": f'W/"{before}"'},
    )
    assert r.status_code == 400, r.get_json()
    assert "does not match the URL id" in r.get_json()["issue"][0]["diagnostics"]
    assert _versions(ward.client, ward.doc, "ServiceRequest", order["id"]) == before


def test_put_of_a_task_with_another_id_in_the_body_is_400_and_changes_nothing(
    ward: Ward,
) -> None:
    pid = ward.patient()
    order = ward.order(ward.lab(pid))
    ward.ok(ward.activate(order))
    tasks = ward.client.get(f"{BASE}/Task?focus=ServiceRequest/{order['id']}", headers=ward.doc)
    task = tasks.get_json()["entry"][0]["resource"]
    body = {k: v for k, v in task.items() if k != "meta"}
    r = ward.client.put(
        f"{BASE}/Task/{task['id']}",
        json={**body, "id": "another-task", "status": "completed"},
        headers={**ward.doc, "If-Match": f'W/"{task["meta"]["versionId"]}"'},
    )
    assert r.status_code == 400, r.get_json()
    assert _versions(ward.client, ward.doc, "Task", task["id"]) == task["meta"]["versionId"]
    assert ward.read(order)["status"] == "active"  # the order was not completed


def test_a_framework_error_raised_inside_a_legacy_view_keeps_its_status(
    client: FlaskClient, headers: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A werkzeug BadRequest from inside a view is a 400 in the legacy shape, not a 500."""

    def broken_body() -> Any:
        raise BadRequest(
            "The browser (or proxy) sent a request that this server could not understand."
        )

    monkeypatch.setattr("app.legacy_api.views.orders.body", broken_body)
    r = client.post("/api/v1/orders", json={}, headers=headers("CLINICIAN"))
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("prefix", ["/api/v1/orders", "/fhir/R4/ServiceRequest"])
def test_413_names_the_configured_limit(tmp_path: Path, prefix: str) -> None:
    settings = Settings(
        instance_path=tmp_path, database_url=f"sqlite:///{tmp_path / 't.db'}", max_body_bytes=4096
    )
    app = create_app(settings)
    with app.app_context():
        upgrade(get_runtime().engine)
    token = mint_token(settings, roles=("CLINICIAN",), tenants=("t1",))
    r = app.test_client().post(
        prefix,
        data=b"{" + b" " * 5000 + b"}",
        headers={
            "Authorization": f"Bearer {token}",
            "X-Tenant-ID": "t1",
            "Content-Type": "application/json",
        },
    )
    assert r.status_code == 413
    text = r.get_data(as_text=True)
    assert "4 KiB" in text and "1 MiB" not in text
    with app.app_context():
        get_runtime().close()


def test_an_unknown_cds_service_is_cds_service_not_found(ward: Ward) -> None:
    body = {"hook": "order-select", "hookInstance": "x", "context": {}}
    r = ward.client.post("/cds-services/no-such-service", json=body, headers=ward.doc)
    assert r.status_code == 404
    assert r.get_json()["error"]["code"] == "CDS_SERVICE_NOT_FOUND"
    r = ward.client.post(
        "/cds-services/no-such-service/feedback", json={"feedback": []}, headers=ward.doc
    )
    assert r.status_code == 404
    assert r.get_json()["error"]["code"] == "CDS_SERVICE_NOT_FOUND"


def test_cds_discovery_touches_no_database(app: Flask, ward: Ward) -> None:
    """Discovery is static: it must not open a (write) transaction or run a statement."""
    engine = get_runtime_engine(app)
    seen: list[str] = []
    me = threading.get_ident()  # the test client serves the request on this thread; the
    # audit trail's background flush (another thread) may use the engine meanwhile

    def on_begin(conn: Any) -> None:
        if threading.get_ident() == me:
            seen.append("BEGIN")

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.get_ident() == me:
            seen.append(statement)

    event.listen(engine, "begin", on_begin)
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        r = ward.client.get("/cds-services", headers=ward.doc)
    finally:
        event.remove(engine, "begin", on_begin)
        event.remove(engine, "before_cursor_execute", on_execute)
    assert r.status_code == 200
    assert seen == []


def get_runtime_engine(app: Flask) -> Any:
    with app.app_context():
        return get_runtime().engine
