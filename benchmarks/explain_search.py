"""Load N MedicationRequests into a scratch PostgreSQL database and EXPLAIN the patient search.

Usage: .venv/bin/python benchmarks/explain_search.py [--rows 100000]

Rows go in through the repository (the real write path, in large transactions), then the
exact statements the repository issues for `MedicationRequest?patient=X&status=active` are
captured and run under EXPLAIN (ANALYZE, BUFFERS).
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import psycopg
from sqlalchemy import create_engine, event

from app.domain.ids import new_id
from app.migrate import upgrade
from app.store import Repository
from app.store.search.query import parse_search

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB = "orders_explain"
STATUSES = ["active", "draft", "completed", "on-hold", "stopped"]


def _med(pid: str, i: int) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": random.choice(STATUSES),
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": str(300000 + i % 500),
                }
            ]
        },
        "authoredOn": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00Z",
        "identifier": [{"system": "urn:placer", "value": f"P{i}"}],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--patients", type=int, default=2_000)
    args = parser.parse_args()
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{DB}")
    upgrade(engine)
    random.seed(7)
    patients = [f"pat-{i}" for i in range(args.patients)]
    started = time.perf_counter()
    done = 0
    while done < args.rows:
        with engine.begin() as conn:
            repo = Repository(conn, "tenant-a")
            for i in range(done, min(done + 5000, args.rows)):
                repo.create(
                    "MedicationRequest",
                    new_id("MedicationRequest"),
                    _med(random.choice(patients), i),
                )
            repo.flush()  # the repository defers its inserts; `engine.begin()` only commits
        done = min(done + 5000, args.rows)
    print(f"loaded {args.rows} MedicationRequests in {time.perf_counter() - started:.1f}s")
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()

    captured: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _capture(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        captured.append((statement, params))

    target = patients[0]
    with engine.connect() as conn:
        page = Repository(conn, "tenant-a").search(
            parse_search("MedicationRequest", [("patient", target), ("status", "active")])
        )
    print(f"patient {target}: {page.total} active of its orders, page of {len(page.resources)}")
    event.remove(engine, "before_cursor_execute", _capture)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for statement, params in captured:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params)
            print("\n-- " + " ".join(statement.split())[:160] + " ...")
            for (line,) in cur.fetchall():
                print(line)
    finally:
        raw.close()


if __name__ == "__main__":
    main()
