"""Topic-based subscriptions end to end (issue 14): real database, a real HTTP receiver on
loopback, the real delivery step (in process) or real `orders-service worker` processes."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app.domain.clock import utcnow
from app.domain.topics import load_topics
from tests.conftest import TokenFactory
from tests.fhir_data import allergy_intolerance, medication_request, service_request
from tests.orders import activate
from tests.receiver import Receiver, bundle_events, notification_type
from tests.subscriptions import (
    activated_orders,
    create_subscription,
    delivery,
    drain,
    new_patient,
    start_worker,
    status_of,
    subscription,
)


def settle(step: Any, steps: int = 10) -> None:
    """A few more delivery steps (whatever is due, in any tenant of the shared database)."""
    for _ in range(steps):
        if not step.run_once():
            return


def _active(client: FlaskClient, admin: dict[str, str], sid: str) -> bool:
    return client.get(f"/fhir/R4/Subscription/{sid}", headers=admin).json["status"] == "active"


def test_activating_an_order_delivers_one_notification_with_its_number_and_focus(
    app: Flask, client: FlaskClient, headers: TokenFactory
) -> None:
    admin, clin = headers("ADMIN"), headers("CLINICIAN")
    step = delivery(app)
    with Receiver() as rx:
        sub = create_subscription(client, admin, subscription(rx.url))
        assert sub["status"] == "requested"
        drain(step, lambda: _active(client, admin, sub["id"]))
        assert [notification_type(b) for b in rx.received] == ["handshake"]
        pid = new_patient(client, admin)
        (order_id,) = activated_orders(client, clin, pid, 1)
        drain(step, lambda: len(rx.of_type("event-notification")) == 1)
        settle(step)  # (other tests' subscriptions share the database: steps serve them too)
        assert len(rx.received) == 2, "one handshake, one notification, nothing else"
        (bundle,) = rx.of_type("event-notification")
        assert bundle["type"] == "history"
        assert bundle_events(bundle) == [(1, f"ServiceRequest/{order_id}")]
        assert bundle["entry"][1]["fullUrl"].endswith(f"ServiceRequest/{order_id}")
        assert "resource" not in bundle["entry"][1], "id-only carries no resource"
        assert rx.headers[-1]["Authorization"] == "Bearer s3cret-token"
    assert status_of(client, admin, sub["id"])["events-since-subscription-start"] == "1"


@pytest.mark.parametrize("backend_app", ["postgresql"], indirect=True)
def test_a_receiver_failing_three_times_then_recovering_gets_every_event_in_order(
    app: Flask, client: FlaskClient, headers: TokenFactory
) -> None:
    admin, clin = headers("ADMIN"), headers("CLINICIAN")
    step = delivery(app)
    with Receiver() as rx:
        sub = create_subscription(client, admin, subscription(rx.url, max_count=2))
        drain(step, lambda: _active(client, admin, sub["id"]))
        pid = new_patient(client, admin)
        orders = activated_orders(client, clin, pid, 5)
        with rx.lock:
            rx.fail_first = rx.calls + 3
        drain(step, lambda: len(rx.events()) >= 5)
        assert rx.calls - len(rx.received) == 3, "three refused deliveries"
        assert rx.events() == [(i + 1, f"ServiceRequest/{o}") for i, o in enumerate(orders)]
    assert _active(client, admin, sub["id"]), "three failures are below the error threshold"


def test_repeated_failures_make_the_subscription_error_and_success_makes_it_active(
    app: Flask, client: FlaskClient, headers: TokenFactory
) -> None:
    admin = headers("ADMIN")
    step = delivery(app)
    with Receiver(fail_first=5) as rx:
        sub = create_subscription(client, admin, subscription(rx.url))
        r = client.get(f"/fhir/R4/Subscription/{sub['id']}", headers=admin)
        drain(
            step,
            lambda: (
                client.get(f"/fhir/R4/Subscription/{sub['id']}", headers=admin).json["status"]
                == "error"
            ),
        )
        assert "HTTP 503" in str(status_of(client, admin, sub["id"]).get("error"))
        drain(step, lambda: _active(client, admin, sub["id"]))
        assert r.json["status"] == "requested"


def test_a_rolled_back_request_produces_no_event(
    app: Flask, client: FlaskClient, headers: TokenFactory
) -> None:
    """A hard-stop at signing rolls back the whole request (its new alert included): the
    outbox has no event for it, and neither has a create refused by decision support."""
    admin, clin = headers("ADMIN"), headers("CLINICIAN")
    subs = {
        topic: create_subscription(client, admin, subscription("http://127.0.0.1:9/x", topic))["id"]
        for topic in ("order-activated", "order-created")
    }
    pid = new_patient(client, admin)
    draft = client.post("/fhir/R4/MedicationRequest", json=medication_request(pid), headers=clin)
    assert draft.status_code == 201
    allergy = allergy_intolerance(
        pid,
        criticality="high",
        code={"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "723"}]},
    )
    assert (
        client.post("/fhir/R4/AllergyIntolerance", json=allergy, headers=admin).status_code == 201
    )
    r = client.post(
        f"/fhir/R4/MedicationRequest/{draft.json['id']}/$activate",
        headers={**clin, "If-Match": 'W/"1"'},
    )
    assert r.status_code == 422, r.json
    refused = client.post("/fhir/R4/MedicationRequest", json=medication_request(pid), headers=clin)
    assert refused.status_code == 422, refused.json
    stale = client.put(
        f"/fhir/R4/MedicationRequest/{draft.json['id']}",
        json={**draft.json, "status": "cancelled"},
        headers={**clin, "If-Match": 'W/"7"'},
    )
    assert stale.status_code in (409, 412), stale.json
    assert (
        status_of(client, admin, subs["order-activated"])["events-since-subscription-start"] == "0"
    )
    assert status_of(client, admin, subs["order-created"])["events-since-subscription-start"] == "1"
    events = client.get(
        f"/fhir/R4/Subscription/{subs['order-created']}/$events?eventsSinceNumber=1", headers=admin
    ).json
    assert bundle_events(events) == [
        (1, f"http://localhost/fhir/R4/MedicationRequest/{draft.json['id']}")
    ]


def test_tenant_a_subscription_never_sees_tenant_b_orders(
    app: Flask, client: FlaskClient, headers: TokenFactory, tenant: str
) -> None:
    other = tenant + "-b"
    admin_a, admin_b = headers("ADMIN"), headers("ADMIN", tenant_id=other)
    step = delivery(app)
    with Receiver() as rx_a, Receiver() as rx_b:
        sub_a = create_subscription(client, admin_a, subscription(rx_a.url))
        sub_b = create_subscription(client, admin_b, subscription(rx_b.url))
        pid_b = new_patient(client, admin_b)
        (order_b,) = activated_orders(client, headers("CLINICIAN", tenant_id=other), pid_b, 1)
        drain(step, lambda: len(rx_b.events()) == 1)
        settle(step)
        assert rx_a.events() == []
        assert rx_b.events() == [(1, f"ServiceRequest/{order_b}")]
    assert status_of(client, admin_a, sub_a["id"])["events-since-subscription-start"] == "0"
    assert client.get(f"/fhir/R4/Subscription/{sub_b['id']}", headers=admin_a).status_code == 404
    assert (
        client.get(f"/fhir/R4/Subscription/{sub_b['id']}/$status", headers=admin_a).status_code
        == 404
    )


@pytest.mark.parametrize("role", ["PATIENT", "NURSE", "CLINICIAN", "PRESCRIBER"])
def test_only_an_administrator_manages_subscriptions(
    client: FlaskClient, headers: TokenFactory, role: str
) -> None:
    sub = create_subscription(client, headers("ADMIN"), subscription("http://127.0.0.1:9/x"))
    who = headers(role, patient_id="p1") if role == "PATIENT" else headers(role)
    r = client.post("/fhir/R4/Subscription", json=subscription("http://127.0.0.1:9/x"), headers=who)
    assert r.status_code == 403, r.json
    assert client.get(f"/fhir/R4/Subscription/{sub['id']}", headers=who).status_code in (403, 404)
    assert client.get("/fhir/R4/Subscription", headers=who).status_code in (403, 200)
    if role != "PATIENT":
        assert client.get("/fhir/R4/Subscription", headers=who).status_code == 403


def test_headers_are_stored_but_shown_masked_and_kept_when_sent_back_masked(
    app: Flask, client: FlaskClient, headers: TokenFactory
) -> None:
    admin = headers("ADMIN")
    step = delivery(app)
    with Receiver() as rx:
        sub = create_subscription(client, admin, subscription(rx.url))
        assert sub["channel"]["header"] == ["Authorization: ***"]
        history = client.get(f"/fhir/R4/Subscription/{sub['id']}/_history", headers=admin).json
        assert "s3cret" not in str(history)
        assert "s3cret" not in str(client.get("/fhir/R4/Subscription", headers=admin).json)
        put = client.put(
            f"/fhir/R4/Subscription/{sub['id']}",
            json={
                **sub,
                "channel": {**sub["channel"], "header": ["Authorization: ***", "X-Lab: 7"]},
            },
            headers={**admin, "If-Match": 'W/"1"'},
        )
        assert put.status_code == 200, put.json
        assert put.json["channel"]["header"] == ["Authorization: ***", "X-Lab: ***"]
        drain(step, lambda: _active(client, admin, sub["id"]))
        assert rx.headers[-1]["Authorization"] == "Bearer s3cret-token"
        assert rx.headers[-1]["X-Lab"] == "7"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"criteria": "urn:orders-service:SubscriptionTopic/nope"}, "Subscription.criteria"),
        (
            {"channel": {"type": "websocket", "endpoint": "http://127.0.0.1:9/"}},
            "Subscription.channel.type",
        ),
        (
            {"channel": {"type": "rest-hook", "endpoint": "http://10.0.0.8/hook"}},
            "Subscription.channel.endpoint",
        ),
        (
            {"channel": {"type": "rest-hook", "endpoint": "https://evil.example/hook"}},
            "Subscription.channel.endpoint",
        ),
        (
            {
                "channel": {
                    "type": "rest-hook",
                    "endpoint": "http://127.0.0.1:9/",
                    "header": ["no colon"],
                }
            },
            "Subscription.channel.header",
        ),
        (
            {
                "_criteria": {
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria",
                            "valueString": "ServiceRequest?code=1",
                        }
                    ]
                }
            },
            "Subscription.criteria.extension",
        ),
        (
            {
                "_criteria": {
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria",
                            "valueString": "Task?patient=p1",
                        }
                    ]
                }
            },
            "Subscription.criteria.extension",
        ),
    ],
)
def test_a_bad_subscription_is_400_with_its_field_and_stores_nothing(
    client: FlaskClient, headers: TokenFactory, change: dict[str, Any], field: str
) -> None:
    admin = headers("ADMIN")
    r = client.post(
        "/fhir/R4/Subscription",
        json={**subscription("http://127.0.0.1:9/x"), **change},
        headers=admin,
    )
    assert r.status_code == 400, r.json
    assert field in str(r.json["issue"]), r.json
    assert client.get("/fhir/R4/Subscription", headers=admin).json["total"] == 0


def test_filters_narrow_the_topic_and_every_order_transition_has_its_topic(
    app: Flask, client: FlaskClient, headers: TokenFactory
) -> None:
    admin, clin = headers("ADMIN"), headers("CLINICIAN")
    pid, other = new_patient(client, admin), new_patient(client, admin)
    topics = [
        "order-created",
        "order-activated",
        "order-held",
        "order-resumed",
        "order-cancelled",
        "task-status-changed",
    ]
    subs = {
        t: create_subscription(
            client, admin, subscription("http://127.0.0.1:9/x", t, filters=(f"?patient={pid}",))
        )["id"]
        for t in topics
    }
    lab_only = create_subscription(
        client,
        admin,
        subscription(
            "http://127.0.0.1:9/x",
            "order-activated",
            filters=("ServiceRequest?category=http://snomed.info/sct|108252007",),
        ),
    )["id"]
    imaging_only = create_subscription(
        client,
        admin,
        subscription(
            "http://127.0.0.1:9/x",
            "order-activated",
            filters=("ServiceRequest?category=363679005",),
        ),
    )["id"]
    for p in (pid, other):
        r = client.post("/fhir/R4/ServiceRequest", json=service_request(p), headers=clin)
        order = activate(client, clin, r.json)
        for status in ("on-hold", "active", "revoked"):
            put = client.put(
                f"/fhir/R4/ServiceRequest/{order['id']}",
                json={k: v for k, v in {**order, "status": status}.items() if k != "meta"},
                headers={**clin, "If-Match": f'W/"{order["meta"]["versionId"]}"'},
            )
            assert put.status_code == 200, put.json
            order = put.json
    counts = {
        t: status_of(client, admin, s)["events-since-subscription-start"] for t, s in subs.items()
    }
    # task: created on activation, cancelled with the order
    assert counts == {t: "2" if t == "task-status-changed" else "1" for t in topics}, counts
    assert status_of(client, admin, lab_only)["events-since-subscription-start"] == "2"
    assert status_of(client, admin, imaging_only)["events-since-subscription-start"] == "0"


def test_full_resource_payload_carries_the_version_of_the_event(
    app: Flask, client: FlaskClient, headers: TokenFactory
) -> None:
    admin, clin = headers("ADMIN"), headers("CLINICIAN")
    step = delivery(app)
    with Receiver() as rx:
        sub = create_subscription(client, admin, subscription(rx.url, content="full-resource"))
        pid = new_patient(client, admin)
        (order_id,) = activated_orders(client, clin, pid, 1)
        drain(step, lambda: len(rx.events()) == 1)
        (bundle,) = rx.of_type("event-notification")
        focus = bundle["entry"][1]["resource"]
        assert (focus["id"], focus["status"]) == (order_id, "active")
    events = client.get(
        f"/fhir/R4/Subscription/{sub['id']}/$events?eventsSinceNumber=1&eventsUntilNumber=1",
        headers=admin,
    ).json
    assert events["entry"][1]["resource"]["status"] == "active"
    assert notification_type(events) == "query-event"


# ---------------------------------------------------------------- worker processes
def _numbers_never_gap(rx: Receiver) -> list[int]:
    """Every event-notification starts at most one past the highest number seen before."""
    highest, seen = 0, []
    for b in rx.of_type("event-notification"):
        numbers = [n for n, _ in bundle_events(b)]
        assert numbers == sorted(numbers) and numbers[0] <= highest + 1, (highest, numbers)
        highest = max(highest, numbers[-1])
        seen += numbers
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("backend_app", ["postgresql"], indirect=True)
def test_killing_the_worker_mid_batch_loses_nothing_and_repeats_at_most_one_batch(
    app: Flask, client: FlaskClient, headers: TokenFactory, tmp_path: Path
) -> None:
    admin, clin = headers("ADMIN"), headers("CLINICIAN")
    n, batch = 8, 2
    with Receiver(delay=0.3) as rx:
        sub = create_subscription(client, admin, subscription(rx.url, max_count=batch))
        pid = new_patient(client, admin)
        activated_orders(client, clin, pid, n)
        worker = start_worker(app, tmp_path / "worker.log")
        try:
            deadline = time.time() + 30
            while len(rx.of_type("event-notification")) < 2 and time.time() < deadline:
                time.sleep(0.02)
            os.kill(worker.pid, signal.SIGKILL)  # mid-POST: the receiver is still answering
            worker.wait(timeout=10)
            before = len(rx.events())
            worker = start_worker(app, tmp_path / "worker.log")
            rx.wait_for(n, timeout=40)
        finally:
            worker.terminate()
            worker.wait(timeout=15)
        seen = _numbers_never_gap(rx)
        assert set(seen) == set(range(1, n + 1)), (seen, (tmp_path / "worker.log").read_text())
        # the batch in flight when the worker died is sent again: at-least-once, one batch
        assert 1 <= len(seen) - n <= batch, f"repeats: {seen}"
        assert before >= 2
    assert status_of(client, admin, sub["id"])["status"] == "active"


@pytest.mark.slow
@pytest.mark.parametrize("backend_app", ["postgresql"], indirect=True)
def test_two_workers_in_parallel_never_send_an_event_twice(
    app: Flask, client: FlaskClient, headers: TokenFactory, tmp_path: Path
) -> None:
    admin, clin = headers("ADMIN"), headers("CLINICIAN")
    n = 6
    with Receiver(delay=0.02) as rx1, Receiver(delay=0.02) as rx2, Receiver(delay=0.02) as rx3:
        receivers = (rx1, rx2, rx3)
        for rx in receivers:
            create_subscription(client, admin, subscription(rx.url, max_count=1))
        pid = new_patient(client, admin)
        workers = [start_worker(app, tmp_path / f"w{i}.log") for i in range(2)]
        try:
            activated_orders(client, clin, pid, n)
            for rx in receivers:
                rx.wait_for(n, timeout=40)
            time.sleep(0.5)  # anything sent twice would arrive by now
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(timeout=15)
        for rx in receivers:
            assert [k for k, _ in rx.events()] == list(range(1, n + 1))
            assert len(rx.of_type("handshake")) == 1


def test_heartbeats_are_sent_when_nothing_happened_for_the_period(
    app: Flask, client: FlaskClient, headers: TokenFactory
) -> None:
    admin = headers("ADMIN")
    step = delivery(app)
    with Receiver() as rx:
        sub = create_subscription(client, admin, subscription(rx.url, heartbeat=10))
        drain(step, lambda: _active(client, admin, sub["id"]))
        settle(step)
        assert rx.of_type("heartbeat") == [], "no heartbeat before the period"
        later = delivery(app)
        later.clock = lambda: utcnow() + timedelta(seconds=11)
        drain(later, lambda: len(rx.of_type("heartbeat")) == 1)
        settle(later)
        (beat,) = rx.of_type("heartbeat")  # one per period
        assert bundle_events(beat) == []


def test_off_stops_counting_and_requested_starts_again_with_a_handshake(
    app: Flask, client: FlaskClient, headers: TokenFactory
) -> None:
    admin, clin = headers("ADMIN"), headers("CLINICIAN")
    step = delivery(app)
    with Receiver() as rx:
        sub = create_subscription(client, admin, subscription(rx.url))
        drain(step, lambda: _active(client, admin, sub["id"]))
        current = client.get(f"/fhir/R4/Subscription/{sub['id']}", headers=admin).json
        off = client.put(
            f"/fhir/R4/Subscription/{sub['id']}", json={**current, "status": "off"}, headers=admin
        )
        assert off.status_code == 200 and off.json["status"] == "off", off.json
        pid = new_patient(client, admin)
        activated_orders(client, clin, pid, 1)
        assert status_of(client, admin, sub["id"])["events-since-subscription-start"] == "0"
        settle(step)
        assert len(rx.received) == 1, "only the first handshake"
        bad = client.put(
            f"/fhir/R4/Subscription/{sub['id']}",
            json={**off.json, "status": "active"},
            headers=admin,
        )
        assert bad.status_code == 400, bad.json
        again = client.put(
            f"/fhir/R4/Subscription/{sub['id']}",
            json={**off.json, "status": "requested"},
            headers=admin,
        )
        assert again.json["status"] == "requested"
        (order,) = activated_orders(client, clin, pid, 1)
        drain(step, lambda: len(rx.events()) == 1)
        assert len(rx.of_type("handshake")) == 2
        assert rx.events() == [(1, f"ServiceRequest/{order}")]


def test_bad_operation_input_is_400_not_500(client: FlaskClient, headers: TokenFactory) -> None:
    admin = headers("ADMIN")
    sub = create_subscription(client, admin, subscription("http://127.0.0.1:9/x"))
    base = f"/fhir/R4/Subscription/{sub['id']}"
    assert client.get(f"{base}/$events?eventsSinceNumber=abc", headers=admin).status_code == 400
    assert client.get(f"{base}/$events?content=full-resource", headers=admin).status_code == 400
    assert client.delete(f"{base}/$status", headers=admin).status_code == 405
    assert client.get("/fhir/R4/Subscription/nope/$status", headers=admin).status_code == 404
    topics = client.get("/fhir/R4/SubscriptionTopic", headers=admin).json
    assert topics["total"] == 7
    assert {e["resource"]["resourceType"] for e in topics["entry"]} == {"Basic"}
    assert client.get("/fhir/R4/SubscriptionTopic/order-held", headers=admin).status_code == 200
    assert client.get("/fhir/R4/SubscriptionTopic/nope", headers=admin).status_code == 404
    assert client.post("/fhir/R4/SubscriptionTopic", json={}, headers=admin).status_code == 405


def test_the_capability_statement_advertises_every_topic_with_the_backport_extension(
    client: FlaskClient,
) -> None:
    cap = client.get("/fhir/R4/metadata").json
    entry = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Subscription")
    ext = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"
    assert {e["valueCanonical"] for e in entry["extension"] if e["url"] == ext} == set(
        load_topics()
    )
    assert {op["name"] for op in entry["operation"]} == {"status", "events"}


def test_concurrent_writers_get_consecutive_numbers_in_commit_order(
    client: FlaskClient, headers: TokenFactory, live_server: Any
) -> None:
    """Eight clients create and activate at once over real HTTP: the subscription's events
    are numbered 1..n without gaps or repeats, one per order, on each subscription."""
    admin, clin = headers("ADMIN"), headers("CLINICIAN")
    sub = create_subscription(client, admin, subscription("http://127.0.0.1:9/x", "order-created"))
    act = create_subscription(
        client, admin, subscription("http://127.0.0.1:9/x", "order-activated")
    )
    pid = new_patient(client, admin)

    def work(k: int) -> None:
        with requests.Session() as http:
            for j in range(3):
                body = service_request(
                    pid, code={"coding": [{"system": "urn:t", "code": f"{k}-{j}"}]}
                )
                r = http.post(f"{live_server.url}/fhir/R4/ServiceRequest", json=body, headers=clin)
                assert r.status_code == 201, r.text
                a = http.post(
                    f"{live_server.url}/fhir/R4/ServiceRequest/{r.json()['id']}/$activate",
                    headers={**clin, "If-Match": 'W/"1"'},
                )
                assert a.status_code == 200, a.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    for sid in (sub["id"], act["id"]):
        got = bundle_events(
            client.get(
                f"/fhir/R4/Subscription/{sid}/$events?eventsSinceNumber=1", headers=admin
            ).json
        )
        assert [n for n, _ in got] == list(range(1, 25))
        assert len({focus for _, focus in got}) == 24
