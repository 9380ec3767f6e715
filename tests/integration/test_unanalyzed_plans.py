"""Hot reads on a fresh, never-analyzed PostgreSQL database use their intended indexes.

A database filled after `migrate` has no planner statistics while autovacuum is off (as on
the development machines), and then a GET by id scanned every order of its type and an
order's alerts were a nested loop over every DetectedIssue (docs/performance.md, "Plans that
do not depend on luck"). The store collects statistics itself where the server does not
(app/store/statistics.py): this test fills a fresh database through the repository without
any ANALYZE, checks it really has no statistics, runs the serving process's statistics
round, and asserts by EXPLAIN — not timing — that each hot read's statement uses the index
meant for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event

from app.db import make_engine
from app.migrate import upgrade
from app.settings import Settings
from app.store import Repository
from app.store.search.query import parse_search
from app.store.statistics import StatisticsKeeper, autovacuum_analyzes, stale_tables
from tests.conftest import PG_ADMIN_URL, PG_TEST_DB

TENANT = "plans"
ORDERS = 1200  # with their alerts, Provenance and Tasks: about 5,000 resources


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    name = f"{PG_TEST_DB}_plans"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    settings = Settings(
        instance_path=Path(tmp_path_factory.mktemp("plans")), database_url=f"{base}/{name}"
    )
    eng = make_engine(settings)
    upgrade(eng)  # analyzes the empty tables: no statistics come of that
    yield eng
    eng.dispose()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _ref(kind: str, rid: str) -> dict[str, str]:
    return {"reference": f"{kind}/{rid}"}


@pytest.fixture(scope="module")
def data(engine: Engine) -> dict[str, Any]:
    """Patients with encounters, medication orders each with two alerts, a Provenance and
    (every other one) a Task: what the legacy create and `$activate` leave behind."""
    orders: list[str] = []
    with engine.connect() as conn:
        conn.begin()
        repo = Repository(conn, TENANT)
        patients = [f"pat-{n}" for n in range(60)]
        for pid in patients:
            repo.create("Patient", pid, {"resourceType": "Patient"})
            repo.create(
                "Encounter",
                f"enc-{pid}",
                {
                    "resourceType": "Encounter",
                    "status": "in-progress",
                    "subject": _ref("Patient", pid),
                },
            )
        for n in range(ORDERS):
            pid, oid = patients[n % len(patients)], f"ord-{n:05d}"
            orders.append(oid)
            repo.create(
                "MedicationRequest",
                oid,
                {
                    "resourceType": "MedicationRequest",
                    "status": "active" if n % 3 else "draft",
                    "intent": "order",
                    "subject": _ref("Patient", pid),
                    "encounter": _ref("Encounter", f"enc-{pid}"),
                    "medicationCodeableConcept": {
                        "coding": [
                            {
                                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                "code": str(n % 40),
                            }
                        ]
                    },
                },
            )
            for k in range(2):
                repo.create(
                    "DetectedIssue",
                    f"di-{n}-{k}",
                    {
                        "resourceType": "DetectedIssue",
                        "status": "preliminary",
                        "patient": _ref("Patient", pid),
                        "implicated": [_ref("MedicationRequest", oid)],
                    },
                )
            repo.create(
                "Provenance",
                f"prov-{n}",
                {
                    "resourceType": "Provenance",
                    "target": [_ref("MedicationRequest", oid)],
                    "recorded": "2026-01-01T00:00:00Z",
                    "agent": [{"who": {"display": "test"}}],
                },
            )
            if n % 2:
                repo.create(
                    "Task",
                    f"task-{n}",
                    {
                        "resourceType": "Task",
                        "status": "requested",
                        "intent": "order",
                        "focus": _ref("MedicationRequest", oid),
                        "for": _ref("Patient", pid),
                    },
                )
        repo.flush()
        conn.commit()
    return {"orders": orders, "patient": "pat-7", "order": orders[7]}


def _statements(engine: Engine, call: Callable[[Repository], Any]) -> list[tuple[str, Any]]:
    captured: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, _x: Any, _m: bool) -> None:
        captured.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with engine.connect() as conn:
            call(Repository(conn, TENANT))
            conn.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return captured


def _plans(engine: Engine, call: Callable[[Repository], Any]) -> list[str]:
    out = []
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for statement, params in _statements(engine, call):
            cur.execute("EXPLAIN " + statement, params)
            out.append("\n".join(line for (line,) in cur.fetchall()))
        raw.rollback()
    finally:
        raw.close()
    return out


#: (read, what it calls, indexes its plan must use). The alerts and Tasks of a page of
#: orders are found through the index table's primary key, then each resource by its own.
HOT_READS: list[tuple[str, Callable[[Repository, dict[str, Any]], Any], tuple[str, ...]]] = [
    ("read by id", lambda r, d: r.read("MedicationRequest", d["order"]), ("pk_resources",)),
    (
        "read any order type (legacy GET)",
        lambda r, d: r.read_any(("MedicationRequest", "ServiceRequest"), d["order"]),
        ("pk_resources",),
    ),
    (
        "history",
        lambda r, d: r.history("MedicationRequest", d["order"], count=10),
        ("pk_resources", "pk_resource_versions"),
    ),
    (
        "alerts of a page of orders",
        lambda r, d: r.referencing(
            "DetectedIssue", "implicated", [("MedicationRequest", o) for o in d["orders"][:20]]
        ),
        ("pk_sp_reference", "pk_resources"),
    ),
    (
        "Tasks of a page of orders",
        lambda r, d: r.referencing(
            "Task", "focus", [("MedicationRequest", o) for o in d["orders"][:20]]
        ),
        ("pk_sp_reference", "pk_resources"),
    ),
    (
        "creation times of a page of orders",
        lambda r, d: r.created_at("MedicationRequest", d["orders"][:20]),
        ("pk_resource_versions",),
    ),
    (
        "Patient + Encounter check",
        lambda r, d: r.fetch_many(
            [("Patient", d["patient"]), ("Encounter", f"enc-{d['patient']}")]
        ),
        ("pk_resources",),
    ),
    (
        "search patient + status",
        lambda r, d: r.search(
            parse_search(
                "MedicationRequest",
                [("patient", d["patient"]), ("status", "active"), ("_count", "20")],
            )
        ),
        ("ix_resources_patient_status",),
    ),
    (
        "legacy list page (a patient's orders, newest first)",
        lambda r, d: r.search(
            parse_search(
                "MedicationRequest",
                [("patient", d["patient"]), ("_sort", "-_id"), ("_count", "20")],
                strict=True,
            )
        ),
        ("ix_resources_patient_id",),
    ),
    (
        "CDS: a patient's open orders with a code",
        lambda r, d: r.of_patient(
            "MedicationRequest",
            d["patient"],
            statuses=["active", "draft"],
            codes=[("http://www.nlm.nih.gov/research/umls/rxnorm", "7")],
        ),
        ("ix_resources_patient_status",),
    ),
]


def test_the_fresh_database_has_no_statistics_until_the_store_collects_them(
    engine: Engine, data: dict[str, Any]
) -> None:
    with engine.connect() as conn:
        autovacuum = autovacuum_analyzes(conn)
    if autovacuum:
        # A server that keeps its own statistics: the keeper must stand aside (no ANALYZE
        # rounds of ours competing with autovacuum). This machine kind runs with it off,
        # which is the branch below.
        assert StatisticsKeeper(engine).run_once() is None
        return
    with engine.connect() as conn:
        assert {"resources", "sp_reference", "resource_versions"} <= set(stale_tables(conn))
        assert (
            conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stats WHERE tablename = 'resources'"
            ).scalar_one()
            == 0
        )
    analyzed = StatisticsKeeper(engine).run_once()  # the round a serving process runs
    assert analyzed is not None and "resources" in analyzed
    with engine.connect() as conn:
        assert stale_tables(conn) == []
    assert StatisticsKeeper(engine).run_once() == []  # nothing changed since: nothing to do


@pytest.mark.parametrize("name,call,indexes", HOT_READS, ids=[h[0] for h in HOT_READS])
def test_hot_read_uses_its_index(
    engine: Engine,
    data: dict[str, Any],
    name: str,
    call: Callable[[Repository, dict[str, Any]], Any],
    indexes: tuple[str, ...],
) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if stale_tables(conn):  # run alone (-k), or after the first test: the keeper's round
            StatisticsKeeper(engine).run_once()
    plans = _plans(engine, lambda repo: call(repo, data))
    text = "\n\n".join(plans)
    assert plans, f"{name}: no statement captured"
    for index in indexes:
        used = f"using {index} " in text or f"Index Scan on {index} " in text  # bitmap scans
        assert used, f"{name}: expected {index} in\n{text}"
    assert "Seq Scan" not in text, f"{name}: sequential scan in\n{text}"
