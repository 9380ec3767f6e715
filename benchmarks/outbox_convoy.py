"""The outbox's write-side mechanism alone, old design against new (docs/events.md).

    .venv/bin/python -m benchmarks.outbox_convoy postgresql://postgres@127.0.0.1:5432/DB [n] [s]

On a migrated database (a benchmark's, after `make bench`): 16 threads, each running
transactions of one order-like INSERT plus the outbox write, then COMMIT, in windows that
alternate, per round:

- `none`: no outbox write;
- `old`: what order writes did before issue 14's fix — increment the subscription's counter
  (`UPDATE … RETURNING`) and insert the numbered event: the counter row stays locked until
  the commit, WAL flush included;
- `new`: what they do now — insert an un-numbered row into `subscription_outbox` (joined to
  the subscription's status), no shared row.

Prints transactions per second per window and each design's per-round ratio to `none`. Its
rows are in a tenant of its own and removed at the end.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
import uuid

import psycopg

TENANT = "outbox-convoy"
CLIENTS = 16
OLD = """
WITH c AS (UPDATE subscriptions SET events_count = events_count + 1
           WHERE tenant_id = %s AND id = 's1' RETURNING tenant_id, id, events_count)
INSERT INTO subscription_events (tenant_id, subscription_id, event_number, topic, focus_type,
                                 focus_id, focus_version, occurred_at)
SELECT c.tenant_id, c.id, c.events_count, 't', 'ServiceRequest', %s, 1, now() FROM c
"""
NEW = """
INSERT INTO subscription_outbox (tenant_id, subscription_id, topic, focus_type, focus_id,
                                 focus_version, occurred_at)
SELECT s.tenant_id, s.id, 't', 'ServiceRequest', %s, 1, now() FROM subscriptions s
WHERE s.tenant_id = %s AND s.id = 's1' AND s.status <> 'off'
"""


def _client(dsn: str, mode: str, stop: threading.Event, counts: list[int], i: int) -> None:
    with psycopg.connect(dsn) as conn:
        n = 0
        while not stop.is_set():
            rid = uuid.uuid4().hex
            conn.execute("INSERT INTO outbox_convoy_orders VALUES (%s, '{}')", (rid,))
            if mode == "old":
                conn.execute(OLD, (TENANT, rid))
            elif mode == "new":
                conn.execute(NEW, (rid, TENANT))
            conn.commit()
            n += 1
        counts[i] = n


def _cleanup(conn: psycopg.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS outbox_convoy_orders")
    for table, column in (
        ("subscription_outbox", "tenant_id"),
        ("subscription_events", "tenant_id"),
        ("subscriptions", "tenant_id"),
    ):
        conn.execute(f"DELETE FROM {table} WHERE {column} = %s", (TENANT,))


def main(dsn: str, rounds: int, window: float) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        _cleanup(conn)
        conn.execute("CREATE TABLE outbox_convoy_orders (id text PRIMARY KEY, doc jsonb)")
        conn.execute(
            "INSERT INTO subscriptions (tenant_id, id, topic, filters, status, endpoint, headers,"
            " content, timeout_seconds, max_count, events_count) VALUES"
            " (%s, 's1', 't', '[]', 'active', 'http://127.0.0.1:9/x', '[]', 'id-only', 10, 20, 0)",
            (TENANT,),
        )
    rates: dict[str, list[float]] = {"none": [], "old": [], "new": []}
    try:
        for r in range(1, rounds + 1):
            for mode in rates:
                stop, counts = threading.Event(), [0] * CLIENTS
                threads = [
                    threading.Thread(target=_client, args=(dsn, mode, stop, counts, i))
                    for i in range(CLIENTS)
                ]
                for t in threads:
                    t.start()
                time.sleep(window)
                stop.set()
                for t in threads:
                    t.join()
                rates[mode].append(sum(counts) / window)
                print(f"round {r} {mode}: {rates[mode][-1]:,.0f} tx/s", flush=True)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            _cleanup(conn)
    print(f"none: median {statistics.median(rates['none']):,.0f} tx/s")
    for mode in ("old", "new"):
        ratios = [a / b for a, b in zip(rates[mode], rates["none"], strict=True)]
        each = ", ".join(f"{100 * (1 - x):+.0f}%" for x in ratios)
        print(
            f"{mode}: median {statistics.median(rates[mode]):,.0f} tx/s; slower than none by "
            f"{each} (median {100 * (1 - statistics.median(ratios)):+.1f}%)"
        )


if __name__ == "__main__":
    main(
        sys.argv[1],
        int(sys.argv[2]) if len(sys.argv) > 2 else 4,
        float(sys.argv[3]) if len(sys.argv) > 3 else 5.0,
    )
