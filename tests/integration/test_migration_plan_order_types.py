"""Revision 0004 indexes the order types of order sets stored before it, on both backends.

Sets written by the code before 0004 have no `order-type` rows; the revision must give
them the rows the repository now writes, or the legacy `orderType` filter (answered from
that index) would miss them. Each backend gets a database of its own, migrated to 0003.
"""

from __future__ import annotations

from sqlalchemy import Engine, delete

from app.legacy_api import mapping, schemas
from app.migrate import upgrade
from app.store import Repository
from app.store.search.query import parse_search
from app.store.statements import TOK
from tests.legacy_data import lab_template, order_set

TENANT = "t-migration-0004"
REVISION = "0004"  # names this module's PostgreSQL database (tests/integration/conftest.py)


def _ids(engine: Engine, order_type: str) -> set[str]:
    with engine.connect() as conn:
        repo = Repository(conn, TENANT, read_only=True)
        query = parse_search("PlanDefinition", [("order-type", order_type)])
        return {r.id for r in repo.search_all(query)}


def test_0004_indexes_the_order_types_of_existing_sets(engine: Engine) -> None:
    upgrade(engine, "0003")
    medication = order_set()["orderTemplates"][0]
    sets = {
        "both": order_set("Both"),
        "lab": order_set("Lab only", {**lab_template(), "orderType": "lab"}),
        "medication": order_set("Medication only", medication),
    }
    with engine.begin() as conn:
        repo = Repository(conn, TENANT)
        for rid, payload in sets.items():
            plan = mapping.order_set_to_fhir(schemas.load(schemas.OrderSetCreateSchema, payload))
            repo.create("PlanDefinition", f"set-{rid}", plan)
        repo.flush()
        # What the code before 0004 wrote: every index row but these.
        conn.execute(delete(TOK).where(TOK.c.param == "order-type"))
    assert _ids(engine, "laboratory") == set()

    upgrade(engine, "head")
    assert _ids(engine, "laboratory") == {"set-both", "set-lab"}
    assert _ids(engine, "medication") == {"set-both", "set-medication"}
    assert _ids(engine, "diet") == set()

    upgrade(engine, "head")  # already at head: nothing runs, nothing doubles
    assert _ids(engine, "laboratory") == {"set-both", "set-lab"}
