"""Events are staged un-numbered in the order's transaction and numbered after it commits
(issue 14's throughput fix, docs/events.md "Event numbers"): a writer in flight holds up
no other writer and no `$events` reader; a committed change gets the next number when it
becomes visible; a rolled-back one never had one (no gaps); a subscription another process
created is seen by this process's order writes within `INDEX_SECONDS`, and `off` at once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.domain.clock import utcnow
from app.runtime import get_runtime
from app.services.outbox import INDEX_SECONDS
from app.store import EventStore, NewEvent
from tests.conftest import TokenFactory
from tests.receiver import bundle_events
from tests.subscriptions import (
    TOPIC,
    activated_orders,
    create_subscription,
    new_patient,
    status_of,
    subscription,
)


def _events(client: FlaskClient, admin: dict[str, str], sid: str) -> list[tuple[int, str]]:
    r = client.get(f"/fhir/R4/Subscription/{sid}/$events?eventsSinceNumber=1", headers=admin)
    assert r.status_code == 200, r.json
    return [(n, focus.rsplit("/R4/", 1)[-1]) for n, focus in bundle_events(r.json)]


@pytest.mark.parametrize("backend_app", ["postgresql"], indirect=True)
@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_writer_in_flight_blocks_no_one_and_numbers_follow_commits_without_gaps(
    app: Flask, client: FlaskClient, headers: TokenFactory, tenant: str, outcome: str
) -> None:
    admin, clin = headers("ADMIN"), headers("CLINICIAN")
    sid = create_subscription(client, admin, subscription("http://127.0.0.1:9/x"))["id"]
    pid = new_patient(client, admin)
    (first,) = activated_orders(client, clin, pid, 1)
    with app.app_context():
        engine = get_runtime().database.engine
    with engine.connect() as held:
        tx = held.begin()
        # A change staged by a transaction that has not committed yet.
        event = NewEvent(TOPIC + "order-activated", "ServiceRequest", first, 1, utcnow())
        EventStore(held, tenant).stage([(sid, event)])
        with ThreadPoolExecutor(1) as pool:  # would wait forever behind a counter lock
            (second,) = pool.submit(activated_orders, client, clin, pid, 1).result(timeout=30)
            numbered = pool.submit(_events, client, admin, sid).result(timeout=30)
        assert numbered == [(1, f"ServiceRequest/{first}"), (2, f"ServiceRequest/{second}")]
        if outcome == "commit":
            tx.commit()
        else:
            tx.rollback()
    (third,) = activated_orders(client, clin, pid, 1)
    expected = [f"ServiceRequest/{x}" for x in (first, second)]
    expected += [f"ServiceRequest/{first}"] if outcome == "commit" else []
    expected.append(f"ServiceRequest/{third}")
    assert _events(client, admin, sid) == list(enumerate(expected, start=1))
    assert status_of(client, admin, sid)["events-since-subscription-start"] == str(len(expected))


def test_a_subscription_written_by_another_process_is_seen_within_the_cache_age_and_off_at_once(
    app: Flask, client: FlaskClient, headers: TokenFactory
) -> None:
    """`other` is a second app on the same database: its own pool and subscription cache,
    as another gunicorn worker would have."""
    admin, clin = headers("ADMIN"), headers("CLINICIAN")
    other = create_app(app.config["SETTINGS"])
    try:
        there = other.test_client()
        pid = new_patient(client, admin)
        activated_orders(there, clin, pid, 1)  # `other` now knows: no subscription here
        sub = create_subscription(client, admin, subscription("http://127.0.0.1:9/x"))
        time.sleep(INDEX_SECONDS + 0.2)
        (seen,) = activated_orders(there, clin, pid, 1)
        assert _events(client, admin, sub["id"]) == [(1, f"ServiceRequest/{seen}")]
        current: dict[str, Any] = client.get(
            f"/fhir/R4/Subscription/{sub['id']}", headers=admin
        ).json
        off = client.put(
            f"/fhir/R4/Subscription/{sub['id']}", json={**current, "status": "off"}, headers=admin
        )
        assert off.status_code == 200, off.json
        activated_orders(there, clin, pid, 1)  # `other` still lists it: the insert checks
        assert status_of(client, admin, sub["id"])["events-since-subscription-start"] == "1"
    finally:
        with other.app_context():
            get_runtime().close()
