"""The subscription outbox: the only code that queries the outbox tables (outbox_tables.py).

`EventStore` is bound to a tenant, like the repository, and used inside a unit of work:
subscription configuration, and `stage`, which inserts a change's events for its matching
subscriptions into `subscription_outbox` *un-numbered*, in the order change's transaction.
It touches no shared row, so order writers never queue behind one another (they used to,
on the subscription's counter row, until they committed: issue 14's benchmark).

`EventNumbering` gives staged events their numbers after they commit: per subscription,
under that subscription's row lock, in a short transaction of its own (the worker, or
`$status`/`$events`). `DeliveryQueue` is the worker's view across tenants: claim one due
subscription with `SELECT … FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite ignores the clause
and serialises writers anyway), read its undelivered events, record the outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Table, and_, delete, func, insert, literal, or_, select, update

from app.store.outbox_tables import (
    SubscriptionDeliveryRow,
    SubscriptionEventRow,
    SubscriptionOutboxRow,
    SubscriptionRow,
)

S = cast(Table, SubscriptionRow.__table__)
O = cast(Table, SubscriptionOutboxRow.__table__)  # noqa: E741 (the outbox, as S/E/D)
#: PostgreSQL: stage every (subscription, event) of a transaction in one statement, only for
#: subscriptions not `off` now (the writer's list of subscriptions may be a second old).
#: Identity values follow the ORDER BY, so one transaction's events keep their order.
#: Parameters: tenant, rows as JSON.
PG_STAGE = """
INSERT INTO subscription_outbox (tenant_id, subscription_id, topic, focus_type, focus_id,
                                 focus_version, occurred_at)
SELECT s.tenant_id, s.id, e.topic, e.focus_type, e.focus_id, e.focus_version, e.occurred_at
FROM jsonb_to_recordset(CAST(%s AS jsonb)) AS e(i bigint, sid text, topic text,
     focus_type text, focus_id text, focus_version integer, occurred_at timestamptz)
JOIN subscriptions s ON s.tenant_id = %s AND s.id = e.sid AND s.status <> 'off'
ORDER BY e.i
"""
#: PostgreSQL: move a subscription's staged events (oldest first) to `subscription_events`
#: with numbers base+1.., and set the counter, in one statement. Run only while holding the
#: subscription's row lock, in a statement begun after taking it (so it sees every earlier
#: numbering). Parameters: tenant, subscription, limit, base, base, tenant, subscription.
PG_NUMBER = """
WITH moved AS (
  DELETE FROM subscription_outbox WHERE seq IN (
    SELECT seq FROM subscription_outbox WHERE tenant_id = %s AND subscription_id = %s
    ORDER BY seq LIMIT %s)
  RETURNING seq, tenant_id, subscription_id, topic, focus_type, focus_id, focus_version,
            occurred_at
), numbered AS (
  INSERT INTO subscription_events (tenant_id, subscription_id, event_number, topic,
                                   focus_type, focus_id, focus_version, occurred_at)
  SELECT tenant_id, subscription_id, %s + row_number() OVER (ORDER BY seq), topic,
         focus_type, focus_id, focus_version, occurred_at
  FROM moved
  RETURNING 1
)
UPDATE subscriptions SET events_count = %s + (SELECT count(*) FROM numbered)
WHERE tenant_id = %s AND id = %s
RETURNING events_count
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
    def stage(self, events: Sequence[tuple[str, NewEvent]]) -> None:
        """Insert (subscription id, event) pairs un-numbered, in this order, for the
        subscriptions that are not `off` when this statement runs.

        No row is updated, so concurrent writers never wait for one another here; the
        numbers come after the commit (`EventNumbering`).
        """
        rows = [
            {
                "i": i,
                "sid": sid,
                "topic": ev.topic,
                "focus_type": ev.focus_type,
                "focus_id": ev.focus_id,
                "focus_version": ev.focus_version,
                "occurred_at": ev.occurred_at,
            }
            for i, (sid, ev) in enumerate(events)
        ]
        if self.conn.dialect.name == "postgresql":
            doc = orjson.dumps(rows).decode()
            self.conn.exec_driver_sql(PG_STAGE, (doc, self.tenant_id))
            return
        for row in rows:  # SQLite: the portable form, one statement per event
            cols = ("topic", "focus_type", "focus_id", "focus_version", "occurred_at")
            values = [literal(row[c], O.c[c].type).label(c) for c in cols]
            source = select(S.c.tenant_id, S.c.id, *values).where(
                self._sub(str(row["sid"])), S.c.status != "off"
            )
            self.conn.execute(
                insert(O).from_select(["tenant_id", "subscription_id", *cols], source)
            )

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


class EventNumbering:
    """Numbers staged events after their transactions committed (docs/events.md, "Event
    numbers"). The caller owns the transaction: one subscription per transaction, short.

    Per subscription, under its `subscriptions` row lock (FOR UPDATE; the worker skips a
    row another session holds), the staged rows visible now are numbered in `seq` order
    from `events_count + 1` and moved to `subscription_events`, and the counter set — all or
    nothing. Rows committed later wait for the next call; a rolled-back writer's rows never
    existed, so no number is ever taken back: no gaps.
    """

    BATCH = 1000

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def staged(self, limit: int = 100) -> list[tuple[str, str]]:
        """(tenant, subscription) pairs with staged events, any tenant."""
        stmt = select(O.c.tenant_id, O.c.subscription_id).distinct().limit(limit)
        return [(r.tenant_id, r.subscription_id) for r in self.conn.execute(stmt)]

    def number(self, tenant: str, sid: str, *, wait: bool = True) -> int | None:
        """Number up to BATCH staged events of one subscription; how many, or None when
        `wait` is False and another session holds the subscription."""
        lock = (
            select(S.c.events_count)
            .where(S.c.tenant_id == tenant, S.c.id == sid)
            .with_for_update(skip_locked=not wait)
        )
        base = self.conn.execute(lock).scalar_one_or_none()
        if base is None:
            return None
        base = int(base)
        if self.conn.dialect.name == "postgresql":
            # A new statement, so a new snapshot taken after the lock: earlier numberings
            # (committed before we got the lock) are visible, none can run concurrently.
            last = self.conn.exec_driver_sql(
                PG_NUMBER, (tenant, sid, self.BATCH, base, base, tenant, sid)
            ).scalar_one()
            return int(last) - base
        rows = list(
            self.conn.execute(
                select(O)
                .where(O.c.tenant_id == tenant, O.c.subscription_id == sid)
                .order_by(O.c.seq)
                .limit(self.BATCH)
            )
        )
        if not rows:
            return 0
        self.conn.execute(
            insert(E),
            [
                {
                    "tenant_id": tenant,
                    "subscription_id": sid,
                    "event_number": base + i + 1,
                    "topic": r.topic,
                    "focus_type": r.focus_type,
                    "focus_id": r.focus_id,
                    "focus_version": r.focus_version,
                    "occurred_at": r.occurred_at,
                }
                for i, r in enumerate(rows)
            ],
        )
        self.conn.execute(delete(O).where(O.c.seq.in_([r.seq for r in rows])))
        self.conn.execute(
            update(S)
            .where(S.c.tenant_id == tenant, S.c.id == sid)
            .values(events_count=base + len(rows))
        )
        return len(rows)


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

    def backlog(self) -> tuple[int, datetime | None]:
        """Events not yet delivered (staged, and numbered past `delivered_through` of
        subscriptions that are not `off`), and when the oldest of them was written."""
        staged = self.conn.execute(select(func.count(), func.min(O.c.occurred_at))).one()
        on = and_(S.c.tenant_id == D.c.tenant_id, S.c.id == D.c.subscription_id)
        numbered = self.conn.execute(
            select(func.coalesce(func.sum(S.c.events_count - D.c.delivered_through), 0))
            .select_from(S.join(D, on))
            .where(S.c.status != "off")
        ).scalar_one()
        head = self.conn.execute(
            select(func.min(E.c.occurred_at))
            .select_from(
                E.join(
                    D,
                    and_(
                        E.c.tenant_id == D.c.tenant_id,
                        E.c.subscription_id == D.c.subscription_id,
                        E.c.event_number == D.c.delivered_through + 1,
                    ),
                ).join(S, on)
            )
            .where(S.c.status != "off")
        ).scalar_one()
        oldest = [t for t in (staged[1], head) if t is not None]
        return int(staged[0]) + int(numbered), min(oldest, default=None)

    def set_status(self, tenant: str, sid: str, status: str, *, unless: Iterable[str] = ()) -> None:
        where = [S.c.tenant_id == tenant, S.c.id == sid]
        if unless:
            where.append(S.c.status.not_in(list(unless)))
        self.conn.execute(update(S).where(*where).values(status=status))
