"""Delivering subscription notifications: one step of the worker (app/worker).

A step first numbers the events order writes staged since the last step (`number_events`,
one short transaction per subscription), then claims one subscription with work due
(`DeliveryQueue.claim`, FOR UPDATE SKIP LOCKED), sends one POST — a handshake while
`requested`, else up to `max_count` undelivered events in number order, else a heartbeat
when due — and records the outcome:

- 2xx: `delivered_through` moves to the last event sent; a handshake makes it `active`;
- anything else (a timeout, a refused connection, a redirect, a 4xx/5xx): the events stay
  undelivered and the next attempt waits `backoff` (exponential, with jitter); after
  `failures_before_error` failures in a row the subscription becomes `error` — delivery
  goes on at the longest interval, and the first success makes it `active` again.

On PostgreSQL the claim's row lock is held until the outcome is recorded, so two workers
never send the same events; a worker that dies mid-send loses its lock with its connection
and the events are sent again (at-least-once: repeats of one batch, never gaps). SQLite has
one writer at a time: there the step commits the claim before sending (so the POST does not
block every writer) and only one worker may run (docs/events.md).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection

from app import metrics
from app.auth import Principal
from app.db import Database
from app.domain.clock import utcnow
from app.domain.endpoints import EndpointPolicy
from app.services import provenance
from app.services.notifications import notification_bundle, status_parameters
from app.services.outbox import number_events
from app.store import DeliveryQueue, EventStore, Repository, StoredResource

WORKER_SUB = "orders-service-worker"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    error: str | None = None


#: (url, body, headers "Name: value", timeout seconds) → Outcome. app/worker/http.py sends.
Sender = Callable[[str, bytes, list[str], float], Outcome]


@dataclass(frozen=True)
class Retry:
    base_seconds: float = 1.0
    max_seconds: float = 300.0
    failures_before_error: int = 5

    def delay(self, failures: int, rng: Callable[[], float] = random.random) -> float:
        """base·2^(n-1), capped, times a jitter factor in [0.5, 1.5) (spreads retries)."""
        raw = min(self.max_seconds, self.base_seconds * 2 ** max(failures - 1, 0))
        return raw * (0.5 + rng())


@dataclass
class Job:
    row: Any
    kind: str  # handshake | event-notification | heartbeat
    events: list[Any]
    body: bytes


class Delivery:
    def __init__(
        self,
        database: Database,
        policy: EndpointPolicy,
        send: Sender,
        *,
        base_url: str = "",
        retry: Retry | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.database = database
        self.policy = policy
        self.send = send
        self.base_url = base_url
        self.retry = retry or Retry()
        self.clock = clock
        self.hold_lock = database.engine.dialect.name == "postgresql"

    def run_once(self) -> bool:
        """One delivery step; False when nothing was due."""
        numbered = number_events(self.database)
        return self._deliver() or numbered > 0

    def _deliver(self) -> bool:
        with self.database.engine.connect() as conn:
            with conn.begin() as tx:
                job = self._prepare(conn, self.clock())
                if job is None:
                    return False
                if self.hold_lock:
                    self._finish(conn, job, self._send(job))
                    return True
                tx.commit()
            outcome = self._send(job)
            with conn.begin():
                self._finish(conn, job, outcome)
        return True

    # ------------------------------------------------------------------ steps
    def _prepare(self, conn: Connection, now: datetime) -> Job | None:
        queue = DeliveryQueue(conn)
        row = queue.claim(now)
        if row is None:
            return None
        events: list[Any] = []
        pending = row.events_count > row.delivered_through
        if row.status == "requested" or (row.status == "error" and not pending):
            kind = "handshake"
        elif pending:
            kind = "event-notification"
            events = queue.pending(
                row.tenant_id, row.subscription_id, row.delivered_through, row.max_count
            )
        else:
            kind = "heartbeat"
        focus: dict[tuple[str, str, int], StoredResource] = {}
        if events and row.content == "full-resource":
            repo = Repository(conn, row.tenant_id, read_only=True)
            for ev in events:
                found = repo.vread(ev.focus_type, ev.focus_id, int(ev.focus_version))
                if found is not None:
                    focus[(ev.focus_type, ev.focus_id, int(ev.focus_version))] = found
        status = status_parameters(
            self.base_url,
            row.subscription_id,
            topic=row.topic,
            status=row.status,
            kind=kind,
            events_count=int(events[-1].event_number) if events else int(row.events_count),
            events=events,
            content=row.content,
        )
        bundle = notification_bundle(
            self.base_url, status, events=events, content=row.content, focus=focus, now=now
        )
        return Job(row, kind, events, orjson.dumps(bundle))

    def _send(self, job: Job) -> Outcome:
        row = job.row
        problem = self.policy.problem(row.tenant_id, row.endpoint)
        if problem:  # the configuration changed since the subscription was accepted
            return Outcome(False, error=problem)
        return self.send(row.endpoint, job.body, list(row.headers), float(row.timeout_seconds))

    def _finish(self, conn: Connection, job: Job, outcome: Outcome) -> None:
        row, now = job.row, self.clock()
        queue = DeliveryQueue(conn)
        tenant, sid = row.tenant_id, row.subscription_id
        beat = now + timedelta(seconds=row.heartbeat_seconds) if row.heartbeat_seconds else None
        if outcome.ok:
            values: dict[str, Any] = {
                "failures": 0,
                "next_attempt_at": now,
                "heartbeat_due_at": beat,
                "last_error": None,
            }
            if job.events:
                values["delivered_through"] = int(job.events[-1].event_number)
                metrics.delivered([(now - ev.occurred_at).total_seconds() for ev in job.events])
            queue.record(tenant, sid, **values)
            if row.status in ("requested", "error"):
                self._set_status(conn, row, "active")
            return
        failures = int(row.failures) + 1
        error = (outcome.error or f"HTTP {outcome.status}")[:255]
        wait = self.retry.delay(failures)
        queue.record(
            tenant,
            sid,
            failures=failures,
            next_attempt_at=now + timedelta(seconds=wait),
            last_error=error,
        )
        if failures >= self.retry.failures_before_error and row.status != "error":
            self._set_status(conn, row, "error")

    def _set_status(self, conn: Connection, row: Any, status: str) -> None:
        """The resource and the outbox row together, unless a client changed the
        subscription since it was claimed (its choice wins)."""
        tenant, sid = row.tenant_id, row.subscription_id
        repo = Repository(conn, tenant)
        current = repo.read("Subscription", sid, for_update=True)
        state = EventStore(conn, tenant).subscription(sid, for_update=True)
        if current is None or state is None:
            return
        if (state.status, state.endpoint) != (row.status, row.endpoint):
            return
        system = Principal(WORKER_SUB, tenant, frozenset({"ADMIN"}), frozenset({tenant}))
        doc = {**current.content, "status": status}
        reason = f"delivery: {row.status} -> {status}"
        provenance.write(repo, system, "Subscription", sid, doc, current.version_id, reason)
        repo.flush()
        DeliveryQueue(conn).set_status(tenant, sid, status)
