"""Medication safety stories through the FHIR face (DESIGN §6; issue 3 acceptance)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.clinical.ward import (
    AMOXICILLIN,
    AMOXICILLIN_500_CAP,
    AMPICILLIN,
    LOINC,
    OXYCODONE_ER_10,
    PENICILLIN_G,
    SNOMED,
    WARFARIN,
    Ward,
    issue_codes,
    rules,
)


def test_amoxicillin_with_active_warfarin_warns_and_activation_waits_for_acknowledgement(
    ward: Ward,
) -> None:
    pid = ward.patient()
    warfarin = ward.order(ward.medication(pid, WARFARIN))
    assert ward.activate(warfarin).status_code == 200
    amox = ward.order(ward.medication(pid, AMOXICILLIN_500_CAP))
    alerts = ward.alerts(amox)
    assert "DDI-AMOX-WARFARIN" in rules(alerts)
    ddi = next(a for a in alerts if "DDI-AMOX-WARFARIN" in rules([a]))
    assert "INR" in ddi["detail"]
    assert ddi["severity"] == "moderate"
    assert amox["detectedIssue"] == [{"reference": f"DetectedIssue/{a['id']}"} for a in alerts]

    blocked = ward.activate(amox)
    assert blocked.status_code == 422
    assert "CDS_WARNING_UNACKNOWLEDGED" in issue_codes(blocked.json)
    assert ward.read(amox)["status"] == "draft"

    no_reason = ward.acknowledge(amox, ddi["id"], reason=" ")
    assert no_reason.status_code == 400
    acked = ward.acknowledge(amox, ddi["id"], reason="INR monitored daily")
    assert acked.status_code == 200, acked.json
    mitigation = ward.read(ddi)["mitigation"][0]
    assert mitigation["action"]["text"] == "INR monitored daily"
    assert mitigation["author"]["display"] == "dev-user"
    assert ward.ok(ward.activate(amox))["status"] == "active"


def test_editing_a_warned_draft_keeps_its_links_to_the_warnings(ward: Ward) -> None:
    """The prescriber changes the dose of a warned amoxicillin draft with a body that says
    nothing of the alerts: the order still names its DetectedIssues (a FHIR client reading
    it still sees the interaction) and activation still waits for the acknowledgement."""
    pid = ward.patient()
    ward.ok(ward.activate(ward.order(ward.medication(pid, WARFARIN))))
    amox = ward.order(ward.medication(pid, AMOXICILLIN_500_CAP))
    links = amox["detectedIssue"]
    assert links
    body = {k: v for k, v in amox.items() if k not in ("detectedIssue", "meta")}
    body["dosageInstruction"] = [{"text": "500 mg three times a day with food"}]
    edited = ward.update(body, amox["meta"]["versionId"])
    assert edited.status_code == 200, edited.json
    assert edited.json["detectedIssue"] == links
    assert ward.read(amox)["detectedIssue"] == links
    blocked = ward.activate(amox)
    assert "CDS_WARNING_UNACKNOWLEDGED" in issue_codes(blocked.json)


def test_high_criticality_amoxicillin_allergy_rejects_the_order_and_stores_nothing(
    ward: Ward,
) -> None:
    pid = ward.patient()
    ward.allergy(pid, AMOXICILLIN, criticality="high")
    before = ward.count("MedicationRequest", pid), ward.count("DetectedIssue", pid)
    r = ward.create(ward.medication(pid, AMOXICILLIN_500_CAP))
    assert r.status_code == 422
    assert "CDS_HARD_STOP" in issue_codes(r.json)
    assert (ward.count("MedicationRequest", pid), ward.count("DetectedIssue", pid)) == before


def test_low_criticality_allergy_is_a_warning_not_a_hard_stop(ward: Ward) -> None:
    pid = ward.patient()
    ward.allergy(pid, AMOXICILLIN, criticality="low")
    order = ward.order(ward.medication(pid, AMOXICILLIN_500_CAP))
    assert {a["severity"] for a in ward.alerts(order)} == {"moderate"}


def test_penicillin_class_allergy_triggers_on_amoxicillin_and_ampicillin(ward: Ward) -> None:
    pid = ward.patient()
    ward.allergy(pid, PENICILLIN_G, criticality="low")
    for drug in (AMOXICILLIN_500_CAP, AMPICILLIN):
        order = ward.order(ward.medication(pid, drug))
        assert any(r.startswith("ALLERGY") for r in rules(ward.alerts(order))), drug


def test_refuted_allergy_is_ignored(ward: Ward) -> None:
    pid = ward.patient()
    ward.allergy(pid, AMOXICILLIN, verification="refuted")
    order = ward.order(ward.medication(pid, AMOXICILLIN_500_CAP))
    assert not any(r.startswith("ALLERGY") for r in rules(ward.alerts(order)))


def test_allergy_added_after_the_draft_blocks_activation_and_the_order_stays_draft(
    ward: Ward,
) -> None:
    pid = ward.patient()
    order = ward.order(ward.medication(pid, AMOXICILLIN_500_CAP))
    ward.allergy(pid, AMOXICILLIN, criticality="high")
    r = ward.activate(order)
    assert r.status_code == 422
    assert "CDS_HARD_STOP" in issue_codes(r.json)
    assert ward.read(order)["status"] == "draft"
    stored = [a for a in ward.alerts(order) if a["severity"] == "high"]
    assert stored, "the alert found at signing is stored for the client to fetch"
    hard = ward.acknowledge(order, stored[0]["id"])
    assert hard.status_code == 422
    assert "CDS_HARD_STOP" in issue_codes(hard.json)


def test_allergy_entered_in_error_lets_activation_through_and_resolves_the_old_alert(
    ward: Ward,
) -> None:
    pid = ward.patient()
    order = ward.order(ward.medication(pid, AMOXICILLIN_500_CAP))
    allergy = ward.allergy(pid, AMOXICILLIN, criticality="high")
    assert ward.activate(order).status_code == 422
    corrected = {
        **allergy,
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "code": "entered-in-error",
                }
            ]
        },
    }
    ward.ok(
        ward.client.put(
            f"/fhir/R4/AllergyIntolerance/{allergy['id']}", json=corrected, headers=ward.admin
        )
    )
    assert ward.ok(ward.activate(order))["status"] == "active"
    old = [a for a in ward.alerts(order) if a["severity"] == "high"]
    assert old and all(a["status"] == "cancelled" for a in old)
    assert all(
        any(e["url"] == "urn:orders-service:cds-resolved" for e in a["extension"]) for a in old
    )


def test_duplicate_cbc_warns_and_names_the_other_order(ward: Ward) -> None:
    pid = ward.patient()
    first = ward.order(ward.lab(pid, "58410-2"))
    second = ward.order(ward.lab(pid, "58410-2"))
    dup = [a for a in ward.alerts(second) if "DUPLICATE-ORDER" in rules([a])]
    assert dup and f"ServiceRequest/{first['id']}" in dup[0]["detail"]
    other = ward.order(ward.lab(pid, "24323-8"))
    assert not ward.alerts(other)


@pytest.mark.parametrize(
    ("first_codings", "second_codings", "duplicate"),
    [
        # Matched on the second coding of the open order.
        ([(LOINC, "58410-2"), ("urn:lab:local", "CBC")], [("urn:lab:local", "CBC")], True),
        # Codes without a system match codes without a system.
        ([(None, "CBC-NOSYS")], [(None, "CBC-NOSYS")], True),
        # Search syntax characters in a code are just characters.
        ([("urn:lab:local", "a,b|c$d\\e")], [("urn:lab:local", "a,b|c$d\\e")], True),
        # The same code in another system is another test.
        ([("urn:lab:one", "K1")], [("urn:lab:two", "K1")], False),
        # A coded order next to one with no system: only the rule's exact match counts.
        ([("urn:lab:one", "K2")], [(None, "K2")], False),
    ],
)
def test_duplicate_lab_lookup_by_code_matches_exact_codings(
    ward: Ward,
    first_codings: list[tuple[str | None, str]],
    second_codings: list[tuple[str | None, str]],
    duplicate: bool,
) -> None:
    """Decision support loads only the open orders sharing a coding (an indexed lookup):
    it must find every order the duplicate rule would match, and the rule still decides."""

    def coded(codings: list[tuple[str | None, str]]) -> dict[str, Any]:
        body = ward.lab(pid)
        body["code"] = {"coding": [{"code": c, **({"system": s} if s else {})} for s, c in codings]}
        return body

    pid = ward.patient()
    first = ward.order(coded(first_codings))
    second = ward.order(coded(second_codings))
    dup = [a for a in ward.alerts(second) if "DUPLICATE-ORDER" in rules([a])]
    assert bool(dup) is duplicate, dup
    if duplicate:
        assert f"ServiceRequest/{first['id']}" in dup[0]["detail"]


def test_unknown_drug_with_nothing_to_check_against_gives_an_info_alert(ward: Ward) -> None:
    pid = ward.patient()
    order = ward.order(ward.medication(pid, "99999999", "Mystery tablet"))
    alerts = ward.alerts(order)
    assert rules(alerts) == {"DRUG-UNKNOWN"}
    assert alerts[0]["severity"] == "low"
    assert "Mystery tablet" in alerts[0]["detail"]


def test_unknown_drug_for_a_patient_with_a_drug_allergy_is_a_warning(ward: Ward) -> None:
    pid = ward.patient()
    ward.allergy(pid, AMOXICILLIN, criticality="high")
    order = ward.order(ward.medication(pid, "99999999", "Mystery tablet"))
    alerts = ward.alerts(order)
    assert rules(alerts) == {"DRUG-UNKNOWN"}
    assert alerts[0]["severity"] == "moderate"
    assert "1 medication allergy record(s)" in alerts[0]["detail"]


def test_oxycodone_code_shown_as_amoxicillin_warns_of_the_mismatch_and_no_amoxicillin_rule_fires(
    ward: Ward,
) -> None:
    pid = ward.patient()
    ward.allergy(pid, AMOXICILLIN, criticality="high")
    warfarin = ward.order(ward.medication(pid, WARFARIN))
    ward.ok(ward.activate(warfarin))
    order = ward.order(ward.medication(pid, OXYCODONE_ER_10, "Amoxicillin 500mg"))
    found = rules(ward.alerts(order))
    assert "CODE_DISPLAY_MISMATCH" in found
    assert "DDI-AMOX-WARFARIN" not in found
    assert not any(r.startswith("ALLERGY") for r in found)


def test_snomed_penicillin_allergy_blocks_amoxicillin(ward: Ward) -> None:
    pid = ward.patient()
    ward.allergy(pid, "764146007", system=SNOMED, criticality="high")
    r = ward.create(ward.medication(pid, AMOXICILLIN_500_CAP))
    assert r.status_code == 422
