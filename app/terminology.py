"""An RxNav-compatible terminology service client: RxNorm code -> ingredients.

Configured by `TERMINOLOGY_URL` (e.g. a hospital's RxNav-in-a-Box, `http://rxnav:4000`); the
client calls `{url}/REST/rxcui/{rxcui}/related.json?tty=IN+MIN` for codes the knowledge base
does not know. See: https://lhncbc.nlm.nih.gov/RxNav/APIs/api-RxNorm.getRelatedByType.html

Caching: answers are kept in-process and in the shared cache (Redis when `REDIS_URL` is set)
for `ttl_seconds` (found) or `negative_ttl_seconds` (unknown code). Failures are not cached.

The bound (docs/decisions.md "Terminology lookups are bounded"): each HTTP call has a
`timeout_seconds` socket timeout (default 0.5 s) and all lookups for one evaluation share a
`budget_seconds` deadline (default 1.0 s); codes left when the budget is spent are answered
`Unavailable`. After a failure the service is not called again for `cooldown_seconds`
(default 30 s), so a dead service costs one timeout per cooldown, not one per order. A slow
service therefore adds at most ~1 s to an order, and the rules say "could not check" for the
codes it did not answer, as a warning.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from app.cache import Cache, CacheUnavailable, InProcessCache
from app.cds.lookup import Found, LookupResult, Unavailable

log = logging.getLogger("app.terminology")

CACHE_PREFIX: Final = "terminology:rxnav:v1:"
TIMEOUT_SECONDS: Final = 0.5
BUDGET_SECONDS: Final = 1.0
COOLDOWN_SECONDS: Final = 30.0
TTL_SECONDS: Final = 24 * 3600
NEGATIVE_TTL_SECONDS: Final = 3600


class RxNavClient:
    """Looks codes up with caches, per-call timeouts, a per-evaluation budget and a cooldown."""

    def __init__(
        self,
        base_url: str,
        cache: Cache | None = None,
        *,
        timeout_seconds: float = TIMEOUT_SECONDS,
        budget_seconds: float = BUDGET_SECONDS,
        cooldown_seconds: float = COOLDOWN_SECONDS,
        ttl_seconds: int = TTL_SECONDS,
        negative_ttl_seconds: int = NEGATIVE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        parsed = urllib.parse.urlsplit(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"TERMINOLOGY_URL must be an http(s) URL, got {base_url!r}")
        self._connection = (
            http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        )
        self._host = parsed.hostname
        self._port = parsed.port
        self._path = parsed.path.rstrip("/")
        self.shared = cache
        self.local = InProcessCache(clock)
        self.timeout = timeout_seconds
        self.budget = budget_seconds
        self.cooldown = cooldown_seconds
        self.ttl = ttl_seconds
        self.negative_ttl = negative_ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down_reason = ""

    # ------------------------------------------------------------------ API
    def ingredients(self, codes: Sequence[str]) -> Mapping[str, LookupResult]:
        deadline = self._clock() + self.budget
        answers: dict[str, LookupResult] = {}
        for code in dict.fromkeys(codes):
            cached = self._cached(code)
            if cached is not None:
                answers[code] = cached
                continue
            answers[code] = self._fetch(code, deadline)
        return answers

    # ------------------------------------------------------------------ caches
    def _cached(self, code: str) -> Found | None:
        key = CACHE_PREFIX + code
        raw = self.local.get(key)
        if raw is None and self.shared is not None:
            try:
                raw = self.shared.get(key)
            except CacheUnavailable:
                raw = None
            if raw is not None:
                self.local.set(key, raw, self.negative_ttl)
        if raw is None:
            return None
        pairs = json.loads(raw)
        return Found(tuple((str(a), str(b)) for a, b in pairs))

    def _remember(self, code: str, found: Found) -> None:
        raw = json.dumps([list(pair) for pair in found.ingredients]).encode()
        ttl = self.ttl if found.ingredients else self.negative_ttl
        self.local.set(CACHE_PREFIX + code, raw, ttl)
        if self.shared is not None:
            # A cache outage costs only sharing: the in-process copy still saves the next call.
            with contextlib.suppress(CacheUnavailable):
                self.shared.set(CACHE_PREFIX + code, raw, ttl)

    # ------------------------------------------------------------------ HTTP
    def _fetch(self, code: str, deadline: float) -> LookupResult:
        now = self._clock()
        with self._lock:
            if now < self._down_until:
                return Unavailable(f"terminology service unavailable ({self._down_reason})")
        remaining = deadline - now
        if remaining <= 0:
            return Unavailable(f"terminology lookups took longer than {self.budget:g} s")
        path = f"{self._path}/REST/rxcui/{urllib.parse.quote(code, safe='')}/related.json"
        timeout = min(self.timeout, remaining)
        connection = self._connection(self._host, self._port, timeout=timeout)
        try:
            connection.request("GET", f"{path}?tty=IN+MIN", headers={"Accept": "application/json"})
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except TimeoutError:
            return self._failed(f"no answer within {timeout:g} s")
        except OSError as exc:
            return self._failed(f"cannot connect: {type(exc).__name__}")
        except http.client.HTTPException as exc:
            return self._failed(f"bad answer: {type(exc).__name__}")
        finally:
            connection.close()  # never leave a socket to the garbage collector
        if status == 404:
            found = Found(())
            self._remember(code, found)
            return found
        if status != 200:
            return self._failed(f"HTTP {status}")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._failed("bad answer: not JSON")
        found = Found(_ingredients(body))
        self._remember(code, found)
        return found

    def _failed(self, reason: str) -> Unavailable:
        log.warning("terminology lookup failed: %s", reason)
        with self._lock:
            self._down_until = self._clock() + self.cooldown
            self._down_reason = reason
        return Unavailable(f"terminology service: {reason}")


def _ingredients(body: Any) -> tuple[tuple[str, str], ...]:
    """IN concepts of an RxNav related.json answer (MIN alone names no ingredient list)."""
    group = body.get("relatedGroup") if isinstance(body, dict) else None
    found: dict[str, str] = {}
    for concepts in (group or {}).get("conceptGroup") or ():
        if not isinstance(concepts, dict) or concepts.get("tty") != "IN":
            continue
        for concept in concepts.get("conceptProperties") or ():
            if isinstance(concept, dict) and concept.get("rxcui"):
                found[str(concept["rxcui"])] = str(concept.get("name") or "")
    return tuple(sorted(found.items()))
