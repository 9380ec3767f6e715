"""RedisCache against the real local Redis (database 15), and against a dead port."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from app.cache import CacheUnavailable, RedisCache

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are removed afterwards."""
    value = f"test:cache:{uuid.uuid4().hex}:"
    yield value
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{value}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def cache() -> Iterator[RedisCache]:
    c = RedisCache(REDIS_URL)
    if not c.ping():
        pytest.fail(f"Redis is not reachable at {REDIS_URL}; run scripts/services.sh")
    yield c
    c.close()


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_kind_and_ping(cache: RedisCache) -> None:
    assert cache.kind == "redis"
    assert cache.ping() is True


def test_get_missing_is_none(cache: RedisCache, prefix: str) -> None:
    assert cache.get(prefix + "nope") is None


def test_set_then_get_round_trips_bytes(cache: RedisCache, prefix: str) -> None:
    cache.set(prefix + "k", b"\x00value\xff", ttl_seconds=60)
    assert cache.get(prefix + "k") == b"\x00value\xff"


def test_set_overwrites(cache: RedisCache, prefix: str) -> None:
    cache.set(prefix + "k", b"one", 60)
    cache.set(prefix + "k", b"two", 60)
    assert cache.get(prefix + "k") == b"two"


def test_set_applies_the_ttl(cache: RedisCache, prefix: str) -> None:
    cache.set(prefix + "k", b"v", 86400)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        ttl = client.ttl(prefix + "k")
    finally:
        client.close()
    assert isinstance(ttl, int)
    assert 86390 <= ttl <= 86400


def test_entry_expires(cache: RedisCache, prefix: str) -> None:
    cache.set(prefix + "k", b"v", ttl_seconds=1)
    assert cache.get(prefix + "k") == b"v"
    time.sleep(1.2)
    assert cache.get(prefix + "k") is None


def test_set_if_absent_stores_only_once(cache: RedisCache, prefix: str) -> None:
    assert cache.set_if_absent(prefix + "k", b"first", 60) is True
    assert cache.set_if_absent(prefix + "k", b"second", 60) is False
    assert cache.get(prefix + "k") == b"first"


def test_set_if_absent_succeeds_after_expiry(cache: RedisCache, prefix: str) -> None:
    assert cache.set_if_absent(prefix + "k", b"first", 1) is True
    time.sleep(1.2)
    assert cache.set_if_absent(prefix + "k", b"second", 60) is True
    assert cache.get(prefix + "k") == b"second"


def test_set_if_absent_succeeds_after_delete(cache: RedisCache, prefix: str) -> None:
    cache.set(prefix + "k", b"v", 60)
    cache.delete(prefix + "k")
    assert cache.get(prefix + "k") is None
    assert cache.set_if_absent(prefix + "k", b"again", 60) is True


def test_delete_missing_key_is_quiet(cache: RedisCache, prefix: str) -> None:
    cache.delete(prefix + "never-set")


def test_non_positive_ttl_is_rejected(cache: RedisCache, prefix: str) -> None:
    with pytest.raises(ValueError):
        cache.set(prefix + "k", b"v", 0)
    with pytest.raises(ValueError):
        cache.set_if_absent(prefix + "k", b"v", 0)


def test_dead_redis_raises_cache_unavailable_quickly() -> None:
    dead = RedisCache(f"redis://127.0.0.1:{_closed_port()}/0")  # constructing must not connect
    try:
        started = time.monotonic()
        with pytest.raises(CacheUnavailable):
            dead.get("k")
        with pytest.raises(CacheUnavailable):
            dead.set("k", b"v", 60)
        with pytest.raises(CacheUnavailable):
            dead.set_if_absent("k", b"v", 60)
        with pytest.raises(CacheUnavailable):
            dead.delete("k")
        assert dead.ping() is False
        assert time.monotonic() - started < 3.0
    finally:
        dead.close()
