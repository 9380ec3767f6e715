"""Issue 11, item 18: a Redis that stops answering (frozen with SIGSTOP, still accepting
TCP connections) costs one request a fraction of a second, then nothing while the circuit
is open; order entry and /readyz stay fast, and nothing is duplicated.

Each test starts its own redis-server on a free loopback port and freezes only that
process; the shared Redis is never touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from app import create_app
from app.auth.devkeys import mint_token
from app.cache import CacheUnavailable, CircuitBreaker, RedisCache
from app.migrate import upgrade
from app.settings import Settings
from tests.legacy_data import LegacyApi, lab
from tests.served import free_port

REDIS_ARGS = ("--save", "", "--appendonly", "no", "--dir")


@dataclass
class OwnRedis:
    proc: subprocess.Popen[bytes]
    url: str

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    port = free_port()
    proc = subprocess.Popen(
        [*("redis-server", "--port", str(port), "--bind", "127.0.0.1"), *REDIS_ARGS, str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_timeout=0.5)
        for _ in range(100):
            try:
                if client.ping():
                    break
            except redis.RedisError:
                time.sleep(0.05)
        else:
            pytest.fail("own redis-server did not start")
        client.close()
        yield OwnRedis(proc, url)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=10)


def test_frozen_redis_costs_one_short_timeout_then_nothing(own_redis: OwnRedis) -> None:
    cache = RedisCache(own_redis.url, breaker=CircuitBreaker(cooldown=1.0))
    try:
        cache.set("k", b"v", 60)
        assert cache.get("k") == b"v"
        own_redis.freeze()
        started = time.monotonic()
        with pytest.raises(CacheUnavailable):
            cache.get("k")
        first = time.monotonic() - started
        assert first < 0.8, f"the first call against a frozen Redis took {first:.2f}s"
        started = time.monotonic()
        for _ in range(50):
            with pytest.raises(CacheUnavailable):
                cache.set_if_absent("k2", b"v", 60)
        assert cache.ping() is False
        rest = time.monotonic() - started
        assert rest < 0.2, f"50 calls with the circuit open took {rest:.2f}s"
        own_redis.thaw()
        time.sleep(1.1)  # the cooldown passes; the next call probes and closes the circuit
        assert cache.get("k") == b"v"
        assert cache.breaker.is_open is False
    finally:
        cache.close()


def test_order_entry_and_readiness_stay_fast_with_a_frozen_redis(
    own_redis: OwnRedis, tmp_path: Path
) -> None:
    settings = Settings(
        instance_path=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'frozen.db'}",
        redis_url=own_redis.url,
    )
    app = create_app(settings)
    runtime = app.extensions["orders"]
    with app.app_context():
        upgrade(runtime.engine)

    def make(*roles: str, **claims: object) -> dict[str, str]:
        token = mint_token(settings, roles=roles or ("CLINICIAN",), tenants=("t1",), **claims)  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {token}", "X-Tenant-ID": "t1"}

    api = LegacyApi(app.test_client(), make)
    try:
        pid, eid = api.admitted()
        api.created(lab(pid, eid, clientMutationId="warm-up"))  # connections are pooled
        own_redis.freeze()
        started = time.monotonic()
        ids = []
        for n in range(10):
            body = lab(pid, eid, clientMutationId=f"frozen-{n}")
            ids.append(api.created(body)["orderId"])
            again = api.create(body)  # a retry: answered from the stored key
            assert again.status_code == 201
            assert again.get_json()["orderId"] == ids[-1]
        elapsed = time.monotonic() - started
        assert elapsed < 3.0, f"20 creates with a frozen Redis took {elapsed:.2f}s"
        started = time.monotonic()
        ready = app.test_client().get("/readyz")
        assert time.monotonic() - started < 0.5
        assert ready.status_code == 200 and ready.get_json()["status"] == "degraded"
        assert api.count("ServiceRequest") == 11
    finally:
        own_redis.thaw()
        runtime.close()
