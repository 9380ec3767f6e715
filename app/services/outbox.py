"""The transactional outbox: order and Task changes become subscription events in the same
transaction as the change; they are numbered after it commits (docs/events.md).

The service writers (OrderCreation._write/_write_new, Fulfilment._write/_write_new — the
points every order transition and Task write goes through, whichever face called) report
each write here with the status it replaced. The unit of work calls `flush` just before it
commits: the changes are matched against the tenant's subscriptions (topic and filters)
and staged, un-numbered, in that transaction — so a rolled-back request (a CDS hard-stop, a
version conflict, a crash) leaves no event and a committed one always has its events. No
shared row is written, so writers in one tenant never wait for each other here.
`number_events` numbers them afterwards (the worker, `$status`, `$events`).

The tenant's subscriptions are read from the `SubscriptionIndex`, a per-process cache of at
most `INDEX_SECONDS` age, so a write with no matching subscription costs no round trip.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.db import Database
from app.domain.clock import utcnow
from app.domain.topics import Filter, Topic, facts, matches, topics_fired
from app.store import DeliveryQueue, EventNumbering, EventStore, NewEvent, StoredResource

#: How long a process trusts its list of a tenant's subscriptions. A subscription created
#: (or changed) in another process is seen by this one's order writes at most this late;
#: the process that wrote it sees it at once; `off` takes effect at once everywhere (the
#: staging statement checks it). docs/events.md, "Which changes a subscription sees".
INDEX_SECONDS = 1.0


@dataclass(frozen=True)
class Change:
    topic: Topic
    resource: StoredResource
    facts: dict[str, list[str]]


@dataclass(frozen=True)
class Watched:
    """A subscription as order writes match it: id, topic, parsed filters."""

    id: str
    topic: str
    filters: tuple[Filter, ...]


class SubscriptionIndex:
    """Per process and database: tenant → its subscriptions that are not `off`.

    An entry is reloaded after `ttl` seconds and dropped when this process commits a
    subscription change (`invalidate`, called after the commit). A generation counter
    keeps a load that raced with an invalidation from storing the stale list it read.
    """

    def __init__(self, ttl: float = INDEX_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, list[Watched]]] = {}
        self._generation: dict[str, int] = defaultdict(int)

    def get(self, tenant: str, load: Callable[[], list[Any]]) -> list[Watched]:
        now = self.clock()
        with self._lock:
            entry = self._entries.get(tenant)
            if entry is not None and entry[0] > now:
                return entry[1]
            generation = self._generation[tenant]
        found = [
            Watched(r.id, r.topic, tuple(Filter.from_json(f) for f in r.filters)) for r in load()
        ]
        with self._lock:
            if self._generation[tenant] == generation:
                self._entries[tenant] = (now + self.ttl, found)
        return found

    def invalidate(self, tenant: str) -> None:
        with self._lock:
            self._generation[tenant] += 1
            self._entries.pop(tenant, None)


_indexes: weakref.WeakKeyDictionary[Database, SubscriptionIndex] = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def index_for(database: Database) -> SubscriptionIndex:
    """The process's index for one database (an app's; tests run several apps)."""
    with _indexes_lock:
        found = _indexes.get(database)
        if found is None:
            found = _indexes[database] = SubscriptionIndex()
        return found


class Outbox:
    def __init__(self, store: EventStore, index: SubscriptionIndex) -> None:
        self.store = store
        self.index = index
        self._changes: list[Change] = []

    def record(self, before: str | None, stored: StoredResource) -> None:
        """A resource was written; `before` is the status it had (None: it is new)."""
        after = stored.content.get("status")
        fired = topics_fired(stored.resource_type, before, after)
        if not fired:
            return
        known = facts(stored.resource_type, stored.content)
        self._changes += [Change(t, stored, known) for t in fired]

    def flush(self) -> None:
        """Match this transaction's changes to subscriptions and stage their events."""
        if not self._changes:
            return
        changes, self._changes = self._changes, []
        watched = self.index.get(self.store.tenant_id, self.store.open_subscriptions)
        staged: list[tuple[str, NewEvent]] = []
        for change in changes:  # in write order: one resource's events stay in order
            res = change.resource
            for sub in watched:
                if change.topic.url == sub.topic and matches(
                    list(sub.filters), res.resource_type, change.facts
                ):
                    event = NewEvent(
                        sub.topic, res.resource_type, res.id, res.version_id, res.last_updated
                    )
                    staged.append((sub.id, event))
        if staged:
            self.store.stage(staged)


def number_events(database: Database, only: tuple[str, str] | None = None) -> int:
    """Number committed staged events, one subscription per short transaction; returns
    how many. `only` (tenant, subscription): that one, waiting for its lock (`$status`,
    `$events` answer with every committed event); else every subscription with staged
    events, skipping those another session is numbering (the worker)."""
    done = 0
    with database.engine.connect() as conn:
        if only is None:
            with conn.begin():
                todo = EventNumbering(conn).staged()
        else:
            todo = [only]
        for tenant, sid in todo:
            while True:
                with conn.begin():
                    n = EventNumbering(conn).number(tenant, sid, wait=only is not None)
                done += n or 0
                if not n or n < EventNumbering.BATCH:
                    break
    return done


def backlog(database: Database) -> tuple[int, float] | None:
    """For `/metrics`: undelivered events, and the age in seconds of the oldest (0: none);
    None when the database does not answer (the scrape still serves everything else)."""
    try:
        with database.connect(read_only=True) as conn:
            depth, oldest = DeliveryQueue(conn).backlog()
    except (DBAPIError, PoolTimeout):
        return None
    age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
    return depth, max(age, 0.0)
