"""CDS Hooks 2.0 endpoints: discovery, service calls, feedback (DESIGN §6)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.clinical.ward import AMOXICILLIN_500_CAP, WARFARIN, Ward, rules


def _request(hook: str, pid: str, drafts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "userId": "Practitioner/dr-1",
        "patientId": pid,
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts],
        },
    }
    if hook == "order-select":
        context["selections"] = [f"{d['resourceType']}/{d['id']}" for d in drafts]
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, **extra}


def test_discovery_lists_the_built_in_services(ward: Ward) -> None:
    r = ward.client.get("/cds-services", headers=ward.doc)
    assert r.status_code == 200
    services = {s["id"]: s for s in r.json["services"]}
    assert {s["hook"] for s in services.values()} == {"order-select", "order-sign"}
    for s in services.values():
        assert s["description"] and s["title"]
        assert "{{context.patientId}}" in s["prefetch"]["allergies"]


def test_discovery_needs_a_token(ward: Ward) -> None:
    assert ward.client.get("/cds-services").status_code == 401


def test_order_select_returns_the_alerts_the_create_path_stores(ward: Ward) -> None:
    pid = ward.patient()
    ward.ok(ward.activate(ward.order(ward.medication(pid, WARFARIN))))
    draft = {**ward.medication(pid, AMOXICILLIN_500_CAP), "id": "draft-1"}
    r = ward.client.post(
        "/cds-services/order-select-checks",
        json=_request("order-select", pid, [draft]),
        headers=ward.doc,
    )
    assert r.status_code == 200, r.json
    cards = r.json["cards"]
    assert cards and all(len(c["summary"]) <= 140 and c["uuid"] for c in cards)
    assert {c["indicator"] for c in cards} <= {"info", "warning", "critical"}
    assert all(c["source"]["label"] for c in cards)
    stored = ward.order(ward.medication(pid, AMOXICILLIN_500_CAP))
    stored_rules = rules(ward.alerts(stored))
    card_rules = {c["source"].get("topic", {}).get("code") for c in cards}
    assert stored_rules == card_rules
    assert "DDI-AMOX-WARFARIN" in card_rules


def test_prefetch_is_used_when_sent_and_null_means_no_data(ward: Ward) -> None:
    pid = ward.patient()
    ward.ok(ward.activate(ward.order(ward.medication(pid, WARFARIN))))
    draft = {**ward.medication(pid, AMOXICILLIN_500_CAP), "id": "draft-2"}
    body = _request("order-select", pid, [draft], prefetch={"medications": None})
    r = ward.client.post("/cds-services/order-select-checks", json=body, headers=ward.doc)
    assert r.status_code == 200
    assert "DDI-AMOX-WARFARIN" not in {
        c["source"].get("topic", {}).get("code") for c in r.json["cards"]
    }


def test_unknown_patient_without_prefetch_is_412(ward: Ward) -> None:
    draft = {**ward.medication("nobody", AMOXICILLIN_500_CAP), "id": "d"}
    r = ward.client.post(
        "/cds-services/order-select-checks",
        json=_request("order-select", "nobody", [draft]),
        headers=ward.doc,
    )
    assert r.status_code == 412
    assert r.json["error"]["code"] == "PREFETCH_UNAVAILABLE"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.pop("hookInstance"),
        lambda b: b.pop("context"),
        lambda b: b["context"].pop("patientId"),
        lambda b: b["context"].pop("draftOrders"),
        lambda b: b.update(hook="patient-view"),
        lambda b: b.update(prefetch=[]),
    ],
)
def test_malformed_requests_are_400_with_a_message(ward: Ward, mutate: Any) -> None:
    pid = ward.patient()
    body = _request("order-select", pid, [{**ward.medication(pid, WARFARIN), "id": "x"}])
    mutate(body)
    r = ward.client.post("/cds-services/order-select-checks", json=body, headers=ward.doc)
    assert r.status_code == 400, r.json
    assert r.json["error"]["code"] == "VALIDATION_ERROR"
    assert r.json["error"]["message"]


def _warned_amoxicillin(ward: Ward) -> tuple[dict[str, Any], dict[str, Any]]:
    """A draft amoxicillin order next to active warfarin, and a feedback body overriding its
    interaction card (the comment to fill in): (order, feedback)."""
    pid = ward.patient()
    ward.ok(ward.activate(ward.order(ward.medication(pid, WARFARIN))))
    order = ward.order(ward.medication(pid, AMOXICILLIN_500_CAP))
    r = ward.client.post(
        "/cds-services/order-select-checks",
        json=_request("order-select", pid, [ward.read(order)]),
        headers=ward.doc,
    )
    card = next(
        c
        for c in r.json["cards"]
        if c["source"].get("topic", {}).get("code") == "DDI-AMOX-WARFARIN"
    )
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"userComment": ""},
                "outcomeTimestamp": "2026-11-21T10:00:00Z",
            }
        ]
    }
    return order, feedback


def _with_comment(feedback: dict[str, Any], comment: str) -> dict[str, Any]:
    [item] = feedback["feedback"]
    return {"feedback": [{**item, "overrideReason": {"userComment": comment}}]}


def test_feedback_overridden_twice_records_one_acknowledgement(ward: Ward) -> None:
    order, feedback = _warned_amoxicillin(ward)
    version = ward.read(order)["meta"]["versionId"]
    for _ in range(2):
        fb = ward.client.post(
            "/cds-services/order-select-checks/feedback",
            json=_with_comment(feedback, "INR checked daily"),
            headers=ward.doc,
        )
        assert fb.status_code == 200, fb.json
    ddi = next(a for a in ward.alerts(order) if "DDI-AMOX-WARFARIN" in rules([a]))
    assert len(ddi["mitigation"]) == 1
    assert ddi["mitigation"][0]["action"]["text"] == "INR checked daily"
    assert int(ward.read(order)["meta"]["versionId"]) == int(version) + 1
    assert ward.ok(ward.activate(order))["status"] == "active"


def test_feedback_with_a_coded_reason_and_a_blank_comment_records_the_reason_alone(
    ward: Ward,
) -> None:
    """A coded override reason is reason enough; the blank comment beside it adds nothing
    (no trailing colon or spaces in the record)."""
    order, feedback = _warned_amoxicillin(ward)
    [item] = feedback["feedback"]
    reason = {"code": "will-monitor", "display": "Will monitor the patient"}
    body = {"feedback": [{**item, "overrideReason": {"reason": reason, "userComment": "  "}}]}
    fb = ward.client.post("/cds-services/order-select-checks/feedback", json=body, headers=ward.doc)
    assert fb.status_code == 200, fb.json
    ddi = next(a for a in ward.alerts(order) if "DDI-AMOX-WARFARIN" in rules([a]))
    assert ddi["mitigation"][0]["action"]["text"] == "Will monitor the patient"


def test_feedback_for_an_unknown_card_is_404(ward: Ward) -> None:
    body = {
        "feedback": [
            {
                "card": str(uuid.uuid4()),
                "outcome": "overridden",
                "overrideReason": {"userComment": "x"},
                "outcomeTimestamp": "2026-11-21T10:00:00Z",
            }
        ]
    }
    r = ward.client.post("/cds-services/order-select-checks/feedback", json=body, headers=ward.doc)
    assert r.status_code == 404
    assert r.json["error"]["code"] == "CDS_ALERT_NOT_FOUND"


def test_feedback_overriding_with_a_blank_comment_is_400_and_acknowledges_nothing(
    ward: Ward,
) -> None:
    """An override must say why: a comment of spaces is no reason, and the warning stays
    unacknowledged (activation still waits for it)."""
    order, feedback = _warned_amoxicillin(ward)
    before = ward.read(order)
    fb = ward.client.post(
        "/cds-services/order-select-checks/feedback",
        json=_with_comment(feedback, "   "),
        headers=ward.doc,
    )
    assert fb.status_code == 400, fb.json
    assert fb.json["error"]["code"] == "VALIDATION_ERROR"
    # Refused at the field the client sent, not at the acknowledgement's inner `reason`.
    assert [d["field"] for d in fb.json["error"]["details"]] == ["feedback[0].overrideReason"]
    ddi = next(a for a in ward.alerts(order) if "DDI-AMOX-WARFARIN" in rules([a]))
    assert "mitigation" not in ddi
    assert ward.read(order) == before
    assert ward.activate(order).status_code == 422
