"""Legacy request schemas: what passes, and every problem reported with its field path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.errors import ValidationFailed
from app.legacy_api import schemas as s
from app.legacy_api.schemas import load
from tests.seed_examples import SEED_ORDER_SET

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

# The seed's medication example, verbatim.
SEED_MEDICATION: dict[str, Any] = {
    "patientId": "pat_01J8Z3Q4R5S6T7V8W9X0Y1Z2A3",
    "encounterId": "enc_01J8Z3Q4R5S6T7V8W9X0Y1Z2A3",
    "orderType": "medication",
    "orderCode": {"system": RXNORM, "code": "1049502", "display": "Amoxicillin 500mg"},
    "medicationDetail": {
        "medicationCode": {"system": RXNORM, "code": "1049502", "display": "Amoxicillin 500mg"},
        "dose": 500,
        "doseUnit": "mg",
        "route": "oral",
        "frequency": "TDS",
        "durationDays": 7,
        "prn": False,
    },
    "priority": "routine",
    "notes": "For pneumonia",
    "clientMutationId": "uuid-idempotency-key",
}
CODE = {"system": "http://loinc.org", "code": "58410-2", "display": "CBC"}
DETAILS: dict[str, tuple[str, dict[str, Any]]] = {
    "laboratory": (
        "labDetail",
        {
            "priority": "urgent",
            "specimenType": "venous blood",
            "fastingRequired": True,
            "collectionDateTime": "2026-04-18T09:00:00Z",
        },
    ),
    "lab": ("labDetail", {"priority": "routine"}),
    "radiology": (
        "radiologyDetail",
        {
            "modality": "CT",
            "bodySite": "chest",
            "contrast": False,
            "clinicalIndication": "suspected PE",
        },
    ),
    "procedure": (
        "procedureDetail",
        {"bodySite": "left knee", "scheduledDateTime": "2026-05-01T08:30:00+01:00"},
    ),
    "referral": (
        "referralDetail",
        {
            "referralType": "internal",
            "referToFacilityId": "fac_02J",
            "referToSpecialty": "Cardiology",
            "urgency": "routine",
            "clinicalSummary": "Suspected atrial fibrillation; ECG attached",
        },
    ),
    "nursing": ("nursingDetail", {"instructions": "Neuro obs", "frequency": "Q15MIN"}),
    "activity": ("activityDetail", {"activityType": "ambulation", "instructions": "Walk TDS"}),
    "diet": (
        "dietDetail",
        {
            "dietType": "diabetic",
            "texture": "soft",
            "fluidRestrictionMl": 1500,
            "supplements": ["Ensure Plus"],
        },
    ),
}


def order(order_type: str, **extra: Any) -> dict[str, Any]:
    block, detail = DETAILS[order_type]
    body = {
        "patientId": "pat_01J",
        "encounterId": "enc_01J",
        "orderType": order_type,
        "orderCode": dict(CODE),
        block: copy.deepcopy(detail),
    }
    body.update(extra)
    return body


def problems(schema: Any, data: Any, **kwargs: Any) -> dict[str | None, str]:
    with pytest.raises(ValidationFailed) as info:
        load(schema, data, **kwargs)
    err = info.value
    assert err.code == "VALIDATION_ERROR" and err.status == 400
    assert err.details == [{"field": i.path, "message": i.message} for i in err.issues]
    return {i.path: i.message for i in err.issues}


# ---------------------------------------------------------------- valid bodies
def test_seed_medication_example_loads_unchanged() -> None:
    assert load(s.CreateOrderSchema, SEED_MEDICATION) == SEED_MEDICATION


@pytest.mark.parametrize("order_type", sorted(DETAILS))
def test_every_order_type_loads_unchanged(order_type: str) -> None:
    body = order(order_type, priority="stat", notes="n", clientMutationId="k-1")
    assert load(s.CreateOrderSchema, body) == body


def test_minimal_order_needs_only_ids_type_code_and_block() -> None:
    body = {
        "patientId": "p1",
        "encounterId": "e1",
        "orderType": "laboratory",
        "orderCode": {"system": "LOINC", "code": "58410-2"},
        "labDetail": {},
    }
    assert load(s.CreateOrderSchema, body) == body


@pytest.mark.parametrize(
    ("schema", "body"),
    [
        (s.AcknowledgeSchema, {"reason": "Patient aware of interaction", "version": 1}),
        (s.CancelSchema, {"reason": "Patient refused medication", "version": 1}),
        (s.HoldSchema, {"reason": "Patient NBM pre-surgery", "version": 3}),
        (s.CorrectionSchema, {"reason": "Ordered for wrong patient", "version": 2}),
        (s.ResumeSchema, {"version": 1}),
        (s.ActivateSchema, {}),
        (s.ActivateSchema, {"version": 4}),
        (s.InstantiateSchema, {"patientId": "pat_01J", "encounterId": "enc_01J"}),
    ],
)
def test_seed_mutation_bodies_load(schema: Any, body: dict[str, Any]) -> None:
    assert load(schema, body) == body


def test_seed_order_set_loads() -> None:
    body = copy.deepcopy(SEED_ORDER_SET)
    assert load(s.OrderSetCreateSchema, body) == body


def test_batch_envelope_and_strict_batch_load() -> None:
    body = {"orders": [order("laboratory"), SEED_MEDICATION]}
    assert load(s.BatchSchema, body) == body
    assert load(s.StrictBatchSchema, body) == body


@pytest.mark.parametrize(
    "frequency",
    [
        "OD",
        "BD",
        "BID",
        "TDS",
        "TID",
        "QDS",
        "QID",
        "Q4H",
        "Q12H",
        "q6h",
        "NOCTE",
        "STAT",
        "PRN",
        "Q4H PRN",
        "QDS PRN",
        "Q15MIN",
    ],
)
def test_known_frequencies_pass(frequency: str) -> None:
    body = copy.deepcopy(SEED_MEDICATION)
    body["medicationDetail"]["frequency"] = frequency
    del body["medicationDetail"]["prn"]
    assert load(s.CreateOrderSchema, body)["medicationDetail"]["frequency"] == frequency


# ---------------------------------------------------------------- problems and their paths
def test_unknown_fields_at_every_level() -> None:
    body = copy.deepcopy(SEED_MEDICATION)
    body["colour"] = "blue"
    body["orderCode"]["version"] = "2024"
    body["medicationDetail"]["strength"] = "500mg"
    assert problems(s.CreateOrderSchema, body) == {
        "colour": "Unknown field.",
        "orderCode.version": "Unknown field.",
        "medicationDetail.strength": "Unknown field.",
    }


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("medicationDetail.dose", "500", "must be a JSON number"),
        ("medicationDetail.dose", True, "must be a JSON number"),
        ("medicationDetail.dose", 0, "must be greater than 0"),
        ("medicationDetail.durationDays", 7.5, "Not a valid integer."),
        ("medicationDetail.durationDays", "7", "Not a valid integer."),
        ("medicationDetail.prn", "false", "must be a JSON boolean (true or false)"),
        ("medicationDetail.prn", 0, "must be a JSON boolean (true or false)"),
        ("medicationDetail.route", 5, "Not a valid string."),
        ("medicationDetail.route", "  ", "must not be blank"),
        ("medicationDetail.route", None, "Field may not be null."),
        ("medicationDetail.medicationCode", "1049502", "Invalid input type."),
        ("orderCode", ["x"], "Invalid input type."),
        ("priority", "soon", "Must be one of: routine, urgent, asap, stat."),
        ("orderType", "surgery", None),
        ("patientId", "pat/01J", None),
        ("patientId", "p" * 65, None),
        ("notes", 12, "Not a valid string."),
    ],
)
def test_wrong_types_and_values(path: str, value: Any, message: str | None) -> None:
    body = copy.deepcopy(SEED_MEDICATION)
    *parents, leaf = path.split(".")
    node = body
    for p in parents:
        node = node[p]
    node[leaf] = value
    found = problems(s.CreateOrderSchema, body)
    assert list(found) == [path]
    if message is not None:
        assert found[path] == message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("collectionDateTime", "2026-04-18T09:00:00"),  # no offset
        ("collectionDateTime", "2026-13-01"),
        ("collectionDateTime", "18/04/2026"),
        ("collectionDateTime", 1713430800),
        ("fastingRequired", "yes"),
        ("priority", "later"),
        ("specimenType", ""),
    ],
)
def test_lab_detail_problems(field: str, value: Any) -> None:
    body = order("laboratory")
    body["labDetail"][field] = value
    assert list(problems(s.CreateOrderSchema, body)) == [f"labDetail.{field}"]


@pytest.mark.parametrize("frequency", ["TWICE DAILY", "Q0H", "STAT PRN", "QH", "Q4H PRN PRN"])
def test_unknown_frequencies_rejected(frequency: str) -> None:
    body = order("nursing")
    body["nursingDetail"]["frequency"] = frequency
    assert list(problems(s.CreateOrderSchema, body)) == ["nursingDetail.frequency"]


def test_medication_consistency_checks() -> None:
    body = copy.deepcopy(SEED_MEDICATION)
    del body["medicationDetail"]["doseUnit"]
    body["medicationDetail"]["frequency"] = "Q4H PRN"
    body["medicationDetail"]["prn"] = False
    assert set(problems(s.CreateOrderSchema, body)) == {
        "medicationDetail.doseUnit",
        "medicationDetail.prn",
    }


@pytest.mark.parametrize(
    "path",
    ["patientId", "encounterId", "orderType", "orderCode", "orderCode.code", "orderCode.system"],
)
def test_missing_required_fields(path: str) -> None:
    body = copy.deepcopy(SEED_MEDICATION)
    *parents, leaf = path.split(".")
    node = body
    for p in parents:
        node = node[p]
    del node[leaf]
    found = problems(s.CreateOrderSchema, body)
    assert list(found) == [path]
    assert found[path] == "Missing data for required field."


@pytest.mark.parametrize("field", ["referralStatus", "scheduledAppointmentId"])
@pytest.mark.parametrize("value", ["scheduled", None])
def test_read_only_referral_fields(field: str, value: Any) -> None:
    body = order("referral")
    body["referralDetail"][field] = value
    found = problems(s.CreateOrderSchema, body)
    assert list(found) == [f"referralDetail.{field}"]
    assert "read-only" in found[f"referralDetail.{field}"]


def test_detail_block_of_another_type() -> None:
    body = order("laboratory")
    body["medicationDetail"] = {"dose": 1, "doseUnit": "mg"}
    found = problems(s.CreateOrderSchema, body)
    assert list(found) == ["medicationDetail"]
    assert "labDetail" in found["medicationDetail"]


def test_wrong_block_alone_is_refused() -> None:
    body = order("radiology")
    del body["radiologyDetail"]
    body["procedureDetail"] = {"bodySite": "chest"}
    assert set(problems(s.CreateOrderSchema, body)) == {"procedureDetail"}


def test_wrong_block_alone_reports_both_blocks_when_own_is_required() -> None:
    body = order("referral")
    del body["referralDetail"]
    body["procedureDetail"] = {"bodySite": "chest"}
    assert set(problems(s.CreateOrderSchema, body)) == {"procedureDetail", "referralDetail"}


@pytest.mark.parametrize(
    "order_type", ["diet", "laboratory", "lab", "radiology", "procedure", "nursing", "activity"]
)
def test_detail_block_is_optional(order_type: str) -> None:
    """Issue 11 item 1: DESIGN §5 makes the block itself optional."""
    body = order(order_type)
    del body[s.DETAIL_BLOCKS[order_type]]
    assert load(s.CreateOrderSchema, body) == body


@pytest.mark.parametrize("order_type", ["medication", "referral"])
def test_detail_block_still_required(order_type: str) -> None:
    body = copy.deepcopy(SEED_MEDICATION) if order_type == "medication" else order(order_type)
    block = s.DETAIL_BLOCKS[order_type]
    del body[block]
    found = problems(s.CreateOrderSchema, body)
    assert found == {block: f"is required for orderType {order_type!r}"}


def test_lab_alias_uses_lab_detail() -> None:
    body = order("lab")
    assert load(s.CreateOrderSchema, body)["labDetail"] == {"priority": "routine"}


def test_invalid_block_is_not_also_reported_missing() -> None:
    body = copy.deepcopy(SEED_MEDICATION)
    body["medicationDetail"] = "500mg TDS"
    assert list(problems(s.CreateOrderSchema, body)) == ["medicationDetail"]


def test_multiple_problems_reported_together() -> None:
    body = copy.deepcopy(SEED_MEDICATION)
    del body["patientId"]
    body["priority"] = "whenever"
    body["medicationDetail"]["dose"] = "five hundred"
    body["medicationDetail"]["colour"] = "pink"
    body["labDetail"] = {}
    body["extra"] = 1
    assert set(problems(s.CreateOrderSchema, body)) == {
        "patientId",
        "priority",
        "medicationDetail.dose",
        "medicationDetail.colour",
        "labDetail",
        "extra",
    }


@pytest.mark.parametrize("body", [None, [], "text", 5])
def test_body_must_be_an_object(body: Any) -> None:
    assert problems(s.CreateOrderSchema, body) == {None: "must be a JSON object"}


# ---------------------------------------------------------------- mutations
@pytest.mark.parametrize(
    "schema", [s.AcknowledgeSchema, s.CancelSchema, s.HoldSchema, s.CorrectionSchema]
)
def test_reason_and_version_required(schema: Any) -> None:
    assert set(problems(schema, {})) == {"reason", "version"}
    assert set(problems(schema, {"reason": "   ", "version": 0})) == {"reason", "version"}
    assert set(problems(schema, {"reason": "ok", "version": "1"})) == {"version"}
    assert set(problems(schema, {"reason": "ok", "version": True})) == {"version"}
    assert set(problems(schema, {"reason": "ok", "version": 1, "force": True})) == {"force"}


def test_resume_and_activate_versions() -> None:
    assert problems(s.ResumeSchema, {}) == {"version": "Missing data for required field."}
    assert set(problems(s.ResumeSchema, {"version": 1, "reason": "x"})) == {"reason"}
    assert set(problems(s.ActivateSchema, {"version": 1.5})) == {"version"}
    assert set(problems(s.ActivateSchema, {"reason": "x"})) == {"reason"}


def test_instantiate_requires_patient_and_encounter() -> None:
    assert set(problems(s.InstantiateSchema, {})) == {"patientId", "encounterId"}
    assert set(problems(s.InstantiateSchema, {"patientId": "p", "encounterId": "e", "x": 1})) == {
        "x"
    }


# ---------------------------------------------------------------- batch
def test_batch_limits() -> None:
    item = order("laboratory")
    assert set(problems(s.BatchSchema, {"orders": [item] * 101})) == {"orders"}
    assert set(problems(s.StrictBatchSchema, {"orders": [item] * 101})) == {"orders"}
    assert set(problems(s.BatchSchema, {"orders": []})) == {"orders"}
    assert set(problems(s.BatchSchema, {})) == {"orders"}
    assert load(s.BatchSchema, {"orders": [item] * 100})["orders"] == [item] * 100


def test_batch_items_must_be_objects() -> None:
    assert set(problems(s.BatchSchema, {"orders": [order("laboratory"), 5]})) == {"orders[1]"}


def test_batch_item_validated_with_its_index() -> None:
    bad = order("laboratory")
    del bad["patientId"]
    bad["labDetail"]["fastingRequired"] = "no"
    assert set(problems(s.CreateOrderSchema, bad, prefix="orders[3]")) == {
        "orders[3].patientId",
        "orders[3].labDetail.fastingRequired",
    }
    body = {"orders": [order("laboratory"), bad]}
    assert set(problems(s.StrictBatchSchema, body)) == {
        "orders[1].patientId",
        "orders[1].labDetail.fastingRequired",
    }


# ---------------------------------------------------------------- order sets
def test_order_set_problems() -> None:
    template = {"orderType": "laboratory", "orderCode": dict(CODE), "labDetail": {}}
    assert set(problems(s.OrderSetCreateSchema, {"orderTemplates": []})) == {
        "name",
        "orderTemplates",
    }
    body = {
        "name": "Set",
        "orderTemplates": [
            template,
            {**template, "patientId": "pat_1", "medicationDetail": {}},
            {
                "orderType": "diet",
                "orderCode": {"code": "x"},
                "dietDetail": {"supplements": "Ensure"},
            },
        ],
    }
    assert set(problems(s.OrderSetCreateSchema, body)) == {
        "orderTemplates[1].patientId",
        "orderTemplates[1].medicationDetail",
        "orderTemplates[2].orderCode.system",
        "orderTemplates[2].dietDetail.supplements",
    }


# ---------------------------------------------------------------- query strings
def test_order_list_query_defaults_and_values() -> None:
    assert load(s.OrderListQuerySchema, {}) == {"page": 1, "pageSize": 20}
    query = {
        "patientId": "pat_01J",
        "encounterId": "enc_01J",
        "orderType": "lab",
        "status": "on-hold",
        "from": "2026-04-01",
        "to": "2026-04-30T23:59:59Z",
        "priority": "stat",
        "page": "2",
        "pageSize": "100",
    }
    loaded = load(s.OrderListQuerySchema, query)
    assert loaded == {**query, "page": 2, "pageSize": 100}


def test_order_list_query_problems() -> None:
    query = {
        "status": "revoked",
        "from": "yesterday",
        "page": "0",
        "pageSize": "101",
        "orderType": "x-ray",
        "sort": "date",
    }
    assert set(problems(s.OrderListQuerySchema, query)) == {
        "status",
        "from",
        "page",
        "pageSize",
        "orderType",
        "sort",
    }
    assert set(problems(s.OrderListQuerySchema, {"from": "2026-05-01", "to": "2026-04-01"})) == {
        "to"
    }
    assert set(problems(s.OrderListQuerySchema, {"page": "two"})) == {"page"}


def test_order_set_and_referral_queries() -> None:
    assert load(s.OrderSetListQuerySchema, {"orderType": "medication", "search": "CAP"}) == {
        "orderType": "medication",
        "search": "CAP",
        "page": 1,
        "pageSize": 20,
    }
    assert set(problems(s.OrderSetListQuerySchema, {"pageSize": "0", "from": "2026-01-01"})) == {
        "pageSize",
        "from",
    }
    query = {
        "patientId": "pat_1",
        "referToFacilityId": "fac_02J",
        "referralStatus": "pending_scheduling",
        "urgency": "urgent",
        "from": "2026-01-01T00:00:00Z",
        "to": "2026-12-31",
    }
    assert load(s.ReferralListQuerySchema, query) == {**query, "page": 1, "pageSize": 20}
    assert set(problems(s.ReferralListQuerySchema, {"urgency": "now", "status": "active"})) == {
        "urgency",
        "status",
    }
