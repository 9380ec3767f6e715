"""Issue 12, item 1's last bullet: an order naming a *stored* Medication
(`medicationReference: Medication/<id>`) is checked exactly like one naming the drug itself.

The Medication is read from the tenant's store (never another tenant's) and resolved through
its `code`, then its `ingredient[].itemCodeableConcept`, the path a contained Medication takes.
Runs on SQLite and PostgreSQL (the `app` fixture). Codes: 562251 amoxicillin 875 MG /
clavulanate potassium 125 MG tablet, 723 amoxicillin (ingredient), 310965 ibuprofen 200 MG
tablet, 855332 warfarin sodium 5 MG tablet, 764146007 penicillin (SNOMED substance).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.auth import Principal
from app.runtime import get_runtime
from app.services.unit_of_work import UnitOfWork
from app.store.connection import StoreConnection
from tests.clinical.ward import RXNORM, SNOMED, Ward, issue_codes, rules
from tests.conftest import TokenFactory
from tests.fhir_data import bundle, entry
from tests.legacy_data import LegacyApi, legacy_id

AMOX_CLAV = "562251"
AMOXICILLIN = "723"
IBUPROFEN_200 = "310965"
WARFARIN_5 = "855332"
PENICILLIN_SUBSTANCE = "764146007"


def rx(code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": RXNORM, "code": code, **({"display": display} if display else {})}
    return {"coding": [coding]}


def stock(ward: Ward, body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    """A Medication in the tenant's formulary (written by an ADMIN); its id."""
    doc = {"resourceType": "Medication", "status": "active", **body}
    r = ward.client.post("/fhir/R4/Medication", json=doc, headers=headers or ward.admin)
    return str(ward.ok(r, 201)["id"])


def naming(ward: Ward, pid: str, medication_id: str) -> dict[str, Any]:
    """A draft MedicationRequest whose drug is the stored Medication."""
    body = ward.medication(pid, "unused")
    del body["medicationCodeableConcept"]
    body["medicationReference"] = {"reference": f"Medication/{medication_id}"}
    return body


def penicillin_allergic(ward: Ward) -> str:
    pid = ward.patient()
    ward.allergy(pid, PENICILLIN_SUBSTANCE, system=SNOMED, criticality="high")
    return pid


def on_file(ward: Ward, body: dict[str, Any]) -> dict[str, Any]:
    """An active order (its warnings acknowledged on the way)."""
    order = ward.order(body)
    for alert in ward.alerts(order):
        if alert["severity"] == "moderate":
            ward.ok(ward.acknowledge(order, alert["id"]))
    ward.ok(ward.activate(order))
    return order


def by_rule(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Stored alerts (DetectedIssues) by the CDS rule that raised them."""
    return {
        c["code"]: a
        for a in alerts
        for c in a["code"]["coding"]
        if c["system"] == "urn:orders-service:cds-rule"
    }


def topics(cards: list[dict[str, Any]]) -> dict[str, str]:
    return {c["source"]["topic"]["code"]: c["indicator"] for c in cards}


AMOX_CLAV_PRODUCT = {"code": rx(AMOX_CLAV)}
#: No code (a local formulary item), identified by its ingredient only.
AMOXICILLIN_BY_INGREDIENT = {
    "code": {"text": "Amoxicillin suspension (ward stock)"},
    "ingredient": [{"itemCodeableConcept": rx(AMOXICILLIN), "isActive": True}],
}


@pytest.mark.parametrize(
    "medication", [AMOX_CLAV_PRODUCT, AMOXICILLIN_BY_INGREDIENT], ids=["code", "ingredient"]
)
def test_stored_penicillin_medication_is_a_hard_stop_at_create(
    ward: Ward, medication: dict[str, Any]
) -> None:
    pid = penicillin_allergic(ward)
    mid = stock(ward, medication)
    r = ward.create(naming(ward, pid, mid))
    assert r.status_code == 422, r.json
    assert "CDS_HARD_STOP" in issue_codes(r.json)
    assert "ALLERGY-CLASS" in issue_codes(r.json)
    assert ward.count("MedicationRequest", pid) == 0


@pytest.mark.parametrize(
    "medication", [AMOX_CLAV_PRODUCT, AMOXICILLIN_BY_INGREDIENT], ids=["code", "ingredient"]
)
def test_stored_penicillin_medication_is_a_hard_stop_at_activation(
    ward: Ward, medication: dict[str, Any]
) -> None:
    """The allergy is recorded after the draft: order-sign reads the Medication again."""
    pid = ward.patient()
    mid = stock(ward, medication)
    order = ward.order(naming(ward, pid, mid))
    assert "ALLERGY-CLASS" not in rules(ward.alerts(order))
    ward.allergy(pid, PENICILLIN_SUBSTANCE, system=SNOMED, criticality="high")
    r = ward.activate(order)
    assert r.status_code == 422, r.json
    assert "CDS_HARD_STOP" in issue_codes(r.json)
    assert ward.read(order)["status"] == "draft"


def test_warfarin_order_warns_about_ibuprofen_on_file_by_stored_medication(ward: Ward) -> None:
    pid = ward.patient()
    mid = stock(ward, {"code": rx(IBUPROFEN_200, "ibuprofen 200 MG Oral Tablet")})
    on_file(ward, naming(ward, pid, mid))
    order = ward.order(ward.medication(pid, WARFARIN_5))
    alerts = by_rule(ward.alerts(order))
    assert "DDI-WARFARIN-NSAID" in alerts, alerts.keys()
    assert alerts["DDI-WARFARIN-NSAID"]["severity"] == "moderate"  # warning
    assert "ibuprofen" in alerts["DDI-WARFARIN-NSAID"]["detail"]
    assert "DRUG-UNKNOWN-OTHER" not in alerts


def test_cds_hooks_draft_reads_the_stored_medication(ward: Ward) -> None:
    """Neither the draft Bundle nor a prefetch carries the Medication: the store's is used."""
    pid = penicillin_allergic(ward)
    mid = stock(ward, AMOX_CLAV_PRODUCT)
    found = topics(ward.order_select(pid, naming(ward, pid, mid)))
    assert found.get("ALLERGY-CLASS") == "critical", found
    assert "DRUG-UNKNOWN" not in found


def test_cds_hooks_prefetch_may_carry_the_medication(ward: Ward) -> None:
    """A Medication in a prefetch Bundle (e.g. from `_include`) is used as sent."""
    pid = penicillin_allergic(ward)
    medication = {"resourceType": "Medication", "id": "sent-1", **AMOX_CLAV_PRODUCT}
    prefetch = {
        "medications": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": medication, "search": {"mode": "include"}}],
        }
    }
    cards = ward.order_select(pid, naming(ward, pid, "sent-1"), prefetch=prefetch)
    assert topics(cards).get("ALLERGY-CLASS") == "critical"


@pytest.mark.parametrize("allergic", [True, False], ids=["allergic", "not-allergic"])
def test_transaction_writing_the_medication_and_the_order_checks_the_new_medication(
    client: FlaskClient, ward: Ward, headers: TokenFactory, allergic: bool
) -> None:
    """A transaction that stocks the Medication and orders it (`urn:uuid:` reference): the
    order's check reads the Medication written earlier in the same unit of work."""
    pid = penicillin_allergic(ward) if allergic else ward.patient()
    med_urn = f"urn:uuid:{uuid.uuid4()}"
    order = naming(ward, pid, "x")
    order["medicationReference"] = {"reference": med_urn}
    body = bundle(
        "transaction",
        entry("POST", "MedicationRequest", order),
        entry(
            "POST",
            "Medication",
            {"resourceType": "Medication", **AMOX_CLAV_PRODUCT},
            full_url=med_urn,
        ),
    )
    r = client.post("/fhir/R4", json=body, headers=headers("ADMIN", "CLINICIAN"))
    if allergic:
        assert r.status_code == 422, r.json
        assert "CDS_HARD_STOP" in issue_codes(r.json)
        assert ward.client.get("/fhir/R4/Medication", headers=ward.admin).json["total"] == 0
        return
    assert r.status_code == 200, r.json
    stored = r.json["entry"][0]["resource"]
    assert stored["medicationReference"]["reference"].startswith("Medication/med-")
    assert "DRUG-UNKNOWN" not in rules(ward.alerts(stored))


# ------------------------------------------------------------------ a Medication that is not there
def test_order_naming_a_missing_medication_is_refused_like_any_missing_reference(
    ward: Ward,
) -> None:
    pid = ward.patient()
    r = ward.create(naming(ward, pid, "no-such-med"))
    assert r.status_code == 400, r.json
    assert issue_codes(r.json) == ["VALIDATION_ERROR"]
    issue = r.json["issue"][0]
    assert issue["code"] == "not-found"
    assert issue["expression"] == ["MedicationRequest.medicationReference"]
    assert ward.count("MedicationRequest", pid) == 0


def test_cds_hooks_draft_naming_a_missing_medication_warns_even_with_nothing_to_compare(
    ward: Ward,
) -> None:
    """No allergy, no other order: an unknown *code* would be `info`; a Medication nobody can
    read is a `warning` (the order names no drug at all)."""
    pid = ward.patient()
    found = topics(ward.order_select(pid, naming(ward, pid, "no-such-med")))
    assert found == {"DRUG-UNKNOWN": "warning"}


def test_another_servers_medication_is_not_looked_up_here_by_its_id(
    client: FlaskClient, ward: Ward
) -> None:
    """`https://…/Medication/<id>` is another server's resource: this tenant's Medication with
    the same id may be another drug, so it is not used; the order is reported unidentified."""
    pid = penicillin_allergic(ward)
    body = {"resourceType": "Medication", "id": "house-2", **AMOX_CLAV_PRODUCT}
    ward.ok(client.put("/fhir/R4/Medication/house-2", json=body, headers=ward.admin), 201)
    draft = naming(ward, pid, "house-2")
    assert "ALLERGY-CLASS" in topics(ward.order_select(pid, draft))
    draft["medicationReference"] = {"reference": "https://ehr.example/fhir/Medication/house-2"}
    found = topics(ward.order_select(pid, draft))
    assert found == {"DRUG-UNKNOWN": "warning"}, found


def _write_unchecked(app: Flask, tenant: str, body: dict[str, Any]) -> str:
    """An order stored before Medications were (its reference never checked): written through
    the repository, as the migration-era data it stands for."""
    with app.app_context():
        system = Principal("test", tenant, frozenset({"ADMIN"}), frozenset({tenant}))
        with UnitOfWork(get_runtime().database, system) as uow:
            rid = f"ord-legacy-{uuid.uuid4().hex[:8]}"
            uow.repo.create("MedicationRequest", rid, {**body, "status": "active"})
    return rid


def test_order_on_file_naming_a_missing_medication_makes_a_warfarin_order_warn(
    app: Flask, ward: Ward, tenant: str
) -> None:
    pid = ward.patient()
    old = _write_unchecked(app, tenant, naming(ward, pid, "gone-1"))
    order = ward.order(ward.medication(pid, WARFARIN_5))
    alerts = by_rule(ward.alerts(order))
    assert alerts["DRUG-UNKNOWN-OTHER"]["severity"] == "moderate"
    assert "could not be read" in alerts["DRUG-UNKNOWN-OTHER"]["detail"]
    assert alerts["DRUG-UNKNOWN-OTHER"]["implicated"][1]["reference"] == f"MedicationRequest/{old}"
    r = ward.activate(order)
    assert (r.status_code, issue_codes(r.json)[0]) == (422, "CDS_WARNING_UNACKNOWLEDGED")


# ------------------------------------------------------------------ tenants
def test_another_tenants_medication_is_never_read(
    client: FlaskClient, ward: Ward, headers: TokenFactory
) -> None:
    """Both tenants hold `Medication/house-1`: here it is ibuprofen, there amoxicillin/
    clavulanate. This tenant's penicillin-allergic patient on warfarin gets the NSAID
    interaction and no allergy alert; an id only the other tenant holds resolves to nothing."""
    other = f"t-{uuid.uuid4().hex[:12]}"
    there = headers("ADMIN", tenant_id=other)
    for who, code in ((ward.admin, IBUPROFEN_200), (there, AMOX_CLAV)):
        body = {"resourceType": "Medication", "id": "house-1", "code": rx(code)}
        assert client.put("/fhir/R4/Medication/house-1", json=body, headers=who).status_code == 201
    body = {"resourceType": "Medication", "code": rx(AMOX_CLAV)}
    only_there = ward.ok(client.post("/fhir/R4/Medication", json=body, headers=there), 201)["id"]

    pid = penicillin_allergic(ward)
    on_file(ward, ward.medication(pid, WARFARIN_5))
    found = topics(ward.order_select(pid, naming(ward, pid, "house-1")))
    assert "DDI-WARFARIN-NSAID" in found and "ALLERGY-CLASS" not in found, found
    order = ward.order(naming(ward, pid, "house-1"))
    assert "ALLERGY-CLASS" not in rules(ward.alerts(order))

    found = topics(ward.order_select(pid, naming(ward, pid, only_there)))
    assert found.get("DRUG-UNKNOWN") == "warning" and "ALLERGY-CLASS" not in found, found
    r = ward.create(naming(ward, pid, only_there))
    assert r.status_code == 400 and r.json["issue"][0]["code"] == "not-found"
    assert client.get(f"/fhir/R4/Medication/{only_there}", headers=ward.doc).status_code == 404
    search = client.get(f"/fhir/R4/Medication?code={AMOX_CLAV}", headers=ward.doc).json
    assert search["total"] == 0


# ------------------------------------------------------------------ one read per order check
def test_one_batched_medication_read_per_order_check(
    ward: Ward, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three orders on file, each naming another stored Medication, and a new one naming a
    fourth: the context is built with one `fetch_many` for all four (a spy that counts and
    delegates to the real store)."""
    pid = ward.patient()
    for code in ("198014", "310965", "308191"):  # naproxen, ibuprofen, amoxicillin
        on_file(ward, naming(ward, pid, stock(ward, {"code": rx(code)})))
    mid = stock(ward, {"code": rx(WARFARIN_5)})
    calls: list[list[tuple[str, str]]] = []
    real = StoreConnection.fetch_many

    def spy(self: StoreConnection, refs: Any) -> Any:
        refs = list(refs)
        calls.append(refs)
        return real(self, refs)

    monkeypatch.setattr(StoreConnection, "fetch_many", spy)
    order = ward.order(naming(ward, pid, mid))
    medication_reads = [c for c in calls if any(t == "Medication" for t, _ in c)]
    assert len(medication_reads) == 1, calls
    assert len(medication_reads[0]) == 4
    assert {"DDI-WARFARIN-NSAID"} <= rules(ward.alerts(order))


def test_legacy_face_reads_and_activates_an_order_naming_a_stored_medication(
    client: FlaskClient, ward: Ward, headers: TokenFactory
) -> None:
    """The legacy shape has no Medication reference: the order reads without a
    `medicationCode` (no 500), and legacy activation runs the same check (here: the
    penicillin allergy recorded after the draft blocks it)."""
    pid = ward.patient()
    order = ward.order(naming(ward, pid, stock(ward, AMOX_CLAV_PRODUCT)))
    api = LegacyApi(client, headers)
    legacy = api.order(legacy_id(order["id"]))
    assert legacy["orderId"] == legacy_id(order["id"])
    ward.allergy(pid, PENICILLIN_SUBSTANCE, system=SNOMED, criticality="high")
    r = api.activate(legacy_id(order["id"]), legacy["version"])
    assert r.status_code == 422, r.json
    assert r.json["error"]["code"] == "CDS_HARD_STOP"
