"""Client mutation keys (`clientMutationId`), DESIGN §5.

Two layers. Redis keeps the original 201 response for 24 h and an in-flight marker, so a
replay is answered byte for byte and a twin that arrives while the first is still running is
409 DUPLICATE_MUTATION. The database keeps the key with the order (a unique row in
`conditional_keys`, with the payload's hash), so neither a Redis flush, an outage nor a race
can create a second order: the loser finds the key taken and answers from the stored order.
Redis failures are swallowed here: it is a cache, never a dependency of correctness.

A key belongs to its tenant and its token subject (`sub`), in Redis and in the database:
another user of the same tenant who sends the same `clientMutationId` has a different key,
so a colleague's order is never replayed to them (DESIGN §5; issue 11, item 9).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from app import metrics
from app.cache import Cache, CacheUnavailable
from app.errors import DuplicateMutation

log = logging.getLogger(__name__)
REPLAY_TTL = 24 * 3600
IN_FLIGHT_TTL = 60


@dataclass(frozen=True)
class Replay:
    status: int
    body: bytes


def payload_hash(payload: Any) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _scoped(subject: str, client_mutation_id: str) -> bytes:
    """Subject and key, unambiguously joined (the subject's length first)."""
    return f"{len(subject)}:{subject}:{client_mutation_id}".encode()


def db_key(subject: str, client_mutation_id: str) -> str:
    """The key row id in `conditional_keys` (the row also carries the tenant); hashed, as
    keys and subjects are client-chosen strings."""
    return hashlib.sha256(b"cmid:" + _scoped(subject, client_mutation_id)).hexdigest()


class MutationGuard:
    """One client mutation: `begin` → (work) → `complete` or `abort`.

    A create answered from the database (the stored key matched) must still `complete`:
    otherwise the in-flight marker `begin` set outlives the request and every retry within
    its TTL is 409 DUPLICATE_MUTATION (issue 11, item 17).
    """

    def __init__(
        self, cache: Cache, tenant_id: str, subject: str, client_mutation_id: str, payload: Any
    ):
        self.cache = cache
        digest = hashlib.sha256(_scoped(subject, client_mutation_id)).hexdigest()
        self.key = f"idem:{tenant_id}:{digest}"
        self.db_key = db_key(subject, client_mutation_id)
        self.client_mutation_id = client_mutation_id
        self.hash = payload_hash(payload)
        self.claimed = False

    def begin(self) -> Replay | None:
        """A replay of the original response, None to go ahead, or DuplicateMutation."""
        try:
            marker = orjson.dumps({"state": "in-flight", "hash": self.hash})
            if self.cache.set_if_absent(self.key, marker, IN_FLIGHT_TTL):
                self.claimed = True
                return None
            raw = self.cache.get(self.key)
        except CacheUnavailable:
            log.warning("idempotency cache unavailable; relying on the stored key")
            return None
        if raw is None:  # expired between the two calls: go ahead, the stored key decides
            return None
        record = orjson.loads(raw)
        if record.get("hash") != self.hash:
            raise DuplicateMutation("clientMutationId was already used with a different payload")
        if record.get("state") != "done":
            raise DuplicateMutation("A request with this clientMutationId is still in flight")
        metrics.idempotent_replay("cache")
        return Replay(int(record["status"]), bytes.fromhex(record["body"]))

    def complete(self, status: int, body: bytes) -> None:
        record = {"state": "done", "hash": self.hash, "status": status, "body": body.hex()}
        try:
            self.cache.set(self.key, orjson.dumps(record), REPLAY_TTL)
        except CacheUnavailable:
            log.warning("idempotency cache unavailable; response not cached for replay")

    def abort(self) -> None:
        """The request failed: let the client retry with the same key."""
        if not self.claimed:
            return
        with contextlib.suppress(CacheUnavailable):
            self.cache.delete(self.key)
