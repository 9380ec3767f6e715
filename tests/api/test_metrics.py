"""`/metrics` in one process (issue 15 item 2); tests/integration/test_metrics_workers.py
scrapes two workers (gunicorn, granian). Labels carry route templates, never ids."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from app.runtime import get_runtime
from app.settings import Settings, parse_networks
from tests.conftest import TokenFactory
from tests.legacy_data import LegacyApi, lab


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return sum(
        v
        for (n, lab_items), v in samples(text).items()
        if n == name and set(labels.items()) <= set(lab_items)
    )


def test_requests_alerts_refusals_and_replays_are_counted_by_template(
    client: FlaskClient, headers: TokenFactory
) -> None:
    api = LegacyApi(client, headers)
    before = client.get("/metrics").get_data(as_text=True)
    pid, eid = api.admitted()
    order = api.created(lab(pid, eid, clientMutationId="m-1"))
    replay = api.create(lab(pid, eid, clientMutationId="m-1"))
    assert replay.headers.get("Idempotent-Replayed") == "true"
    duplicate = api.created(lab(pid, eid))  # same code, open order: a duplicate-order warning
    api.activated(order["orderId"])
    refused = api.activate(duplicate["orderId"], version=duplicate["version"])
    assert refused.status_code == 422
    client.get(f"/api/v1/orders/{order['orderId']}", headers=api.doc)
    after = client.get("/metrics").get_data(as_text=True)

    route = "/api/v1/orders/<order_id>"
    kw = {"face": "api-v1", "route": route, "method": "GET", "status": "200"}
    assert (
        value(after, "orders_http_requests_total", **kw)
        - value(before, "orders_http_requests_total", **kw)
        == 2
    ), "activated() reads the order once, then the explicit GET"
    assert value(after, "orders_http_request_duration_seconds_count", route=route) >= 1
    fhir_kw = {"face": "fhir", "route": "/fhir/R4/Patient", "status": "201"}
    assert value(after, "orders_http_requests_total", **fhir_kw) >= 1
    assert fhir_id_free(after, order["orderId"])
    assert value(after, "orders_idempotent_replays_total", source="cache") > value(
        before, "orders_idempotent_replays_total", source="cache"
    )
    assert value(after, "orders_activation_refusals_total", reason="CDS_WARNING_UNACKNOWLEDGED") > (
        value(before, "orders_activation_refusals_total", reason="CDS_WARNING_UNACKNOWLEDGED")
    )
    assert value(after, "orders_cds_alerts_total", hook="order-select", level="warning") > value(
        before, "orders_cds_alerts_total", hook="order-select", level="warning"
    )
    # the refused activation re-ran decision support at signing: counted under its own hook
    assert value(after, "orders_cds_alerts_total", hook="order-sign", level="warning") > value(
        before, "orders_cds_alerts_total", hook="order-sign", level="warning"
    )
    assert value(after, "orders_db_pool_in_use") >= 0


def fhir_id_free(text: str, legacy_order_id: str) -> bool:
    raw = legacy_order_id.split("_", 1)[1]
    return raw not in text and not re.search(r'route="[^"]*(ord|pat)[-_]0', text)


def test_metrics_are_refused_outside_the_allowed_networks_unless_the_token_is_given(
    app: Flask, tmp_path: object
) -> None:
    base: Settings = app.config["SETTINGS"]
    settings = Settings(
        instance_path=base.instance_path,
        database_url=base.database_url,
        redis_url=base.redis_url,
        metrics_token="s3cret-scrape",
        metrics_networks=parse_networks("10.0.0.0/8"),
        extra=base.extra,
    )
    guarded_app = create_app(settings)
    try:
        _check_guarded(guarded_app.test_client())
    finally:
        with guarded_app.app_context():
            get_runtime().close()


def _check_guarded(guarded: FlaskClient) -> None:
    assert guarded.get("/metrics").status_code == 404  # loopback is not 10/8
    wrong = guarded.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 404
    ok = guarded.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
    assert ok.status_code == 200
    assert "orders_http_requests_total" in ok.get_data(as_text=True)
    inside = guarded.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert inside.status_code == 200


def test_outbox_depth_and_delivery_lag_are_scraped(
    app: Flask, client: FlaskClient, headers: TokenFactory
) -> None:
    """Depth: events written but not delivered (every tenant); lag: commit to the
    receiver's 2xx, one observation per event delivered."""
    from tests.receiver import Receiver
    from tests.subscriptions import (
        activated_orders,
        create_subscription,
        delivery,
        drain,
        new_patient,
        status_of,
        subscription,
    )

    admin, clin = headers("ADMIN"), headers("CLINICIAN")
    step = delivery(app)
    depth, lag = (
        "orders_subscription_events_undelivered",
        "orders_subscription_delivery_lag_seconds",
    )
    with Receiver(delay=0.05) as rx:
        sub = create_subscription(client, admin, subscription(rx.url))
        drain(step, lambda: status_of(client, admin, sub["id"])["status"] == "active")
        before = client.get("/metrics").get_data(as_text=True)
        activated_orders(client, clin, new_patient(client, admin), 2)
        written = client.get("/metrics").get_data(as_text=True)
        assert value(written, depth) - value(before, depth) == 2
        assert value(written, "orders_subscription_oldest_undelivered_seconds") > 0
        drain(step, lambda: len(rx.events()) == 2)
        after = client.get("/metrics").get_data(as_text=True)
    assert value(after, depth) - value(before, depth) <= 0
    assert value(after, f"{lag}_count") - value(before, f"{lag}_count") == 2
    # each waited at least the receiver's 50 ms before its 2xx
    assert value(after, f"{lag}_sum") - value(before, f"{lag}_sum") >= 0.1
    assert value(after, f"{lag}_bucket", le="0.025") == value(before, f"{lag}_bucket", le="0.025")
