"""Idempotency and version races on /api/v1 against real PostgreSQL and Redis (DESIGN §5)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import requests
from flask import Flask

from app.auth.devkeys import mint_token
from tests.conftest import REDIS_TEST_URL, LiveServer

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"


@pytest.fixture
def server(pg_app: Flask) -> Iterator[LiveServer]:
    with LiveServer(pg_app) as live:
        yield live


def _headers(app: Flask, tenant: str, *roles: str) -> dict[str, str]:
    token = mint_token(app.config["SETTINGS"], roles=roles, tenants=(tenant,))
    return {"Authorization": f"Bearer {token}", "X-Tenant-ID": tenant}


def _race(fn: Any, n: int = 10) -> list[Any]:
    barrier = threading.Barrier(n)

    def go(i: int) -> Any:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


@pytest.fixture
def ward(pg_app: Flask, server: LiveServer, tenant: str) -> dict[str, Any]:
    admin = _headers(pg_app, tenant, "ADMIN")
    base = f"{server.url}/fhir/R4"
    requests.put(
        f"{base}/Patient/pat-01RACE",
        json={"resourceType": "Patient", "id": "pat-01RACE"},
        headers=admin,
        timeout=10,
    ).raise_for_status()
    requests.put(
        f"{base}/Encounter/enc-01RACE",
        headers=admin,
        timeout=10,
        json={
            "resourceType": "Encounter",
            "id": "enc-01RACE",
            "status": "in-progress",
            "class": {"code": "IMP"},
            "subject": {"reference": "Patient/pat-01RACE"},
        },
    ).raise_for_status()
    return {"doc": _headers(pg_app, tenant, "CLINICIAN"), "url": f"{server.url}/api/v1"}


def _lab(cmid: str) -> dict[str, Any]:
    return {
        "patientId": "pat_01RACE",
        "encounterId": "enc_01RACE",
        "orderType": "laboratory",
        "orderCode": {"system": "http://loinc.org", "code": "58410-2", "display": "CBC"},
        "labDetail": {"priority": "routine"},
        "clientMutationId": cmid,
    }


def _count(ward: dict[str, Any]) -> int:
    r = requests.get(f"{ward['url']}/orders?patientId=pat_01RACE", headers=ward["doc"], timeout=10)
    assert r.status_code == 200, r.text  # a flake once showed a body without "total"
    return int(r.json()["total"])


@pytest.mark.slow
def test_ten_identical_creates_with_one_client_mutation_id_make_one_order(
    ward: dict[str, Any],
) -> None:
    body = _lab("cmid-race-1")
    responses = _race(
        lambda i: requests.post(f"{ward['url']}/orders", json=body, headers=ward["doc"], timeout=30)
    )
    created = [r for r in responses if r.status_code == 201]
    assert created, [r.status_code for r in responses]
    assert all(r.status_code in (201, 409) for r in responses), [r.text for r in responses]
    for r in responses:
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "DUPLICATE_MUTATION"
    assert len({r.content for r in created}) == 1, "every 201 carries the same body"
    assert _count(ward) == 1


@pytest.mark.slow
def test_ten_cancels_with_one_version_exactly_one_wins(ward: dict[str, Any]) -> None:
    order = requests.post(
        f"{ward['url']}/orders", json=_lab("cmid-cancel"), headers=ward["doc"], timeout=10
    ).json()
    url = f"{ward['url']}/orders/{order['orderId']}/cancel"
    responses = _race(
        lambda i: requests.put(
            url, json={"reason": f"race {i}", "version": 1}, headers=ward["doc"], timeout=30
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(409) == 9, statuses
    codes = {r.json()["error"]["code"] for r in responses if r.status_code == 409}
    assert codes == {"OPTIMISTIC_LOCK_CONFLICT"}
    final = requests.get(
        f"{ward['url']}/orders/{order['orderId']}", headers=ward["doc"], timeout=10
    )
    assert final.json()["status"] == "cancelled"
    assert final.json()["version"] == 2


@pytest.mark.slow
def test_after_flushdb_a_resubmission_creates_nothing_new(ward: dict[str, Any]) -> None:
    body = _lab("cmid-flush")
    first = requests.post(f"{ward['url']}/orders", json=body, headers=ward["doc"], timeout=10)
    assert first.status_code == 201
    redis.Redis.from_url(REDIS_TEST_URL).flushdb()
    again = requests.post(f"{ward['url']}/orders", json=body, headers=ward["doc"], timeout=10)
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["orderId"] == first.json()["orderId"]
    assert _count(ward) == 1
    changed = requests.post(
        f"{ward['url']}/orders",
        json={**body, "labDetail": {"priority": "stat"}},
        headers=ward["doc"],
        timeout=10,
    )
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "DUPLICATE_MUTATION"
    assert _count(ward) == 1


@pytest.mark.slow
def test_orders_still_created_and_deduplicated_with_redis_unreachable(
    pg_app: Flask, tenant: str, ward: dict[str, Any]
) -> None:
    runtime = pg_app.extensions["orders"]
    from app.cache import RedisCache

    live_cache = runtime.cache
    runtime.cache = RedisCache("redis://127.0.0.1:1/0")
    try:
        body = _lab("cmid-no-redis")
        first = requests.post(f"{ward['url']}/orders", json=body, headers=ward["doc"], timeout=10)
        again = requests.post(f"{ward['url']}/orders", json=body, headers=ward["doc"], timeout=10)
    finally:
        runtime.cache = live_cache
    assert first.status_code == 201, first.text
    assert again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert _count(ward) == 1
