"""The transactional outbox: order and Task changes become subscription events in the same
transaction as the change (docs/events.md).

The service writers (OrderCreation._write/_write_new, Fulfilment._write/_write_new — the
points every order transition and Task write goes through, whichever face called) report
each write here with the status it replaced. The unit of work calls `flush` just before it
commits: the events are matched against the tenant's subscriptions (topic and filters) and
numbered per subscription in that transaction. A rolled-back request (a CDS hard-stop, a
version conflict, a crash) therefore leaves no event, and a committed one always has its
events: there is no window between the commit and the outbox.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from app.domain.topics import Filter, Topic, facts, matches, topics_fired
from app.store import EventStore, NewEvent, StoredResource


@dataclass(frozen=True)
class Change:
    topic: Topic
    resource: StoredResource
    facts: dict[str, list[str]]


class Outbox:
    def __init__(self, store: EventStore) -> None:
        self.store = store
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
        """Match this transaction's changes to subscriptions and append numbered events."""
        if not self._changes:
            return
        changes, self._changes = self._changes, []
        wanted: dict[str, list[NewEvent]] = defaultdict(list)
        for sub in self.store.open_subscriptions():
            filters = [Filter.from_json(f) for f in sub.filters]
            for change in changes:
                res = change.resource
                if change.topic.url == sub.topic and matches(
                    filters, res.resource_type, change.facts
                ):
                    wanted[sub.id].append(
                        NewEvent(
                            sub.topic, res.resource_type, res.id, res.version_id, res.last_updated
                        )
                    )
        for sid in sorted(wanted):  # one lock order for every writer: no deadlocks
            self.store.append(sid, wanted[sid])
