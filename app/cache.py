"""The idempotency replay cache: Redis when configured, else an in-process dictionary.

Redis is a cache, never a dependency of correctness (DESIGN §5 "Faults"): every Redis
failure surfaces as `CacheUnavailable`, quickly, so callers can fall back to the database
(the stored idempotency key) instead of hanging or answering 500. Nothing here connects
at import or construction time; the first command opens the first connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.settings import Settings

CacheKind = Literal["redis", "in-process"]

# A dead or black-holed Redis must cost a request at most a couple of seconds, never a hang.
REDIS_SOCKET_TIMEOUT_SECONDS = 1.0


class CacheUnavailable(Exception):
    """The cache could not be reached or answered with an error; treat it as a miss."""


class Cache(Protocol):
    """What the services need from a cache: bytes in, bytes out, with a TTL."""

    @property
    def kind(self) -> CacheKind: ...

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl_seconds: int) -> None: ...

    def set_if_absent(self, key: str, value: bytes, ttl_seconds: int) -> bool:
        """Store `value` only when `key` holds nothing; True when this call stored it."""
        ...

    def delete(self, key: str) -> None: ...

    def ping(self) -> bool:
        """True when the cache answers; never raises (used by /readyz)."""
        ...

    def close(self) -> None: ...


def _check_ttl(ttl_seconds: int) -> None:
    if ttl_seconds <= 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")


class RedisCache:
    """Redis through redis-py, with short timeouts and a single immediate retry.

    One retry without back-off lets a pooled connection broken by a Redis restart be
    replaced transparently; redis-py's default exponential back-off would turn an outage
    into multi-second stalls on every request.
    """

    def __init__(self, url: str) -> None:
        self._client: redis.Redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
            socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )

    @property
    def kind(self) -> CacheKind:
        return "redis"

    def get(self, key: str) -> bytes | None:
        try:
            value = self._client.get(key)
        except redis.RedisError as exc:
            raise CacheUnavailable(f"redis GET failed: {type(exc).__name__}") from exc
        if value is None or isinstance(value, bytes):
            return value
        raise CacheUnavailable(f"redis GET returned {type(value).__name__}, expected bytes")

    def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        _check_ttl(ttl_seconds)
        try:
            self._client.set(key, value, ex=ttl_seconds)
        except redis.RedisError as exc:
            raise CacheUnavailable(f"redis SET failed: {type(exc).__name__}") from exc

    def set_if_absent(self, key: str, value: bytes, ttl_seconds: int) -> bool:
        _check_ttl(ttl_seconds)
        try:
            stored = self._client.set(key, value, ex=ttl_seconds, nx=True)
        except redis.RedisError as exc:
            raise CacheUnavailable(f"redis SET NX failed: {type(exc).__name__}") from exc
        return bool(stored)

    def delete(self, key: str) -> None:
        try:
            self._client.delete(key)
        except redis.RedisError as exc:
            raise CacheUnavailable(f"redis DEL failed: {type(exc).__name__}") from exc

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._client.close()


class InProcessCache:
    """A thread-safe dictionary with expiry, for the embedded single-process default.

    It is per process: under several workers a replay may miss, and the stored
    idempotency key (DESIGN §5) still prevents a duplicate order. Expired entries are
    dropped when read and swept every `SWEEP_EVERY` writes so memory stays bounded.
    """

    SWEEP_EVERY = 1024

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[bytes, float]] = {}
        self._writes = 0

    @property
    def kind(self) -> CacheKind:
        return "in-process"

    def _live(self, key: str, now: float) -> bytes | None:
        """The value under `key` if not expired; call with the lock held."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, deadline = entry
        if deadline <= now:
            del self._entries[key]
            return None
        return value

    def _store(self, key: str, value: bytes, ttl_seconds: int, now: float) -> None:
        """Write an entry and occasionally sweep; call with the lock held."""
        self._entries[key] = (bytes(value), now + ttl_seconds)
        self._writes += 1
        if self._writes % self.SWEEP_EVERY == 0:
            expired = [k for k, (_, deadline) in self._entries.items() if deadline <= now]
            for k in expired:
                del self._entries[k]

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._live(key, self._clock())

    def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        _check_ttl(ttl_seconds)
        with self._lock:
            self._store(key, value, ttl_seconds, self._clock())

    def set_if_absent(self, key: str, value: bytes, ttl_seconds: int) -> bool:
        _check_ttl(ttl_seconds)
        with self._lock:
            now = self._clock()
            if self._live(key, now) is not None:
                return False
            self._store(key, value, ttl_seconds, now)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        with self._lock:
            self._entries.clear()


def make_cache(settings: Settings) -> Cache:
    """Redis when `REDIS_URL` is set, else the in-process cache (DESIGN §2)."""
    if settings.redis_url:
        return RedisCache(settings.redis_url)
    return InProcessCache()
