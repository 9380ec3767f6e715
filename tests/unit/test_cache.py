"""InProcessCache semantics, with a fake clock so expiry is tested without sleeping."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app.cache import InProcessCache, RedisCache, make_cache
from app.settings import Settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> InProcessCache:
    return InProcessCache(clock=clock)


def test_kind_and_ping(cache: InProcessCache) -> None:
    assert cache.kind == "in-process"
    assert cache.ping() is True


def test_get_missing_is_none(cache: InProcessCache) -> None:
    assert cache.get("nope") is None


def test_set_then_get_round_trips_bytes(cache: InProcessCache) -> None:
    cache.set("k", b"\x00value\xff", ttl_seconds=60)
    assert cache.get("k") == b"\x00value\xff"


def test_set_overwrites(cache: InProcessCache) -> None:
    cache.set("k", b"one", 60)
    cache.set("k", b"two", 60)
    assert cache.get("k") == b"two"


def test_entry_expires_at_its_ttl(cache: InProcessCache, clock: FakeClock) -> None:
    cache.set("k", b"v", ttl_seconds=10)
    clock.advance(9.999)
    assert cache.get("k") == b"v"
    clock.advance(0.001)
    assert cache.get("k") is None


def test_overwrite_renews_ttl(cache: InProcessCache, clock: FakeClock) -> None:
    cache.set("k", b"v1", 10)
    clock.advance(8)
    cache.set("k", b"v2", 10)
    clock.advance(8)
    assert cache.get("k") == b"v2"


def test_set_if_absent_stores_only_once(cache: InProcessCache) -> None:
    assert cache.set_if_absent("k", b"first", 60) is True
    assert cache.set_if_absent("k", b"second", 60) is False
    assert cache.get("k") == b"first"


def test_set_if_absent_succeeds_after_expiry(cache: InProcessCache, clock: FakeClock) -> None:
    assert cache.set_if_absent("k", b"first", 5) is True
    clock.advance(5)
    assert cache.set_if_absent("k", b"second", 5) is True
    assert cache.get("k") == b"second"


def test_set_if_absent_succeeds_after_delete(cache: InProcessCache) -> None:
    cache.set("k", b"v", 60)
    cache.delete("k")
    assert cache.get("k") is None
    assert cache.set_if_absent("k", b"again", 60) is True


def test_delete_missing_key_is_quiet(cache: InProcessCache) -> None:
    cache.delete("never-set")


@pytest.mark.parametrize("ttl", [0, -1])
def test_non_positive_ttl_is_rejected(cache: InProcessCache, ttl: int) -> None:
    with pytest.raises(ValueError):
        cache.set("k", b"v", ttl)
    with pytest.raises(ValueError):
        cache.set_if_absent("k", b"v", ttl)


def test_sweep_drops_expired_entries(cache: InProcessCache, clock: FakeClock) -> None:
    cache.set("old", b"v", 1)
    clock.advance(2)
    for i in range(InProcessCache.SWEEP_EVERY):
        cache.set(f"new-{i}", b"v", 60)
    assert "old" not in cache._entries


def test_close_empties_the_cache(cache: InProcessCache) -> None:
    cache.set("k", b"v", 60)
    cache.close()
    assert cache.get("k") is None


def test_set_if_absent_has_exactly_one_winner_under_contention() -> None:
    cache = InProcessCache()
    start = threading.Barrier(16)
    wins: list[int] = []

    def race(n: int) -> None:
        start.wait()
        if cache.set_if_absent("race", str(n).encode(), 60):
            wins.append(n)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert cache.get("race") == str(wins[0]).encode()


def test_make_cache_picks_in_process_without_redis_url(tmp_path: Path) -> None:
    settings = Settings(instance_path=tmp_path, database_url="sqlite://")
    assert make_cache(settings).kind == "in-process"


def test_make_cache_picks_redis_and_does_not_connect(tmp_path: Path) -> None:
    # Port 1 on loopback has nothing listening: construction must still succeed.
    settings = Settings(
        instance_path=tmp_path, database_url="sqlite://", redis_url="redis://127.0.0.1:1/0"
    )
    cache = make_cache(settings)
    assert isinstance(cache, RedisCache)
    assert cache.kind == "redis"
    cache.close()
