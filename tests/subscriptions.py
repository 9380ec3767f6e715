"""Builders for the subscription tests: a Subscription body, orders to activate, the
in-process delivery step and `orders-service worker` subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.runtime import get_runtime
from app.services.delivery import Delivery, Retry
from app.worker.http import HttpSender
from tests.fhir_data import patient, service_request
from tests.orders import activate

BP = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
TOPIC = "urn:orders-service:SubscriptionTopic/"


def subscription(
    endpoint: str,
    topic: str = "order-activated",
    *,
    filters: tuple[str, ...] = (),
    content: str = "id-only",
    headers: tuple[str, ...] = ("Authorization: Bearer s3cret-token",),
    max_count: int | None = None,
    heartbeat: int | None = None,
) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "type": "rest-hook",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": BP + "backport-payload-content", "valueCode": content}]},
    }
    if headers:
        channel["header"] = list(headers)
    ext = []
    if max_count:
        ext.append({"url": BP + "backport-max-count", "valuePositiveInt": max_count})
    if heartbeat:
        ext.append({"url": BP + "backport-heartbeat-period", "valueUnsignedInt": heartbeat})
    if ext:
        channel["extension"] = ext
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "fulfil orders",
        "criteria": TOPIC + topic,
        "channel": channel,
    }
    if filters:
        body["_criteria"] = {
            "extension": [
                {"url": BP + "backport-filter-criteria", "valueString": f} for f in filters
            ]
        }
    return body


def create_subscription(
    client: FlaskClient, admin: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    r = client.post("/fhir/R4/Subscription", json=body, headers=admin)
    assert r.status_code == 201, r.json
    created: dict[str, Any] = r.json
    return created


def new_patient(client: FlaskClient, admin: dict[str, str]) -> str:
    r = client.post("/fhir/R4/Patient", json=patient(), headers=admin)
    assert r.status_code == 201, r.json
    return str(r.json["id"])


def activated_orders(client: FlaskClient, clinician: dict[str, str], pid: str, n: int) -> list[str]:
    """n lab orders created and activated in turn; their ids, in activation order."""
    ids = []
    for i in range(n):
        body = service_request(
            pid, code={"coding": [{"system": "urn:t", "code": f"c{i}-{time.time_ns()}"}]}
        )
        r = client.post("/fhir/R4/ServiceRequest", json=body, headers=clinician)
        assert r.status_code == 201, r.json
        activate(client, clinician, r.json)
        ids.append(r.json["id"])
    return ids


def delivery(app: Flask, **retry: float) -> Delivery:
    with app.app_context():
        runtime = get_runtime()
        return Delivery(
            runtime.database,
            runtime.settings.endpoint_policy,
            HttpSender(),
            retry=Retry(**retry) if retry else Retry(base_seconds=0.01, max_seconds=0.05),
        )


def drain(step: Delivery, done: Callable[[], bool], timeout: float = 20.0) -> None:
    """Run delivery steps until `done()` (sleeping briefly while retries wait)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if done():
            return
        if not step.run_once():
            time.sleep(0.02)
    raise AssertionError("delivery did not finish in time")


def status_of(client: FlaskClient, admin: dict[str, str], sid: str) -> dict[str, Any]:
    r = client.get(f"/fhir/R4/Subscription/{sid}/$status", headers=admin)
    assert r.status_code == 200, r.json
    params = r.json["entry"][0]["resource"]["parameter"]
    return {
        p["name"]: next(v for k, v in p.items() if k.startswith("value"))
        for p in params
        if p["name"] != "notification-event"
    }


def start_worker(app: Flask, log: Path) -> subprocess.Popen[bytes]:
    """A real `orders-service worker` process on the test's database."""
    settings = app.config["SETTINGS"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OIDC_", "REDIS_URL"))}
    env.update(DATABASE_URL=settings.database_url, ORDERS_INSTANCE_PATH=str(settings.instance_path))
    code = "import sys; from app.cli import main; sys.argv = ['orders-service', 'worker', '--dev', '--poll', '0.05']; main()"
    with log.open("ab") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=err
        )
