"""The legacy `/api/v1` face, endpoint by endpoint, against seeds/api-contracts.txt.

Status codes, exact response shapes and error codes of every endpoint of the seed, with the
gaps filled by DESIGN §4, §5 ("Legacy shapes the seeds leave open") and §7. Every refused
request is checked to have changed nothing. Roles are in test_legacy_roles.py, offline
sync in test_legacy_offline.py, the mapping round trip in test_legacy_roundtrip.py.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import TokenFactory
from tests.legacy_data import (
    ALERT_ID,
    ALERT_KEYS,
    CREATED_KEYS,
    FULL_EXTRA_KEYS,
    HISTORY_KEYS,
    INSTANT,
    LIST_KEYS,
    LOINC,
    MUTATION_KEYS,
    ORDER_ID,
    ORDER_SET_ID,
    SNOMED,
    WARFARIN,
    LegacyApi,
    error_of,
    fhir_id,
    lab,
    lab_template,
    legacy_id,
    medication,
    order_set,
    radiology,
    referral,
)

SEED_DDI_MESSAGE = "Potential interaction: Amoxicillin + Warfarin. Monitor INR."
REFERRAL_DETAIL_KEYS = {
    "referralType",
    "referToFacilityId",
    "referToSpecialty",
    "urgency",
    "clinicalSummary",
    "scheduledAppointmentId",
    "referralStatus",
}


@pytest.fixture
def api(client: FlaskClient, headers: TokenFactory) -> LegacyApi:
    return LegacyApi(client, headers)


def _warfarin(pid: str, eid: str) -> dict[str, Any]:
    detail = {"medicationCode": dict(WARFARIN), "dose": 5, "doseUnit": "mg", "frequency": "OD"}
    return medication(pid, eid, WARFARIN, medicationDetail=detail, notes="Atrial fibrillation")


def _on_warfarin(api: LegacyApi) -> tuple[str, str]:
    """A patient with an active warfarin order (the seed's interaction partner)."""
    pid, eid = api.admitted()
    warfarin = api.created(_warfarin(pid, eid))
    assert warfarin["cdsAlerts"] == []
    api.activated(warfarin["orderId"])
    return pid, eid


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _ids(page: dict[str, Any], key: str = "orderId") -> list[str]:
    return [item[key] for item in page["items"]]


def _fields(err: dict[str, Any]) -> set[str]:
    details = err.get("details")
    assert isinstance(details, list) and details, err
    for d in details:
        assert isinstance(d, dict) and d.get("message"), err
    return {str(d.get("field")) for d in details}


# ====================================================================== POST /orders
def test_create_answers_201_in_the_seed_shape(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    before = api.counts()
    r = api.create(medication(pid, eid))
    assert r.status_code == 201, r.get_json()
    assert r.mimetype == "application/json"
    assert r.headers.get("Idempotent-Replayed") != "true"
    body = r.get_json()
    assert set(body) == CREATED_KEYS
    assert ORDER_ID.match(body["orderId"]), body["orderId"]
    assert body["patientId"] == pid
    assert body["orderType"] == "medication"
    assert body["status"] == "draft"
    assert body["version"] == 1
    assert body["cdsAlerts"] == []
    assert INSTANT.match(body["createdAt"]), body["createdAt"]
    after = api.counts()
    assert after["MedicationRequest"] == before["MedicationRequest"] + 1
    stored = api.order(body["orderId"])
    assert stored["status"] == "draft"
    assert stored["createdAt"] == body["createdAt"]


def test_create_with_active_warfarin_returns_the_seed_interaction_warning(api: LegacyApi) -> None:
    pid, eid = _on_warfarin(api)
    body = api.created(medication(pid, eid))
    assert body["status"] == "draft"
    assert [a["ruleId"] for a in body["cdsAlerts"]] == ["DDI-AMOX-WARFARIN"]
    alert = body["cdsAlerts"][0]
    assert set(alert) == ALERT_KEYS
    assert ALERT_ID.match(alert["alertId"]), alert
    assert alert["level"] == "warning"
    assert alert["message"] == SEED_DDI_MESSAGE
    assert alert["acknowledged"] is False
    assert api.order(body["orderId"])["cdsAlerts"] == body["cdsAlerts"]


def test_create_validation_error_names_every_field(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    bad = medication(pid, eid)
    del bad["orderCode"]  # missing
    bad["colour"] = "blue"  # unknown
    bad["priority"] = 5  # wrong type
    bad["medicationDetail"]["dose"] = "500"  # wrong type (no coercion)
    bad["medicationDetail"]["strength"] = "high"  # unknown, nested
    before = api.counts()
    err = error_of(api.create(bad), 400, "VALIDATION_ERROR")
    assert _fields(err) == {
        "orderCode",
        "colour",
        "priority",
        "medicationDetail.dose",
        "medicationDetail.strength",
    }
    assert api.counts() == before


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'"an order"'],
    ids=["invalid-json", "array", "string"],
)
def test_create_with_a_body_that_is_not_an_object_is_400(api: LegacyApi, raw: bytes) -> None:
    before = api.counts()
    r = api.client.post(api.url("/orders"), data=raw, headers=api.doc)
    error_of(r, 400, "VALIDATION_ERROR")
    assert api.counts() == before


@pytest.mark.parametrize(
    ("setup", "status", "code"),
    [
        ("unknown-patient", 404, "PATIENT_NOT_FOUND"),
        ("deceased", 422, "PATIENT_DECEASED"),
        ("finished-encounter", 422, "ENCOUNTER_INACTIVE"),
        ("cancelled-encounter", 422, "ENCOUNTER_INACTIVE"),
    ],
)
def test_create_checks_patient_and_encounter(
    api: LegacyApi, setup: str, status: int, code: str
) -> None:
    if setup == "deceased":
        pid, eid = api.admitted(deceasedBoolean=True)
    else:
        pid, eid = api.admitted()
    if setup == "unknown-patient":
        pid = "pat_01NOBODYHERE"
    elif setup.endswith("-encounter"):
        eid = api.encounter(pid, setup.split("-")[0])
    before = api.counts()
    error_of(api.create(lab(pid, eid)), status, code)
    assert api.counts() == before


def test_same_client_mutation_id_and_payload_replays_the_201_byte_for_byte(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    body = lab(pid, eid, clientMutationId="cmid-replay-1")
    first = api.create(body)
    assert first.status_code == 201, first.get_json()
    assert first.headers.get("Idempotent-Replayed") != "true"
    before = api.counts()
    again = api.create(body)
    assert again.status_code == 201, again.get_json()
    assert again.data == first.data
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert api.counts() == before
    assert api.listing(patientId=pid)["total"] == 1


def test_same_client_mutation_id_with_another_payload_is_duplicate_mutation(
    api: LegacyApi,
) -> None:
    pid, eid = api.admitted()
    body = lab(pid, eid, clientMutationId="cmid-dup-1")
    first = api.created(body)
    stored = api.order(first["orderId"])
    before = api.counts()
    changed = {**body, "notes": "a different order under the same key"}
    error_of(api.create(changed), 409, "DUPLICATE_MUTATION")
    assert api.counts() == before
    assert api.order(first["orderId"]) == stored


def test_hard_stop_allergy_rejects_the_create_and_stores_nothing(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    api.allergy(pid, criticality="high")
    before = api.counts()
    err = error_of(api.create(medication(pid, eid, clientMutationId="hs-1")), 422, "CDS_HARD_STOP")
    details = err.get("details")
    assert isinstance(details, list) and details, err
    assert any(d.get("level") == "hard-stop" and d.get("ruleId") for d in details), details
    assert api.counts() == before
    assert api.listing(patientId=pid)["total"] == 0


# ====================================================================== GET /orders/:id
def test_get_returns_the_full_order_with_history_oldest_first(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    sent = medication(pid, eid, clientMutationId="full-1")
    created = api.created(sent)
    oid = created["orderId"]
    assert api.ok(api.activate(oid, 1))["version"] == 2
    assert api.ok(api.change(oid, "hold", 2, "Patient NBM pre-surgery"))["version"] == 3
    assert api.ok(api.change(oid, "resume", 3))["version"] == 4
    full = api.order(oid)
    assert set(full) == set(sent) | FULL_EXTRA_KEYS
    for key, value in sent.items():
        assert full[key] == value, key
    assert full["orderId"] == oid
    assert full["status"] == "active"
    assert full["version"] == 4
    assert full["cdsAlerts"] == []
    assert full["createdAt"] == created["createdAt"]
    assert INSTANT.match(full["updatedAt"]), full["updatedAt"]
    assert full["updatedAt"] > full["createdAt"]
    history = full["history"]
    for entry in history:
        assert set(entry) == HISTORY_KEYS, entry
        assert INSTANT.match(entry["at"]), entry
        assert isinstance(entry["by"], str) and entry["by"], entry
    assert [h["version"] for h in history] == [1, 2, 3, 4]
    assert [h["action"] for h in history] == ["create", "activate", "hold", "resume"]
    assert [h["status"] for h in history] == ["draft", "active", "on-hold", "active"]
    assert [h["at"] for h in history] == sorted(h["at"] for h in history)
    assert history[2]["reason"] == "Patient NBM pre-surgery"


def test_get_unknown_order_is_404_order_not_found(api: LegacyApi) -> None:
    error_of(api.get("/orders/ord_01J00000000000000000000000"), 404, "ORDER_NOT_FOUND")


def test_an_order_of_another_tenant_is_404_as_if_it_did_not_exist(
    api: LegacyApi, headers: TokenFactory
) -> None:
    pid, eid = api.admitted()
    oid = api.created(lab(pid, eid))["orderId"]
    stranger = {
        **headers("CLINICIAN", tenant_id="t-someone-else"),
        "Content-Type": "application/json",
    }
    error_of(api.get(f"/orders/{oid}", stranger), 404, "ORDER_NOT_FOUND")
    error_of(api.change(oid, "cancel", 1, who=stranger), 404, "ORDER_NOT_FOUND")
    assert api.order(oid)["status"] == "draft"


# ====================================================================== GET /orders
def test_list_filters_pages_and_sorts_newest_first(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    eid2 = api.encounter(pid)
    other, other_eid = api.admitted()
    a = api.created(lab(pid, eid))["orderId"]
    time.sleep(0.03)
    middle = _now()
    time.sleep(0.03)
    b = api.created(radiology(pid, eid2, priority="stat"))["orderId"]
    c = api.created(medication(pid, eid))["orderId"]
    api.created(lab(other, other_eid))
    api.activated(c)

    def ids(**query: Any) -> list[str]:
        return _ids(api.listing(**query))

    assert ids(patientId=pid) == [c, b, a]
    assert ids(patientId=pid, encounterId=eid2) == [b]
    assert ids(patientId=pid, orderType="laboratory") == [a]
    assert ids(patientId=pid, orderType="radiology") == [b]
    assert ids(patientId=pid, orderType="medication") == [c]
    assert ids(patientId=pid, status="active") == [c]
    assert ids(patientId=pid, status="draft") == [b, a]
    assert ids(patientId=pid, priority="stat") == [b]
    assert ids(patientId=pid, priority="routine") == [c, a]
    assert ids(patientId=pid, **{"from": middle}) == [c, b]
    assert ids(patientId=pid, to=middle) == [a]
    assert ids(patientId=pid, orderType="laboratory", status="active") == []

    default = api.listing(patientId=pid)
    assert set(default) == LIST_KEYS
    assert (default["page"], default["pageSize"], default["total"]) == (1, 20, 3)
    first = api.listing(patientId=pid, pageSize=2)
    assert (first["page"], first["pageSize"], first["total"]) == (1, 2, 3)
    assert _ids(first) == [c, b]
    second = api.listing(patientId=pid, pageSize=2, page=2)
    assert (second["page"], second["pageSize"], second["total"]) == (2, 2, 3)
    assert _ids(second) == [a]
    assert api.listing(patientId=pid, pageSize=2, page=3)["items"] == []


def test_list_items_agree_with_the_full_order(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    oid = api.created(lab(pid, eid, notes="fasting sample"))["orderId"]
    api.activated(oid)
    api.ok(api.change(oid, "hold", 2, "awaiting consent"))
    [item] = api.listing(patientId=pid)["items"]
    full = api.order(oid)
    assert {"orderId", "patientId", "orderType", "status", "version"} <= set(item)
    mismatches = {k: (v, full.get(k)) for k, v in item.items() if full.get(k) != v}
    assert mismatches == {}, "list item value vs GET /orders/:id value"


def test_list_without_patient_id_is_400_unless_admin(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    other, other_eid = api.admitted()
    api.created(lab(pid, eid))
    api.created(lab(other, other_eid))
    for role in ("CLINICIAN", "NURSE"):
        err = error_of(api.get("/orders", api.as_role(role)), 400, "VALIDATION_ERROR")
        assert _fields(err) == {"patientId"}
    assert api.listing(api.admin)["total"] == 2


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"pageSize": "101"}, "pageSize"),
        ({"pageSize": "0"}, "pageSize"),
        ({"page": "0"}, "page"),
        ({"page": "two"}, "page"),
        ({"status": "bogus"}, "status"),
        ({"orderType": "surgery"}, "orderType"),
        ({"priority": "whenever"}, "priority"),
        ({"from": "yesterday"}, "from"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_list_rejects_bad_query_parameters(
    api: LegacyApi, query: dict[str, str], field: str
) -> None:
    pid, _eid = api.admitted()
    r = api.client.get(
        api.url("/orders"), query_string={"patientId": pid, **query}, headers=api.doc
    )
    err = error_of(r, 400, "VALIDATION_ERROR")
    assert field in _fields(err)


# ====================================================================== activate
def test_activate_answers_order_id_status_and_version(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    oid = api.created(lab(pid, eid))["orderId"]
    r = api.activate(oid, 1)
    body = api.ok(r)
    assert set(body) == MUTATION_KEYS
    assert body == {"orderId": oid, "status": "active", "version": 2}
    assert api.order(oid)["status"] == "active"


def test_activate_with_a_stale_version_is_409_and_changes_nothing(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    oid = api.created(lab(pid, eid))["orderId"]
    before = api.order(oid)
    error_of(api.activate(oid, 7), 409, "OPTIMISTIC_LOCK_CONFLICT")
    assert api.order(oid) == before


def test_unacknowledged_warning_blocks_activation_until_acknowledged(api: LegacyApi) -> None:
    pid, eid = _on_warfarin(api)
    created = api.created(medication(pid, eid))
    oid = created["orderId"]
    [alert] = created["cdsAlerts"]

    err = error_of(api.activate(oid, 1), 422, "CDS_WARNING_UNACKNOWLEDGED")
    blocking = err.get("details")
    assert isinstance(blocking, list), err
    assert [(d["alertId"], d["ruleId"], d["level"]) for d in blocking] == [
        (alert["alertId"], "DDI-AMOX-WARFARIN", "warning")
    ]
    after = api.order(oid)
    assert (after["status"], after["version"]) == ("draft", 1)

    ack = api.ok(api.acknowledge(oid, alert["alertId"], 1, "Patient aware; benefit outweighs risk"))
    assert ack == {"alertId": alert["alertId"], "acknowledged": True, "version": 2}
    acked = api.order(oid)
    assert acked["version"] == 2
    [stored] = acked["cdsAlerts"]
    assert stored["acknowledged"] is True
    assert stored["reason"] == "Patient aware; benefit outweighs risk"
    assert stored["acknowledgedBy"]
    assert INSTANT.match(stored["acknowledgedAt"]), stored
    assert acked["history"][-1]["action"] == "acknowledge"
    assert acked["history"][-1]["reason"] == "Patient aware; benefit outweighs risk"

    body = api.ok(api.activate(oid, 2))
    assert body == {"orderId": oid, "status": "active", "version": 3}


def test_hard_stop_blocks_activation_and_cannot_be_acknowledged(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    oid = api.created(medication(pid, eid))["orderId"]
    api.allergy(pid, criticality="high")
    err = error_of(api.activate(oid, 1), 422, "CDS_HARD_STOP")
    hard = [d for d in err.get("details") or [] if d.get("level") == "hard-stop"]
    assert len(hard) == 1, err
    assert ALERT_ID.match(hard[0]["alertId"]), hard
    order = api.order(oid)
    assert order["status"] == "draft"
    assert hard[0]["alertId"] in {a["alertId"] for a in order["cdsAlerts"]}

    error_of(api.acknowledge(oid, hard[0]["alertId"], order["version"]), 422, "CDS_HARD_STOP")
    assert api.order(oid) == order


def test_activate_a_cancelled_order_is_order_terminal_state(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    oid = api.created(lab(pid, eid))["orderId"]
    api.ok(api.change(oid, "cancel", 1, "not needed"))
    before = api.order(oid)
    error_of(api.activate(oid, 2), 409, "ORDER_TERMINAL_STATE")
    assert api.order(oid) == before


# ====================================================================== acknowledge
@pytest.fixture
def warned(api: LegacyApi) -> tuple[str, str]:
    """A draft amoxicillin order with the seed's interaction warning: (orderId, alertId)."""
    pid, eid = _on_warfarin(api)
    created = api.created(medication(pid, eid))
    return created["orderId"], created["cdsAlerts"][0]["alertId"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"version": 1}, "reason"),
        ({"version": 1, "reason": "   "}, "reason"),
        ({"reason": "ok"}, "version"),
        ({"reason": "ok", "version": "1"}, "version"),
        ({"reason": "ok", "version": 1, "extra": True}, "extra"),
    ],
    ids=["no-reason", "blank-reason", "no-version", "string-version", "unknown-field"],
)
def test_acknowledge_validates_its_body(
    api: LegacyApi, warned: tuple[str, str], body: dict[str, Any], field: str
) -> None:
    oid, alert_id = warned
    before = api.order(oid)
    r = api.post(f"/orders/{oid}/cds-alerts/{alert_id}/acknowledge", body)
    assert field in _fields(error_of(r, 400, "VALIDATION_ERROR"))
    assert api.order(oid) == before


def test_acknowledge_unknown_alert_is_404_cds_alert_not_found(
    api: LegacyApi, warned: tuple[str, str]
) -> None:
    oid, _alert = warned
    before = api.order(oid)
    r = api.acknowledge(oid, "cds_01J00000000000000000000000", 1)
    error_of(r, 404, "CDS_ALERT_NOT_FOUND")
    assert api.order(oid) == before


def test_acknowledge_with_a_stale_version_is_409(api: LegacyApi, warned: tuple[str, str]) -> None:
    oid, alert_id = warned
    before = api.order(oid)
    error_of(api.acknowledge(oid, alert_id, 5), 409, "OPTIMISTIC_LOCK_CONFLICT")
    assert api.order(oid) == before


def test_acknowledging_an_acknowledged_alert_again_changes_nothing(
    api: LegacyApi, warned: tuple[str, str]
) -> None:
    """A second clinician acknowledges the same warning after a refresh: 200, and the order
    keeps its version and the first acknowledgement's reason (idempotent)."""
    oid, alert_id = warned
    api.ok(api.acknowledge(oid, alert_id, 1, "INR checked daily"))
    before = api.order(oid)
    again = api.ok(api.acknowledge(oid, alert_id, before["version"], "another reason"))
    assert again == {"alertId": alert_id, "acknowledged": True, "version": before["version"]}
    assert api.order(oid) == before
    assert before["cdsAlerts"][0]["reason"] == "INR checked daily"


def test_acknowledge_on_an_unknown_order_is_404(api: LegacyApi) -> None:
    r = api.acknowledge("ord_01J00000000000000000000000", "cds_01J00000000000000000000000", 1)
    error_of(r, 404, "ORDER_NOT_FOUND")


# ====================================================================== cancel / hold / ...
def _in_state(api: LegacyApi, state: str) -> str:
    """A laboratory order in `state`; returns its orderId."""
    pid, eid = api.admitted()
    created = api.created(lab(pid, eid))
    oid = created["orderId"]
    if state == "draft":
        return oid
    if state == "cancelled":
        api.ok(api.change(oid, "cancel", 1, "not needed"))
    elif state == "entered-in-error":
        api.ok(api.change(oid, "correction", 1, "wrong patient"))
    else:
        api.activated(oid)
        if state == "on-hold":
            api.ok(api.change(oid, "hold", 2, "NBM"))
        elif state == "completed":
            api.complete({"orderId": oid, "orderType": "laboratory"})
    assert api.order(oid)["status"] == state
    return oid


def _do(api: LegacyApi, oid: str, action: str, version: int) -> Any:
    if action == "activate":
        return api.activate(oid, version)
    return api.change(oid, action, version, "story")


def test_hold_resume_cancel_correction_answer_new_status_and_version(api: LegacyApi) -> None:
    oid = _in_state(api, "active")
    steps = [
        ("hold", 2, "on-hold"),
        ("resume", 3, "active"),
        ("cancel", 4, "cancelled"),
        ("correction", 5, "entered-in-error"),
    ]
    for action, version, status in steps:
        body = api.ok(api.change(oid, action, version, f"reason for {action}"))
        assert body == {"orderId": oid, "status": status, "version": version + 1}, action
    history = api.order(oid)["history"]
    assert [h["action"] for h in history] == [
        "create",
        "activate",
        "hold",
        "resume",
        "cancel",
        "correction",
    ]
    assert history[4]["reason"] == "reason for cancel"


@pytest.mark.parametrize(
    ("state", "action", "code"),
    [
        ("draft", "hold", "INVALID_STATE_TRANSITION"),
        ("draft", "resume", "INVALID_STATE_TRANSITION"),
        ("active", "activate", "INVALID_STATE_TRANSITION"),
        ("active", "resume", "INVALID_STATE_TRANSITION"),
        ("on-hold", "hold", "INVALID_STATE_TRANSITION"),
        ("on-hold", "activate", "INVALID_STATE_TRANSITION"),
        ("cancelled", "cancel", "ORDER_TERMINAL_STATE"),
        ("cancelled", "hold", "ORDER_TERMINAL_STATE"),
        ("cancelled", "resume", "ORDER_TERMINAL_STATE"),
        ("completed", "cancel", "ORDER_TERMINAL_STATE"),
        ("completed", "hold", "ORDER_TERMINAL_STATE"),
        ("completed", "activate", "ORDER_TERMINAL_STATE"),
        ("entered-in-error", "correction", "ORDER_TERMINAL_STATE"),
        ("entered-in-error", "cancel", "ORDER_TERMINAL_STATE"),
        ("entered-in-error", "activate", "ORDER_TERMINAL_STATE"),
    ],
)
def test_illegal_and_terminal_transitions_are_409_and_change_nothing(
    api: LegacyApi, state: str, action: str, code: str
) -> None:
    oid = _in_state(api, state)
    before = api.order(oid)
    error_of(_do(api, oid, action, before["version"]), 409, code)
    assert api.order(oid) == before


@pytest.mark.parametrize("state", ["completed", "cancelled"])
def test_correction_is_allowed_on_completed_and_cancelled_orders(
    api: LegacyApi, state: str
) -> None:
    oid = _in_state(api, state)
    version = api.order(oid)["version"]
    body = api.ok(api.change(oid, "correction", version, "entered for the wrong patient"))
    assert body == {"orderId": oid, "status": "entered-in-error", "version": version + 1}


LOCK, TERMINAL = "OPTIMISTIC_LOCK_CONFLICT", "ORDER_TERMINAL_STATE"


@pytest.mark.parametrize(
    ("state", "action", "code"),
    [
        ("active", "hold", LOCK),
        ("on-hold", "resume", LOCK),
        ("active", "cancel", LOCK),
        ("draft", "correction", LOCK),
        # A closed order (DESIGN §5 precedence): two clinicians cancel the same order, the
        # second only has a stale view of it; a queued request for something the order can
        # no longer do learns that it is closed.
        ("cancelled", "cancel", LOCK),
        ("entered-in-error", "correction", LOCK),
        ("entered-in-error", "cancel", TERMINAL),
        ("completed", "activate", TERMINAL),
    ],
)
def test_stale_version_is_409_optimistic_lock_conflict(
    api: LegacyApi, state: str, action: str, code: str
) -> None:
    oid = _in_state(api, state)
    before = api.order(oid)
    version = before["version"]
    stale = version - 1 if version > 1 else version + 1
    error_of(_do(api, oid, action, stale), 409, code)
    assert api.order(oid) == before


@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("cancel", {"version": 1}, "reason"),
        ("hold", {"version": 2}, "reason"),
        ("correction", {"version": 2}, "reason"),
        ("cancel", {"reason": "x"}, "version"),
        ("resume", {}, "version"),
        ("hold", {"reason": "x", "version": 2, "until": "tomorrow"}, "until"),
    ],
)
def test_lifecycle_bodies_are_validated(
    api: LegacyApi, action: str, body: dict[str, Any], field: str
) -> None:
    oid = _in_state(api, "active")
    before = api.order(oid)
    r = api.put(f"/orders/{oid}/{action}", body)
    assert field in _fields(error_of(r, 400, "VALIDATION_ERROR"))
    assert api.order(oid) == before


def test_cancel_unknown_order_is_404(api: LegacyApi) -> None:
    r = api.change("ord_01J00000000000000000000000", "cancel", 1)
    error_of(r, 404, "ORDER_NOT_FOUND")


def test_a_medication_cancelled_after_activation_shows_cancelled(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    oid = api.created(medication(pid, eid))["orderId"]
    api.activated(oid)
    assert api.ok(api.change(oid, "cancel", 2, "Patient refused medication"))["status"] == (
        "cancelled"
    )
    assert api.order(oid)["status"] == "cancelled"
    assert api.listing(patientId=pid, status="cancelled")["total"] == 1


# ====================================================================== batch
def test_batch_answers_207_with_one_result_per_item_each_on_its_own(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    api.allergy(pid, criticality="high")
    items = [
        lab(pid, eid, clientMutationId="batch-0"),
        medication(pid, eid, clientMutationId="batch-1"),
        {**radiology(pid, eid), "colour": "red"},
        radiology(pid, eid),
    ]
    before = api.counts()
    r = api.post("/orders/batch", {"orders": items})
    assert r.status_code == 207, r.get_json()
    assert r.mimetype == "application/json"
    body = r.get_json()
    assert set(body) == {"results"}
    results = body["results"]
    assert [x["index"] for x in results] == [0, 1, 2, 3]
    assert [x["success"] for x in results] == [True, False, False, True]
    for ok in (results[0], results[3]):
        assert set(ok) == {"index", "orderId", "status", "success"}, ok
        assert ORDER_ID.match(ok["orderId"]) and ok["status"] == "draft", ok
        assert api.order(ok["orderId"])["status"] == "draft"
    for failed in (results[1], results[2]):
        assert set(failed) == {"index", "success", "error"}, failed
        assert {"code", "message"} <= set(failed["error"]) <= {"code", "message", "details"}
    assert results[1]["error"]["code"] == "CDS_HARD_STOP"
    assert results[2]["error"]["code"] == "VALIDATION_ERROR"
    assert any(f.endswith("colour") for f in _fields(results[2]["error"]))
    after = api.counts()
    assert after["ServiceRequest"] == before["ServiceRequest"] + 2
    assert after["MedicationRequest"] == before["MedicationRequest"]
    assert api.order(results[0]["orderId"])["clientMutationId"] == "batch-0"


def test_batch_items_carry_their_own_client_mutation_ids(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    first = api.ok(
        api.post("/orders/batch", {"orders": [lab(pid, eid, clientMutationId="item-a")]}), 207
    )
    [created] = first["results"]
    before = api.counts()
    again = api.ok(
        api.post(
            "/orders/batch",
            {
                "orders": [
                    lab(pid, eid, clientMutationId="item-a"),
                    lab(pid, eid, clientMutationId="item-a", notes="changed"),
                ]
            },
        ),
        207,
    )
    replay, clash = again["results"]
    assert replay == created
    assert clash["success"] is False
    assert clash["error"]["code"] == "DUPLICATE_MUTATION"
    assert api.counts() == before


@pytest.mark.parametrize(
    "envelope",
    [{"orders": []}, {}, {"orders": {"0": {}}}, {"orders": [], "extra": 1}],
    ids=["empty", "missing", "not-a-list", "unknown-field"],
)
def test_batch_envelope_is_validated(api: LegacyApi, envelope: dict[str, Any]) -> None:
    error_of(api.post("/orders/batch", envelope), 400, "VALIDATION_ERROR")


def test_batch_over_100_items_is_400_and_creates_nothing(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    before = api.counts()
    r = api.post("/orders/batch", {"orders": [lab(pid, eid)] * 101})
    error_of(r, 400, "VALIDATION_ERROR")
    assert api.counts() == before


# ====================================================================== order sets
def test_order_set_create_answers_the_seed_shape(api: LegacyApi) -> None:
    r = api.post("/order-sets", order_set())
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert set(body) == {"orderSetId", "name", "orderCount"}
    assert ORDER_SET_ID.match(body["orderSetId"]), body
    assert body["name"] == "Community Acquired Pneumonia Adult"
    assert body["orderCount"] == 2


def test_order_set_create_validates_every_template(api: LegacyApi) -> None:
    bad = order_set()
    bad["orderTemplates"][0]["medicationDetail"]["dose"] = "500"
    bad["orderTemplates"][1]["labDetail"]["colour"] = "purple"
    del bad["name"]
    before = api.counts()
    err = error_of(api.post("/order-sets", bad), 400, "VALIDATION_ERROR")
    fields = _fields(err)
    assert "name" in fields
    assert any("orderTemplates" in f and f.endswith("dose") for f in fields), fields
    assert any("orderTemplates" in f and f.endswith("colour") for f in fields), fields
    assert api.counts() == before


def test_order_set_list_filters_searches_and_pages(api: LegacyApi) -> None:
    cap = api.ok(api.post("/order-sets", order_set()), 201)["orderSetId"]
    diabetes = api.ok(
        api.post("/order-sets", order_set("Diabetes admission", lab_template())), 201
    )["orderSetId"]
    follow_up = api.ok(
        api.post("/order-sets", order_set("Pneumonia follow-up", lab_template())), 201
    )["orderSetId"]

    def ids(**query: Any) -> list[str]:
        return _ids(api.ok(api.get("/order-sets", **query)), "orderSetId")

    listing = api.ok(api.get("/order-sets"))
    assert set(listing) == LIST_KEYS
    assert (listing["page"], listing["pageSize"], listing["total"]) == (1, 20, 3)
    assert _ids(listing, "orderSetId") == [follow_up, diabetes, cap]
    for item in listing["items"]:
        assert {"orderSetId", "name", "orderCount"} <= set(item), item
    assert listing["items"][2]["name"] == "Community Acquired Pneumonia Adult"
    assert listing["items"][2]["orderCount"] == 2
    assert ids(orderType="medication") == [cap]
    assert ids(orderType="laboratory") == [follow_up, diabetes, cap]
    assert ids(orderType="diet") == []
    assert ids(search="pneumonia") == [follow_up, cap]
    assert ids(search="PNEUMONIA", orderType="medication") == [cap]
    page = api.ok(api.get("/order-sets", pageSize=1, page=2))
    assert (page["page"], page["pageSize"], page["total"]) == (2, 1, 3)
    assert _ids(page, "orderSetId") == [diabetes]
    error_of(api.get("/order-sets", pageSize=101), 400, "VALIDATION_ERROR")


def test_instantiate_creates_drafts_and_aggregates_their_alerts(api: LegacyApi) -> None:
    pid, eid = _on_warfarin(api)
    sid = api.ok(api.post("/order-sets", order_set()), 201)["orderSetId"]
    r = api.post(f"/order-sets/{sid}/instantiate", {"patientId": pid, "encounterId": eid})
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert set(body) == {"orderIds", "cdsAlerts"}
    assert len(body["orderIds"]) == 2
    orders = [api.order(oid) for oid in body["orderIds"]]
    for oid, order in zip(body["orderIds"], orders, strict=True):
        assert ORDER_ID.match(oid), oid
        assert (order["status"], order["patientId"], order["encounterId"]) == ("draft", pid, eid)
    for alert in body["cdsAlerts"]:
        assert set(alert) == ALERT_KEYS, alert
    assert "DDI-AMOX-WARFARIN" in {a["ruleId"] for a in body["cdsAlerts"]}
    every = [a for order in orders for a in order["cdsAlerts"]]
    assert sorted(a["alertId"] for a in body["cdsAlerts"]) == sorted(a["alertId"] for a in every)


def test_instantiated_orders_keep_each_templates_type_code_and_detail(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    templates: list[dict[str, Any]] = [
        {
            "orderType": "medication",
            "orderCode": {"system": "rxnorm", "code": "308191", "display": "Amoxicillin 500mg"},
            "priority": "urgent",
            "notes": "Start today",
            "medicationDetail": {
                "dose": 500,
                "doseUnit": "mg",
                "route": "oral",
                "frequency": "TDS",
                "durationDays": 7,
            },
        },
        {
            "orderType": "laboratory",
            "orderCode": {"system": "LOINC", "code": "58410-2", "display": "CBC"},
            "notes": "Before the first dose",
            "labDetail": {"priority": "urgent", "specimenType": "Blood", "fastingRequired": False},
        },
        {
            "orderType": "radiology",
            "orderCode": {"system": LOINC, "code": "36643-5", "display": "XR Chest 2 Views"},
            "radiologyDetail": {"modality": "DX", "bodySite": "Chest", "contrast": False},
        },
    ]
    sid = api.ok(api.post("/order-sets", order_set("CAP full", *templates)), 201)["orderSetId"]
    body = api.ok(
        api.post(f"/order-sets/{sid}/instantiate", {"patientId": pid, "encounterId": eid}), 201
    )
    orders = [api.order(oid) for oid in body["orderIds"]]
    assert [o["orderType"] for o in orders] == ["medication", "laboratory", "radiology"]
    for template, order in zip(templates, orders, strict=True):
        for key, value in template.items():
            if key.endswith("Detail"):
                detail = order.get(key) or {}
                for field, sent in value.items():
                    assert detail.get(field) == sent, (template["orderType"], key, field)
            else:
                assert order.get(key) == value, (template["orderType"], key)


def test_instantiate_hard_stop_in_any_template_creates_nothing(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    api.allergy(pid, criticality="high")
    sid = api.ok(api.post("/order-sets", order_set()), 201)["orderSetId"]
    before = api.counts()
    r = api.post(f"/order-sets/{sid}/instantiate", {"patientId": pid, "encounterId": eid})
    err = error_of(r, 422, "CDS_HARD_STOP")
    said = json.dumps(err)
    assert "308191" in said or "Amoxicillin" in said, err  # names the medication template
    assert api.counts() == before
    assert api.listing(patientId=pid)["total"] == 0


def test_instantiate_unknown_order_set_is_404_order_set_not_found(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    before = api.counts()
    r = api.post(
        "/order-sets/ords_01J00000000000000000000000/instantiate",
        {"patientId": pid, "encounterId": eid},
    )
    error_of(r, 404, "ORDER_SET_NOT_FOUND")
    assert api.counts() == before


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"patientId", "encounterId"}),
        ({"patientId": "pat_1", "encounterId": 5}, {"encounterId"}),
        ({"patientId": "pat_1", "encounterId": "enc_1", "notes": "x"}, {"notes"}),
    ],
)
def test_instantiate_validates_its_body(
    api: LegacyApi, body: dict[str, Any], fields: set[str]
) -> None:
    sid = api.ok(api.post("/order-sets", order_set()), 201)["orderSetId"]
    before = api.counts()
    err = error_of(api.post(f"/order-sets/{sid}/instantiate", body), 400, "VALIDATION_ERROR")
    assert _fields(err) == fields
    assert api.counts() == before


def test_instantiate_for_an_unknown_patient_is_404_and_creates_nothing(api: LegacyApi) -> None:
    _pid, eid = api.admitted()
    sid = api.ok(api.post("/order-sets", order_set()), 201)["orderSetId"]
    before = api.counts()
    r = api.post(
        f"/order-sets/{sid}/instantiate", {"patientId": "pat_01NOBODY", "encounterId": eid}
    )
    error_of(r, 404, "PATIENT_NOT_FOUND")
    assert api.counts() == before


# ====================================================================== referrals
def test_referral_detail_tracks_scheduling(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    sent = referral(pid, eid)
    oid = api.created(sent)["orderId"]
    api.activated(oid)
    body = api.ok(api.get(f"/orders/referrals/{oid}"))
    assert {"orderId", "orderType", "status", "referralDetail"} <= set(body)
    assert (body["orderId"], body["orderType"], body["status"]) == (oid, "referral", "active")
    detail = body["referralDetail"]
    assert set(detail) == REFERRAL_DETAIL_KEYS
    for key, value in sent["referralDetail"].items():
        assert detail[key] == value, key
    assert detail["referralStatus"] == "pending_scheduling"
    assert detail["scheduledAppointmentId"] is None

    task = api.task_of({"orderId": oid, "orderType": "referral"})
    scheduled = {
        **task,
        "output": [
            {
                "type": {"text": "appointment"},
                "valueReference": {"reference": "Appointment/apt-01JSCHED"},
            }
        ],
    }
    api.ok(api.client.put(f"/fhir/R4/Task/{task['id']}", json=scheduled, headers=api.nurse))
    detail = api.ok(api.get(f"/orders/referrals/{oid}"))["referralDetail"]
    assert detail["referralStatus"] == "scheduled"
    assert detail["scheduledAppointmentId"] == "apt_01JSCHED"


def test_referral_get_of_a_non_referral_or_unknown_order_is_404(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    oid = api.created(lab(pid, eid))["orderId"]
    error_of(api.get(f"/orders/referrals/{oid}"), 404, "ORDER_NOT_FOUND")
    error_of(api.get("/orders/referrals/ord_01J00000000000000000000000"), 404, "ORDER_NOT_FOUND")


def test_referral_list_filters_and_pages(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    other, other_eid = api.admitted()
    r1 = api.created(referral(pid, eid))["orderId"]
    api.activated(r1)
    neuro = {
        "referralType": "external",
        "referToFacilityId": "fac_03JNEURO",
        "referToSpecialty": "Neurology",
        "urgency": "urgent",
        "clinicalSummary": "First seizure",
    }
    r2 = api.created(referral(pid, eid, referralDetail=neuro))["orderId"]
    r3 = api.created(referral(other, other_eid))["orderId"]
    api.created(lab(pid, eid))

    def ids(**query: Any) -> list[str]:
        return _ids(api.ok(api.get("/orders/referrals", **query)))

    listing = api.ok(api.get("/orders/referrals"))
    assert set(listing) == LIST_KEYS
    assert (listing["page"], listing["pageSize"], listing["total"]) == (1, 20, 3)
    assert _ids(listing) == [r3, r2, r1]
    for item in listing["items"]:
        assert item["orderType"] == "referral"
        assert "referralDetail" in item
    assert ids(patientId=pid) == [r2, r1]
    assert ids(referToFacilityId="fac_03JNEURO") == [r2]
    assert ids(referralStatus="pending_scheduling") == [r1]
    assert ids(urgency="urgent") == [r2]
    assert ids(urgency="routine", patientId=other) == [r3]
    page = api.ok(api.get("/orders/referrals", pageSize=1, page=2))
    assert (page["page"], page["pageSize"], page["total"]) == (2, 1, 3)
    assert _ids(page) == [r2]
    error_of(api.get("/orders/referrals", pageSize=101), 400, "VALIDATION_ERROR")


def test_orders_referrals_is_never_read_as_an_order_id(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    api.created(lab(pid, eid))
    body = api.ok(api.get("/orders/referrals"))
    assert set(body) == LIST_KEYS and body["total"] == 0
    # NURSE may read orders by id but not list referrals: the seed's referral route answers.
    error_of(api.get("/orders/referrals", api.nurse), 403, "FORBIDDEN")
    error_of(api.get("/orders/referrals", api.nurse, patientId=pid), 403, "FORBIDDEN")


# ====================================================================== /v1, limits, 404s
def test_every_endpoint_also_answers_at_v1(client: FlaskClient, headers: TokenFactory) -> None:
    api = LegacyApi(client, headers, prefix="/v1")
    pid, eid = _on_warfarin(api)
    created = api.ok(api.create(medication(pid, eid)), 201)
    oid, alert = created["orderId"], created["cdsAlerts"][0]["alertId"]
    assert api.order(oid)["orderId"] == oid
    assert api.listing(patientId=pid)["total"] == 2
    assert api.ok(api.acknowledge(oid, alert, 1))["version"] == 2
    assert api.ok(api.activate(oid, 2))["status"] == "active"
    assert api.ok(api.change(oid, "hold", 3))["status"] == "on-hold"
    assert api.ok(api.change(oid, "resume", 4))["status"] == "active"
    assert api.ok(api.change(oid, "cancel", 5))["status"] == "cancelled"
    assert api.ok(api.change(oid, "correction", 6))["status"] == "entered-in-error"
    batch = api.ok(api.post("/orders/batch", {"orders": [lab(pid, eid)]}), 207)
    assert batch["results"][0]["success"] is True
    sid = api.ok(api.post("/order-sets", order_set("v1 set", lab_template())), 201)["orderSetId"]
    assert _ids(api.ok(api.get("/order-sets")), "orderSetId") == [sid]
    inst = api.post(f"/order-sets/{sid}/instantiate", {"patientId": pid, "encounterId": eid})
    assert len(api.ok(inst, 201)["orderIds"]) == 1
    ref = api.ok(api.create(referral(pid, eid)), 201)["orderId"]
    assert api.ok(api.get(f"/orders/referrals/{ref}"))["orderId"] == ref
    assert _ids(api.ok(api.get("/orders/referrals"))) == [ref]
    error_of(api.get("/orders/ord_01J00000000000000000000000"), 404, "ORDER_NOT_FOUND")


_TOO_LARGE = b'{"notes": "' + b"x" * (1024 * 1024) + b'"}'


@pytest.mark.parametrize("prefix", ["/api/v1", "/v1"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/orders"),
        ("POST", "/orders/batch"),
        ("POST", "/order-sets"),
        ("PUT", "/orders/ord_01J00000000000000000000000/cancel"),
        ("POST", "/orders/ord_01J00000000000000000000000/activate"),
    ],
)
def test_body_over_1_mib_is_413_in_the_legacy_shape(
    api: LegacyApi, prefix: str, method: str, path: str
) -> None:
    before = api.counts()
    r = api.client.open(f"{prefix}{path}", method=method, data=_TOO_LARGE, headers=api.doc)
    error_of(r, 413, "PAYLOAD_TOO_LARGE")
    assert api.counts() == before


def test_a_body_just_under_1_mib_is_read_and_validated(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    body = lab(pid, eid, notes="x" * (1024 * 1024 - 2048))
    raw = json.dumps(body).encode()
    assert len(raw) < 1024 * 1024
    r = api.client.post(api.url("/orders"), data=raw, headers=api.doc)
    assert "notes" in _fields(error_of(r, 400, "VALIDATION_ERROR"))


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/nope", 404),
        ("GET", "/v1/nope", 404),
        ("GET", "/api/v1/orders/ord_1/cds-alerts/cds_1/acknowledge/now", 404),
        ("PUT", "/api/v1/orders/ord_01J00000000000000000000000/frobnicate", 404),
        ("POST", "/api/v1/order-sets/ords_1/explode", 404),
        ("DELETE", "/api/v1/orders/ord_01J00000000000000000000000", 405),
        ("PATCH", "/v1/orders", 405),
    ],
)
@pytest.mark.parametrize("authenticated", [True, False])
def test_unknown_paths_and_methods_answer_legacy_json(
    api: LegacyApi, method: str, path: str, status: int, authenticated: bool
) -> None:
    hdrs = api.doc if authenticated else {"Content-Type": "application/json"}
    r = api.client.open(path, method=method, headers=hdrs, json={})
    # Without a token, refusing with 401 before routing is as good as the 404/405.
    expected = {status} if authenticated else {status, 401}
    assert r.status_code in expected, (r.status_code, r.data[:200])
    error_of(r, r.status_code, None)
    assert b"<html" not in r.data.lower()


# ====================================================================== FHIR ids
def test_legacy_ids_are_the_fhir_ids_with_an_underscore(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    created = api.created(referral(pid, eid))
    stored = api.fhir(created)
    assert stored["id"] == fhir_id(created["orderId"])
    assert legacy_id(stored["id"]) == created["orderId"]
    assert stored["subject"]["reference"] == f"Patient/{fhir_id(pid)}"
    assert stored["encounter"]["reference"] == f"Encounter/{fhir_id(eid)}"
    assert stored["performer"] == [{"reference": "Organization/fac-02JCARDIO"}]
    codings = [c for cat in stored["category"] for c in cat["coding"]]
    assert (SNOMED, "3457005") in {(c["system"], c["code"]) for c in codings}
