"""Client mutation keys in the replay cache (DESIGN §5, app/services/idempotency.py).

Run against the in-process cache and real Redis (the server backends; `make mutate` runs
SQLite and the in-process cache only). The database layer of the same key (the claimed row
that makes a second order impossible) is covered through the API in
tests/api/test_legacy_contract.py and tests/integration/test_legacy_races.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from ulid import ULID

from app import metrics
from app.cache import Cache, CacheUnavailable, InProcessCache, RedisCache
from app.errors import DuplicateMutation
from app.services.idempotency import (
    MutationGuard,
    Replay,
    db_key,
    payload_hash,
)
from tests.conftest import BACKENDS, REDIS_TEST_URL

CACHES = ["in-process", "redis"] if "postgresql" in BACKENDS else ["in-process"]
IN_FLIGHT_TTL = 60  # seconds a request may run before its twin may go ahead
REPLAY_TTL = 24 * 3600  # DESIGN §5: the original response is replayed for 24 h
PAYLOAD = {"orderType": "lab", "patientId": "pat_1", "clientMutationId": "m-1"}
BODY = b'{"orderId": "ord_1", "status": "draft"}'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=CACHES)
def cache(request: pytest.FixtureRequest, clock: Clock) -> Iterator[Cache]:
    made: Cache = (
        InProcessCache(clock) if request.param == "in-process" else RedisCache(REDIS_TEST_URL)
    )
    yield made
    made.close()


@pytest.fixture
def tenant() -> str:
    return f"t-{ULID()}".lower()


def guard(
    cache: Cache,
    tenant: str,
    key: str = "m-1",
    payload: object = PAYLOAD,
    subject: str = "Practitioner/dr-1",
) -> MutationGuard:
    return MutationGuard(cache, tenant, subject, key, payload)


def test_the_first_request_goes_ahead_and_its_twin_in_flight_is_refused(
    cache: Cache, tenant: str
) -> None:
    assert guard(cache, tenant).begin() is None
    with pytest.raises(DuplicateMutation, match="in flight"):
        guard(cache, tenant).begin()


def test_a_replay_gets_the_original_response_byte_for_byte(cache: Cache, tenant: str) -> None:
    first = guard(cache, tenant)
    assert first.begin() is None
    first.complete(201, BODY)
    assert guard(cache, tenant).begin() == Replay(201, BODY)
    assert guard(cache, tenant).begin() == Replay(201, BODY)  # and again


def _replays(source: str) -> float:
    """`orders_idempotent_replays_total{source=…}` as /metrics exposes it."""
    text = metrics.scrape()[0].decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "orders_idempotent_replays_total" and s.labels.get("source") == source
    )


def test_a_replay_from_the_cache_is_counted_on_metrics_as_a_cache_replay(
    cache: Cache, tenant: str
) -> None:
    """operations.md tells cache replays ("cache") from stored-key replays ("stored-key")."""
    first = guard(cache, tenant)
    assert first.begin() is None
    first.complete(201, BODY)
    before = _replays("cache")
    guard(cache, tenant).begin()
    assert _replays("cache") == before + 1


def test_the_payload_is_compared_whatever_its_key_order(cache: Cache, tenant: str) -> None:
    first = guard(cache, tenant, payload={"a": 1, "b": [1, 2]})
    assert first.begin() is None
    first.complete(201, BODY)
    assert guard(cache, tenant, payload={"b": [1, 2], "a": 1}).begin() == Replay(201, BODY)


@pytest.mark.parametrize("done", [False, True], ids=["in flight", "done"])
def test_the_same_key_with_another_payload_is_refused(
    cache: Cache, tenant: str, done: bool
) -> None:
    first = guard(cache, tenant)
    assert first.begin() is None
    if done:
        first.complete(201, BODY)
    with pytest.raises(DuplicateMutation, match="different payload"):
        guard(cache, tenant, payload={**PAYLOAD, "priority": "stat"}).begin()


def test_an_aborted_request_may_be_retried_with_the_same_key(cache: Cache, tenant: str) -> None:
    first = guard(cache, tenant)
    assert first.begin() is None
    first.abort()
    retry = guard(cache, tenant)
    assert retry.begin() is None
    retry.complete(201, BODY)
    assert guard(cache, tenant).begin() == Replay(201, BODY)


def test_a_refused_twin_that_aborts_leaves_the_first_request_in_flight(
    cache: Cache, tenant: str
) -> None:
    assert guard(cache, tenant).begin() is None
    twin = guard(cache, tenant)
    with pytest.raises(DuplicateMutation):
        twin.begin()
    twin.abort()
    with pytest.raises(DuplicateMutation, match="in flight"):
        guard(cache, tenant).begin()


def test_keys_are_per_tenant_caller_and_key(cache: Cache, tenant: str) -> None:
    assert guard(cache, tenant).begin() is None
    assert guard(cache, tenant + "-other").begin() is None
    assert guard(cache, tenant, key="m-2").begin() is None
    assert guard(cache, tenant, subject="Practitioner/dr-2").begin() is None  # per caller


def test_in_flight_marker_expires_after_a_minute_and_the_replay_after_a_day(
    cache: Cache, tenant: str, clock: Clock
) -> None:
    first = guard(cache, tenant)
    assert first.begin() is None
    if isinstance(cache, RedisCache):
        client = redis.Redis.from_url(REDIS_TEST_URL)
        assert IN_FLIGHT_TTL - 2 <= client.ttl(first.key) <= IN_FLIGHT_TTL
        first.complete(201, BODY)
        assert REPLAY_TTL - 2 <= client.ttl(first.key) <= REPLAY_TTL
        client.close()
        return
    clock.now += IN_FLIGHT_TTL - 1
    with pytest.raises(DuplicateMutation):
        guard(cache, tenant).begin()
    clock.now += 1  # a minute on, the first request died without abort: its marker has lapsed
    retry = guard(cache, tenant)
    assert retry.begin() is None
    retry.complete(201, BODY)
    clock.now += REPLAY_TTL - 1
    assert guard(cache, tenant).begin() == Replay(201, BODY)
    clock.now += 1
    assert guard(cache, tenant).begin() is None


def test_the_cache_key_does_not_contain_the_clients_key(tenant: str) -> None:
    made = guard(InProcessCache(), tenant, key="secret mutation id")
    assert "secret" not in made.key
    assert made.key.startswith(f"idem:{tenant}:")
    assert made.key != guard(InProcessCache(), tenant, key="another").key


def test_db_key_is_a_stable_hash_of_the_client_key() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", db_key("dr-1", "m-1"))
    assert db_key("dr-1", "m-1") == db_key("dr-1", "m-1") != db_key("dr-1", "m-2")
    assert db_key("dr-1", "m-1") != db_key("dr-2", "m-1")
    assert payload_hash({"a": 1, "b": 2}) == payload_hash({"b": 2, "a": 1})
    assert payload_hash({"a": 1}) != payload_hash({"a": 2})


class DownCache(InProcessCache):
    """Redis unreachable: every call raises CacheUnavailable."""

    def get(self, key: str) -> bytes | None:
        raise CacheUnavailable("down")

    def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        raise CacheUnavailable("down")

    def set_if_absent(self, key: str, value: bytes, ttl_seconds: int) -> bool:
        raise CacheUnavailable("down")

    def delete(self, key: str) -> None:
        raise CacheUnavailable("down")


def test_an_unreachable_cache_never_fails_the_request(tenant: str) -> None:
    """The stored key in the database decides then (DESIGN §5)."""
    first = guard(DownCache(), tenant)
    assert first.begin() is None
    first.complete(201, BODY)
    first.abort()
    assert guard(DownCache(), tenant).begin() is None


class LapsingCache(InProcessCache):
    """The marker expires between the claim attempt and the read."""

    def set_if_absent(self, key: str, value: bytes, ttl_seconds: int) -> bool:
        return False

    def get(self, key: str) -> bytes | None:
        return None


def test_a_marker_that_lapses_between_claim_and_read_lets_the_request_go_ahead(
    tenant: str,
) -> None:
    made = guard(LapsingCache(), tenant)
    assert made.begin() is None
    assert made.claimed is False
