"""Mapping, not copying (issue 4): legacy create → FHIR read → legacy get, for every order type.

And the seed's FHIR table (api-contracts.txt §6) answers for orders created through
`/api/v1`: ServiceRequest / MedicationRequest / NutritionOrder read and search by patient
and status (and category for ServiceRequest), Task read after activation.
"""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from flask.testing import FlaskClient

from tests.conftest import TokenFactory
from tests.legacy_data import (
    FHIR_TYPE,
    SNOMED,
    LegacyApi,
    fhir_id,
    full_order,
    lab,
    medication,
    referral,
)

ORDER_TYPES = list(FHIR_TYPE)


@pytest.fixture
def api(client: FlaskClient, headers: TokenFactory) -> LegacyApi:
    return LegacyApi(client, headers)


def _codings(concepts: Any) -> set[tuple[str, str]]:
    return {
        (c.get("system"), c.get("code"))
        for concept in concepts or ()
        for c in concept.get("coding", [])
    }


@pytest.mark.parametrize("order_type", ORDER_TYPES)
def test_every_field_sent_comes_back_through_fhir(api: LegacyApi, order_type: str) -> None:
    pid, eid = api.admitted()
    sent = full_order(order_type, pid, eid, cmid=f"roundtrip-{order_type}")
    created = api.created(sent)
    assert created["orderType"] == order_type

    # The stored resource is a valid R4 resource of the right type and category.
    stored = api.fhir(created)
    rtype, category = FHIR_TYPE[order_type]
    assert stored["resourceType"] == rtype
    assert stored["id"] == fhir_id(created["orderId"])
    get_fhir_model_class(rtype).model_validate(stored)
    assert stored["status"] == "draft"
    assert stored["intent"] == "order"
    subject = stored["patient" if rtype == "NutritionOrder" else "subject"]
    assert subject == {"reference": f"Patient/{fhir_id(pid)}"}
    assert stored["encounter"] == {"reference": f"Encounter/{fhir_id(eid)}"}
    if category is not None:
        assert category in _codings(stored.get("category")), stored.get("category")

    # Every field the client sent comes back, equal.
    got = api.order(created["orderId"])
    for key, value in sent.items():
        if isinstance(value, dict) and key.endswith("Detail"):
            assert set(value) <= set(got.get(key) or {}), (key, got.get(key))
            for field, field_value in value.items():
                assert got[key][field] == field_value, f"{key}.{field}"
        else:
            assert got.get(key) == value, key
    assert got["status"] == "draft"
    assert got["version"] == 1


@pytest.mark.parametrize("order_type", ["medication", "laboratory", "referral", "diet"])
def test_round_trip_survives_the_lifecycle(api: LegacyApi, order_type: str) -> None:
    """Activation, hold and resume rewrite the resource; nothing the client sent is lost."""
    pid, eid = api.admitted()
    sent = full_order(order_type, pid, eid, cmid=f"lifecycle-{order_type}")
    oid = api.created(sent)["orderId"]
    api.activated(oid)
    api.ok(api.change(oid, "hold", 2, "NBM"))
    api.ok(api.change(oid, "resume", 3))
    got = api.order(oid)
    assert got["status"] == "active"
    for key, value in sent.items():
        assert got.get(key) == value or (
            key.endswith("Detail") and value.items() <= got[key].items()
        ), key


# ---------------------------------------------------------------------- the seed's FHIR table
def _search(api: LegacyApi, rtype: str, **params: str) -> set[str]:
    r = api.client.get(f"/fhir/R4/{rtype}", query_string=params, headers=api.doc)
    bundle = api.ok(r)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return {e["resource"]["id"] for e in bundle.get("entry", [])}


def test_the_seed_fhir_table_answers_for_orders_created_through_the_legacy_face(
    api: LegacyApi,
) -> None:
    pid, eid = api.admitted()
    other, other_eid = api.admitted()
    med = api.created(medication(pid, eid))
    blood = api.created(lab(pid, eid))
    ref = api.created(referral(pid, eid))
    diet = api.created(full_order("diet", pid, eid, cmid="diet-table"))
    xray = api.created(full_order("radiology", pid, eid, cmid="xray-table"))
    api.created(lab(other, other_eid))  # another patient's: never in these searches
    for order in (med, blood, ref, diet):
        api.activated(order["orderId"])
    f = {k: fhir_id(o["orderId"]) for k, o in (("med", med), ("lab", blood), ("ref", ref))}
    f["diet"], f["xray"] = fhir_id(diet["orderId"]), fhir_id(xray["orderId"])
    patient = fhir_id(pid)

    # read
    for order in (med, blood, ref, diet, xray):
        stored = api.fhir(order)
        assert stored["id"] == fhir_id(order["orderId"])

    # MedicationRequest?patient=&status=
    assert _search(api, "MedicationRequest", patient=patient) == {f["med"]}
    assert _search(api, "MedicationRequest", patient=patient, status="active") == {f["med"]}
    assert _search(api, "MedicationRequest", patient=patient, status="draft") == set()

    # ServiceRequest?patient=&status=&category=
    assert _search(api, "ServiceRequest", patient=patient) == {f["lab"], f["ref"], f["xray"]}
    assert _search(api, "ServiceRequest", patient=patient, status="active") == {f["lab"], f["ref"]}
    assert _search(api, "ServiceRequest", patient=patient, status="draft") == {f["xray"]}
    lab_cat = f"{SNOMED}|108252007"
    ref_cat = f"{SNOMED}|3457005"
    assert _search(api, "ServiceRequest", patient=patient, category=lab_cat) == {f["lab"]}
    assert _search(api, "ServiceRequest", patient=patient, category=ref_cat) == {f["ref"]}
    assert _search(api, "ServiceRequest", patient=patient, status="active", category=ref_cat) == {
        f["ref"]
    }

    # NutritionOrder?patient=&status=
    assert _search(api, "NutritionOrder", patient=patient) == {f["diet"]}
    assert _search(api, "NutritionOrder", patient=patient, status="active") == {f["diet"]}
    assert _search(api, "NutritionOrder", patient=patient, status="draft") == set()

    # Task read, after activation, for each kind of order
    for order in (med, blood, ref, diet):
        task = api.task_of(order)
        read = api.ok(api.client.get(f"/fhir/R4/Task/{task['id']}", headers=api.doc))
        get_fhir_model_class("Task").model_validate(read)
        rtype = FHIR_TYPE[order["orderType"]][0]
        assert read["focus"] == {"reference": f"{rtype}/{fhir_id(order['orderId'])}"}
        assert read["for"] == {"reference": f"Patient/{patient}"}
        assert read["status"] == "requested"
    ref_task = api.task_of(ref)
    assert ref_task["businessStatus"]["coding"][0]["code"] == "pending_scheduling"
