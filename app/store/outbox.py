"""The subscription outbox: the only code that queries the outbox tables (outbox_tables.py).

`EventStore` is bound to a tenant, like the repository, and used inside a unit of work:
subscription configuration, and `append`, which numbers a subscription's new events by
incrementing its `events_count` (`UPDATE … RETURNING`) in the order change's transaction —
the row lock serialises writers per subscription until they commit, so numbers follow
commit order, and a rollback takes its numbers back: no gaps, no event without its change.

`DeliveryQueue` is the worker's view across tenants: claim one due subscription with
`SELECT … FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite ignores the clause and serialises
writers anyway), read its undelivered events, record the outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Table, and_, insert, or_, select, update

from app.store.outbox_tables import SubscriptionDeliveryRow, SubscriptionEventRow, SubscriptionRow

S = cast(Table, SubscriptionRow.__table__)
#: PostgreSQL: increment the counter and insert the numbered events in one statement
#: (parameters: count, tenant, subscription, count, events as JSON).
PG_APPEND = """
WITH c AS (
  UPDATE subscriptions SET events_count = events_count + %s
  WHERE tenant_id = %s AND id = %s RETURNING tenant_id, id, events_count
)
INSERT INTO subscription_events (tenant_id, subscription_id, event_number, topic, focus_type,
                                 focus_id, focus_version, occurred_at)
SELECT c.tenant_id, c.id, c.events_count - %s + e.i, e.topic, e.focus_type, e.focus_id,
       e.focus_version, e.occurred_at
FROM c, jsonb_to_recordset(CAST(%s AS jsonb)) AS e(i bigint, topic text, focus_type text,
     focus_id text, focus_version integer, occurred_at timestamptz)
RETURNING event_number
"""
E = cast(Table, SubscriptionEventRow.__table__)
D = cast(Table, SubscriptionDeliveryRow.__table__)
CONFIG_COLUMNS = (
    "topic",
    "filters",
    "status",
    "endpoint",
    "headers",
    "content",
    "heartbeat_seconds",
    "timeout_seconds",
    "max_count",
)


@dataclass(frozen=True)
class NewEvent:
    topic: str
    focus_type: str
    focus_id: str
    focus_version: int
    occurred_at: datetime


class EventStore:
    def __init__(self, conn: Connection, tenant_id: str) -> None:
        self.conn = conn
        self.tenant_id = tenant_id

    def _sub(self, sid: str) -> Any:
        return and_(S.c.tenant_id == self.tenant_id, S.c.id == sid)

    # ---------------------------------------------------------------- configuration
    def subscription(self, sid: str, *, for_update: bool = False) -> Any:
        stmt = select(S).where(self._sub(sid))
        if for_update:
            stmt = stmt.with_for_update()
        return self.conn.execute(stmt).first()

    def create_subscription(self, sid: str, config: dict[str, Any], now: datetime) -> None:
        self.conn.execute(
            insert(S), {"tenant_id": self.tenant_id, "id": sid, "events_count": 0, **config}
        )
        self.conn.execute(
            insert(D),
            {
                "tenant_id": self.tenant_id,
                "subscription_id": sid,
                "delivered_through": 0,
                "failures": 0,
                "next_attempt_at": now,
            },
        )

    def update_subscription(self, sid: str, config: dict[str, Any]) -> None:
        self.conn.execute(update(S).where(self._sub(sid)).values(**config))

    def open_subscriptions(self) -> list[Any]:
        """Subscriptions that count events (every status but `off`), in id order."""
        stmt = (
            select(S.c.id, S.c.topic, S.c.filters)
            .where(S.c.tenant_id == self.tenant_id, S.c.status != "off")
            .order_by(S.c.id)
        )
        return list(self.conn.execute(stmt))

    # ---------------------------------------------------------------- events
    def append(self, sid: str, events: Sequence[NewEvent]) -> int:
        """Number and store `events` for one subscription; returns the last number.

        The counter's row lock is held from here to the commit, so this is the last thing a
        transaction does, and on PostgreSQL one statement (the increment and the inserts in
        a data-modifying CTE): one round trip under the lock instead of two.
        """
        if self.conn.dialect.name == "postgresql":
            doc = orjson.dumps(
                [
                    {
                        "i": i + 1,
                        "topic": ev.topic,
                        "focus_type": ev.focus_type,
                        "focus_id": ev.focus_id,
                        "focus_version": ev.focus_version,
                        "occurred_at": ev.occurred_at,
                    }
                    for i, ev in enumerate(events)
                ]
            ).decode()
            numbers = self.conn.exec_driver_sql(
                PG_APPEND, (len(events), self.tenant_id, sid, len(events), doc)
            ).scalars()
            return max(int(n) for n in numbers)
        last = self.conn.execute(
            update(S)
            .where(self._sub(sid))
            .values(events_count=S.c.events_count + len(events))
            .returning(S.c.events_count)
        ).scalar_one()
        first = int(last) - len(events) + 1
        self.conn.execute(
            insert(E),
            [
                {
                    "tenant_id": self.tenant_id,
                    "subscription_id": sid,
                    "event_number": first + i,
                    "topic": ev.topic,
                    "focus_type": ev.focus_type,
                    "focus_id": ev.focus_id,
                    "focus_version": ev.focus_version,
                    "occurred_at": ev.occurred_at,
                }
                for i, ev in enumerate(events)
            ],
        )
        return int(last)

    def events(self, sid: str, since: int, until: int | None, limit: int) -> list[Any]:
        """Events numbered > since (and ≤ until), oldest first."""
        return _events(self.conn, self.tenant_id, sid, since, until, limit)

    def delivery(self, sid: str) -> Any:
        stmt = select(D).where(D.c.tenant_id == self.tenant_id, D.c.subscription_id == sid)
        return self.conn.execute(stmt).first()


def _events(
    conn: Connection, tenant: str, sid: str, since: int, until: int | None, limit: int
) -> list[Any]:
    where = [E.c.tenant_id == tenant, E.c.subscription_id == sid, E.c.event_number > since]
    if until is not None:
        where.append(E.c.event_number <= until)
    return list(conn.execute(select(E).where(*where).order_by(E.c.event_number).limit(limit)))


class DeliveryQueue:
    """The delivery worker's statements (every tenant; a worker serves them all)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def claim(self, now: datetime) -> Any:
        """One subscription with work due, locked for this transaction; None when idle.

        Due: not `off`, past its retry time, and either undelivered events, a handshake
        to do (`requested`, or `error` with nothing to send: a probe),
        or a heartbeat. Rows another worker holds are skipped.
        """
        stmt = (
            select(
                D.c.tenant_id,
                D.c.subscription_id,
                D.c.delivered_through,
                D.c.failures,
                D.c.heartbeat_due_at,
                *(S.c[c] for c in CONFIG_COLUMNS),
                S.c.events_count,
            )
            .join(S, and_(S.c.tenant_id == D.c.tenant_id, S.c.id == D.c.subscription_id))
            .where(
                D.c.next_attempt_at <= now,
                S.c.status != "off",
                or_(
                    S.c.events_count > D.c.delivered_through,
                    S.c.status.in_(("requested", "error")),
                    and_(S.c.status == "active", D.c.heartbeat_due_at <= now),
                ),
            )
            .order_by(D.c.next_attempt_at)
            .limit(1)
            .with_for_update(of=D, skip_locked=True)
        )
        return self.conn.execute(stmt).first()

    def pending(self, tenant: str, sid: str, after: int, limit: int) -> list[Any]:
        return _events(self.conn, tenant, sid, after, None, limit)

    def record(self, tenant: str, sid: str, **values: Any) -> None:
        """Update the delivery row: delivered_through, failures, next_attempt_at, …"""
        self.conn.execute(
            update(D).where(D.c.tenant_id == tenant, D.c.subscription_id == sid).values(**values)
        )

    def set_status(self, tenant: str, sid: str, status: str, *, unless: Iterable[str] = ()) -> None:
        where = [S.c.tenant_id == tenant, S.c.id == sid]
        if unless:
            where.append(S.c.status.not_in(list(unless)))
        self.conn.execute(update(S).where(*where).values(status=status))
