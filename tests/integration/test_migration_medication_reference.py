"""Revision 0006 indexes `MedicationRequest.medication` for orders stored before it, on both
backends (a database of its own each, migrated to 0005 first).

Before 0006 an order could already carry `medicationReference: Medication/<id>` (Medication
was not a stored type, so the reference went unchecked) and got no `medication` row; without
one, `MedicationRequest?medication=` and `_include=MedicationRequest:medication` (the CDS
Hooks prefetch) would miss it.
"""

from __future__ import annotations

from sqlalchemy import Engine, delete

from app.migrate import upgrade
from app.store import Repository
from app.store.search.query import parse_search
from app.store.statements import REF
from tests.fhir_data import medication_request

TENANT = "t-migration-0006"
REVISION = "0006"  # names this module's PostgreSQL database (tests/integration/conftest.py)


def _naming(medication: str) -> dict[str, object]:
    order = medication_request("p1", medicationReference={"reference": medication})
    del order["medicationCodeableConcept"]
    return order


def _ids(engine: Engine, params: list[tuple[str, str]]) -> set[str]:
    with engine.connect() as conn:
        repo = Repository(conn, TENANT, read_only=True)
        return {r.id for r in repo.search_all(parse_search("MedicationRequest", params))}


def test_0006_indexes_the_medication_of_existing_orders(engine: Engine) -> None:
    upgrade(engine, "0005")
    with engine.begin() as conn:
        repo = Repository(conn, TENANT)
        repo.create("MedicationRequest", "o-stored", _naming("Medication/amox-clav"))
        repo.create("MedicationRequest", "o-versioned", _naming("Medication/amox-clav/_history/2"))
        repo.create("MedicationRequest", "o-contained", _naming("#m1"))
        repo.create("MedicationRequest", "o-coded", medication_request("p1"))
        repo.flush()
        # What the code before 0006 wrote: every index row but these.
        conn.execute(delete(REF).where(REF.c.param == "medication"))
    wanted = [("medication", "Medication/amox-clav")]
    assert _ids(engine, wanted) == set()

    upgrade(engine, "head")
    assert _ids(engine, wanted) == {"o-stored", "o-versioned"}
    assert _ids(engine, [("medication", "Medication/other")]) == set()

    upgrade(engine, "head")  # already at head: nothing runs, nothing doubles
    assert _ids(engine, wanted) == {"o-stored", "o-versioned"}
