"""Issue 11, items 9 and 17: a client mutation key belongs to its tenant and token subject,
and a replay answered from the database completes the in-flight marker.

Item 9 runs on both backends (SQLite with the in-process cache, PostgreSQL with Redis),
once with the replay cache and once with only the stored key deciding. Item 17 runs against
the real Redis test database (TEST_REDIS_URL), which it flushes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from app.auth.devkeys import mint_token
from app.cache import InProcessCache
from tests.conftest import REDIS_TEST_URL, TokenFactory
from tests.legacy_data import LegacyApi, lab


@pytest.fixture
def api(client: FlaskClient, headers: TokenFactory) -> LegacyApi:
    return LegacyApi(client, headers)


@pytest.fixture
def no_replay_cache(app: Flask) -> Iterator[None]:
    """Every request sees an empty cache: only the stored key (the database) decides."""
    runtime = app.extensions["orders"]
    live = runtime.cache
    runtime.cache = _Forgetful()
    try:
        yield
    finally:
        runtime.cache = live


class _Forgetful(InProcessCache):
    def get(self, key: str) -> bytes | None:
        return None

    def set_if_absent(self, key: str, value: bytes, ttl_seconds: int) -> bool:
        return True


def _two_clinicians(api: LegacyApi) -> tuple[dict[str, str], dict[str, str]]:
    return api.as_role("CLINICIAN", sub="dr-alice"), api.as_role("CLINICIAN", sub="dr-bob")


def _check_scoped(api: LegacyApi) -> None:
    alice, bob = _two_clinicians(api)
    pid, eid = api.admitted()
    body = lab(pid, eid, clientMutationId="shared-key-1")
    first = api.create(body, who=alice)
    assert first.status_code == 201, first.get_json()
    # Bob sends Alice's key with the same payload: a different key, so a new order.
    theirs = api.create(body, who=bob)
    assert theirs.status_code == 201, theirs.get_json()
    assert theirs.headers.get("Idempotent-Replayed") is None
    assert theirs.get_json()["orderId"] != first.get_json()["orderId"]
    # Alice's own retry is still a replay of her order.
    again = api.create(body, who=alice)
    assert again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json()["orderId"] == first.get_json()["orderId"]
    # Bob's different payload under the same key conflicts with Bob's order only.
    other = api.create({**body, "labDetail": {"priority": "stat"}}, who=bob)
    assert other.status_code == 409
    assert other.get_json()["error"]["code"] == "DUPLICATE_MUTATION"
    assert api.count("ServiceRequest") == 2


def test_another_users_key_is_a_different_key(api: LegacyApi) -> None:
    _check_scoped(api)


def test_another_users_key_is_a_different_key_in_the_stored_key(
    api: LegacyApi, no_replay_cache: None
) -> None:
    _check_scoped(api)


@pytest.fixture
def redis_api(pg_app: Flask, tenant: str) -> LegacyApi:
    """The legacy face of a PostgreSQL + Redis app, with tokens signed by its own key."""

    def make(*roles: str, **claims: Any) -> dict[str, str]:
        settings = pg_app.config["SETTINGS"]
        token = mint_token(settings, roles=roles or ("CLINICIAN",), tenants=(tenant,), **claims)
        return {"Authorization": f"Bearer {token}", "X-Tenant-ID": tenant}

    return LegacyApi(pg_app.test_client(), make)


def test_replay_from_the_database_clears_the_in_flight_marker(redis_api: LegacyApi) -> None:
    """After a Redis flush, every retry of a completed create is 201 (the first from the
    database, the next ones from the cache again), never 409 "still in flight"."""
    api = redis_api
    pid, eid = api.admitted()
    body = lab(pid, eid, clientMutationId="survives-a-flush")
    first = api.create(body)
    assert first.status_code == 201
    redis.Redis.from_url(REDIS_TEST_URL).flushdb()
    for _ in range(3):
        again = api.create(body)
        assert again.status_code == 201, again.get_json()
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert again.get_json()["orderId"] == first.get_json()["orderId"]
    assert api.count("ServiceRequest") == 1
