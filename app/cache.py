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
from typing import Literal, Protocol, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.settings import Settings

CacheKind = Literal["redis", "in-process"]
_T = TypeVar("_T")

# Redis on the same network answers in well under a millisecond; a frozen one (stopped, not
# refusing connections) must cost a request a fraction of a second once, then nothing while
# the circuit is open (issue 11, item 18).
REDIS_SOCKET_TIMEOUT_SECONDS = 0.25
#: After a failure, Redis is not called again for this long; then one caller probes it.
REDIS_COOLDOWN_SECONDS = 5.0


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


class CircuitBreaker:
    """Stops calling a failing dependency for `cooldown` seconds after a failure.

    Closed: calls go through. After a failure it opens: `allow()` is False until the
    cooldown has passed; then exactly one caller is let through (the probe) while the others
    keep failing fast, and its outcome closes the circuit or opens it again. Thread-safe.
    """

    def __init__(self, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failing = False
        self._open_until = 0.0

    @property
    def is_open(self) -> bool:
        return self._failing

    def allow(self) -> bool:
        with self._lock:
            if not self._failing:
                return True
            now = self._clock()
            if now < self._open_until:
                return False
            self._open_until = now + self.cooldown  # this caller probes; others wait
            return True

    def success(self) -> None:
        with self._lock:
            self._failing = False

    def failure(self) -> None:
        with self._lock:
            self._failing = True
            self._open_until = self._clock() + self.cooldown


class RedisCache:
    """Redis through redis-py, with short timeouts, one retry on a broken connection, and a
    circuit breaker.

    One immediate retry on a connection error lets a pooled connection broken by a Redis
    restart be replaced transparently; a timeout is not retried (a frozen Redis would only
    time out again). Any failure opens the circuit: for `REDIS_COOLDOWN_SECONDS` no call
    reaches Redis and each answers CacheUnavailable at once, so a frozen cache costs one
    request a fraction of a second and the rest nothing, as a refused one does.
    """

    def __init__(
        self, url: str, *, breaker: CircuitBreaker | None = None, timeout: float | None = None
    ) -> None:
        timeout = REDIS_SOCKET_TIMEOUT_SECONDS if timeout is None else timeout
        self._client: redis.Redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            health_check_interval=30,
        )
        self.breaker = breaker or CircuitBreaker(REDIS_COOLDOWN_SECONDS)

    @property
    def kind(self) -> CacheKind:
        return "redis"

    def _call(self, what: str, command: Callable[[], _T]) -> _T:
        if not self.breaker.allow():
            raise CacheUnavailable(f"redis {what} skipped: circuit open after a failure")
        try:
            result = command()
        except redis.RedisError as exc:
            self.breaker.failure()
            raise CacheUnavailable(f"redis {what} failed: {type(exc).__name__}") from exc
        self.breaker.success()
        return result

    def get(self, key: str) -> bytes | None:
        value = self._call("GET", lambda: self._client.get(key))
        if value is None or isinstance(value, bytes):
            return value
        raise CacheUnavailable(f"redis GET returned {type(value).__name__}, expected bytes")

    def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        _check_ttl(ttl_seconds)
        self._call("SET", lambda: self._client.set(key, value, ex=ttl_seconds))

    def set_if_absent(self, key: str, value: bytes, ttl_seconds: int) -> bool:
        _check_ttl(ttl_seconds)
        stored = self._call("SET NX", lambda: self._client.set(key, value, ex=ttl_seconds, nx=True))
        return bool(stored)

    def delete(self, key: str) -> None:
        self._call("DEL", lambda: self._client.delete(key))

    def ping(self) -> bool:
        try:
            return bool(self._call("PING", self._client.ping))
        except CacheUnavailable:
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
