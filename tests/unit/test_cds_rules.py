"""Each CDS rule on its own, table-driven, against the REAL shipped knowledge base.

Rules are pure functions of (OrderContext, KnowledgeBase), so these tests need no database.
Clinical facts are in the test names; codes are RxNorm / SNOMED CT / LOINC as in
../shared/reference/cds-and-workflow-facts.md §3.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.cds.alerts import Alert
from app.cds.context import OrderContext
from app.cds.knowledge_base import KnowledgeBase, load_knowledge
from app.cds.rules import (
    code_display,
    drug_allergy,
    drug_interaction,
    duplicate_order,
    unknown_drug,
)

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
PATIENT = "pat-1"

# RxNorm
AMOXICILLIN_500_CAP = "308191"
AMOXICILLIN = "723"
AMPICILLIN = "733"
AMOX_CLAV_SUSP = "617993"
PENICILLIN_G = "7980"
PENICILLIN_V = "7984"
CEPHALEXIN_500_CAP = "309114"
WARFARIN = "11289"
WARFARIN_5_TAB = "855332"
ASPIRIN = "1191"
IBUPROFEN = "5640"
SULFAMETHOXAZOLE = "10180"
FUROSEMIDE = "4603"
OXYCODONE_ER_10 = "1049502"
# SNOMED CT substances
SCT_PENICILLIN = "764146007"
SCT_AMOXICILLIN = "372687004"
SCT_SULFONAMIDE = "387406002"
SCT_NSAID = "372665008"
SCT_PEANUT = "762952008"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge()


# ---------------------------------------------------------------------- builders
def med(
    code: str | None,
    *,
    rid: str | None = None,
    status: str = "draft",
    display: str | None = None,
    system: str = RX,
    text: str | None = None,
    patient: str = PATIENT,
) -> dict[str, Any]:
    concept: dict[str, Any] = {}
    if code is not None:
        coding: dict[str, Any] = {"system": system, "code": code}
        if display is not None:
            coding["display"] = display
        concept["coding"] = [coding]
    if text is not None:
        concept["text"] = text
    order: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        "medicationCodeableConcept": concept,
    }
    if rid:
        order["id"] = rid
    return order


def service(
    codes: list[tuple[str, str]], *, rid: str | None = None, status: str = "draft", text: str = ""
) -> dict[str, Any]:
    order: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "code": {"coding": [{"system": s, "code": c} for s, c in codes]},
    }
    if text:
        order["code"]["text"] = text
    if rid:
        order["id"] = rid
    return order


def diet(code: str, *, rid: str | None = None, status: str = "draft") -> dict[str, Any]:
    order: dict[str, Any] = {
        "resourceType": "NutritionOrder",
        "status": status,
        "intent": "order",
        "patient": {"reference": f"Patient/{PATIENT}"},
        "dateTime": "2025-01-01T10:00:00Z",
        "oralDiet": {"type": [{"coding": [{"system": SCT, "code": code}], "text": "Diet"}]},
    }
    if rid:
        order["id"] = rid
    return order


def allergy(
    system: str,
    code: str,
    *,
    rid: str = "alg-1",
    criticality: str | None = "high",
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    patient: str = PATIENT,
    in_reaction: bool = False,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": rid,
        "patient": {"reference": f"Patient/{patient}"},
    }
    if criticality is not None:
        resource["criticality"] = criticality
    if clinical is not None:
        resource["clinicalStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": clinical,
                }
            ]
        }
    if verification is not None:
        resource["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "code": verification,
                }
            ]
        }
    coded = {"coding": [{"system": system, "code": code}]}
    if in_reaction:
        resource["code"] = {"text": "see reaction"}
        resource["reaction"] = [{"substance": coded, "manifestation": [{"text": "rash"}]}]
    else:
        resource["code"] = coded
    return resource


def ctx(
    order: dict[str, Any],
    *,
    allergies: tuple[dict[str, Any], ...] = (),
    others: tuple[dict[str, Any], ...] = (),
    hook: str = "order-select",
) -> OrderContext:
    return OrderContext(
        order=order,
        patient_id=PATIENT,
        allergies=allergies,
        other_orders=others,
        hook=hook,  # type: ignore[arg-type]
    )


def summary(alerts: list[Alert]) -> list[tuple[str, str]]:
    return [(a.rule_id, a.level) for a in alerts]


# ---------------------------------------------------------------------- drug-allergy
ALLERGY_CASES = [
    # (name, ordered RxNorm, allergy kwargs, expected [(rule_id, level)])
    (
        "amoxicillin allergy, high criticality, amoxicillin capsule: hard-stop",
        AMOXICILLIN_500_CAP,
        {"system": RX, "code": AMOXICILLIN, "criticality": "high"},
        [("ALLERGY-DRUG", "hard-stop")],
    ),
    (
        "amoxicillin allergy, low criticality: warning",
        AMOXICILLIN_500_CAP,
        {"system": RX, "code": AMOXICILLIN, "criticality": "low"},
        [("ALLERGY-DRUG", "warning")],
    ),
    (
        "amoxicillin allergy, criticality unable-to-assess: warning",
        AMOXICILLIN_500_CAP,
        {"system": RX, "code": AMOXICILLIN, "criticality": "unable-to-assess"},
        [("ALLERGY-DRUG", "warning")],
    ),
    (
        "amoxicillin allergy, criticality not recorded: warning",
        AMOXICILLIN_500_CAP,
        {"system": RX, "code": AMOXICILLIN, "criticality": None},
        [("ALLERGY-DRUG", "warning")],
    ),
    (
        "amoxicillin allergy as a SNOMED CT substance: hard-stop",
        AMOXICILLIN_500_CAP,
        {"system": SCT, "code": SCT_AMOXICILLIN},
        [("ALLERGY-DRUG", "hard-stop")],
    ),
    (
        "amoxicillin allergy, amoxicillin/clavulanate suspension contains amoxicillin",
        AMOX_CLAV_SUSP,
        {"system": RX, "code": AMOXICILLIN},
        [("ALLERGY-DRUG", "hard-stop")],
    ),
    (
        "allergy recorded under reaction.substance only still counts",
        AMOXICILLIN_500_CAP,
        {"system": RX, "code": AMOXICILLIN, "in_reaction": True},
        [("ALLERGY-DRUG", "hard-stop")],
    ),
    (
        "penicillin-class allergy (SNOMED) fires on amoxicillin",
        AMOXICILLIN_500_CAP,
        {"system": SCT, "code": SCT_PENICILLIN},
        [("ALLERGY-CLASS", "hard-stop")],
    ),
    (
        "penicillin-class allergy (SNOMED) fires on ampicillin",
        AMPICILLIN,
        {"system": SCT, "code": SCT_PENICILLIN},
        [("ALLERGY-CLASS", "hard-stop")],
    ),
    (
        "penicillin-class allergy (SNOMED), low criticality: warning",
        AMPICILLIN,
        {"system": SCT, "code": SCT_PENICILLIN, "criticality": "low"},
        [("ALLERGY-CLASS", "warning")],
    ),
    (
        "penicillin allergy recorded as RxNorm penicillin G fires on amoxicillin",
        AMOXICILLIN_500_CAP,
        {"system": RX, "code": PENICILLIN_G},
        [("ALLERGY-CLASS", "hard-stop")],
    ),
    (
        "penicillin allergy recorded as RxNorm penicillin G fires on ampicillin",
        AMPICILLIN,
        {"system": RX, "code": PENICILLIN_G},
        [("ALLERGY-CLASS", "hard-stop")],
    ),
    (
        "amoxicillin allergy, ampicillin order: same class, warning",
        AMPICILLIN,
        {"system": RX, "code": AMOXICILLIN, "criticality": "high"},
        [("ALLERGY-SAME-CLASS", "warning")],
    ),
    (
        "penicillin allergy, cephalexin: cross-reactivity warning even when high",
        CEPHALEXIN_500_CAP,
        {"system": SCT, "code": SCT_PENICILLIN, "criticality": "high"},
        [("ALLERGY-CROSS-REACTIVITY", "warning")],
    ),
    (
        "amoxicillin allergy, cephalexin: cross-reactivity warning",
        CEPHALEXIN_500_CAP,
        {"system": RX, "code": AMOXICILLIN},
        [("ALLERGY-CROSS-REACTIVITY", "warning")],
    ),
    (
        "sulfonamide antibiotic allergy fires on sulfamethoxazole",
        SULFAMETHOXAZOLE,
        {"system": SCT, "code": SCT_SULFONAMIDE},
        [("ALLERGY-CLASS", "hard-stop")],
    ),
    (
        "sulfonamide antibiotic allergy does not fire on furosemide (Strom 2003)",
        FUROSEMIDE,
        {"system": SCT, "code": SCT_SULFONAMIDE},
        [],
    ),
    (
        "NSAID allergy fires on ibuprofen",
        IBUPROFEN,
        {"system": SCT, "code": SCT_NSAID, "criticality": "low"},
        [("ALLERGY-CLASS", "warning")],
    ),
    (
        "refuted allergy: nothing",
        AMOXICILLIN_500_CAP,
        {"system": RX, "code": AMOXICILLIN, "verification": "refuted"},
        [],
    ),
    (
        "entered-in-error allergy: nothing",
        AMOXICILLIN_500_CAP,
        {"system": RX, "code": AMOXICILLIN, "verification": "entered-in-error"},
        [],
    ),
    (
        "inactive allergy: nothing",
        AMOXICILLIN_500_CAP,
        {"system": RX, "code": AMOXICILLIN, "clinical": "inactive"},
        [],
    ),
    (
        "resolved allergy: nothing",
        AMOXICILLIN_500_CAP,
        {"system": RX, "code": AMOXICILLIN, "clinical": "resolved"},
        [],
    ),
    (
        "unconfirmed allergy still counts",
        AMOXICILLIN_500_CAP,
        {"system": RX, "code": AMOXICILLIN, "verification": "unconfirmed"},
        [("ALLERGY-DRUG", "hard-stop")],
    ),
    (
        "allergy without clinical or verification status counts",
        AMOXICILLIN_500_CAP,
        {"system": RX, "code": AMOXICILLIN, "clinical": None, "verification": None},
        [("ALLERGY-DRUG", "hard-stop")],
    ),
    (
        "another patient's allergy: nothing",
        AMOXICILLIN_500_CAP,
        {"system": RX, "code": AMOXICILLIN, "patient": "someone-else"},
        [],
    ),
    (
        "food allergy (peanut) unknown to the drug KB: nothing",
        AMOXICILLIN_500_CAP,
        {"system": SCT, "code": SCT_PEANUT},
        [],
    ),
    (
        "unrelated drug allergy (warfarin) on amoxicillin: nothing",
        AMOXICILLIN_500_CAP,
        {"system": RX, "code": WARFARIN},
        [],
    ),
]


@pytest.mark.parametrize(
    ("ordered", "allergy_kwargs", "expected"),
    [pytest.param(o, a, e, id=n) for n, o, a, e in ALLERGY_CASES],
)
def test_drug_allergy(
    kb: KnowledgeBase, ordered: str, allergy_kwargs: dict[str, Any], expected: list[Any]
) -> None:
    kwargs = dict(allergy_kwargs)
    found = drug_allergy.check(
        ctx(med(ordered), allergies=(allergy(kwargs.pop("system"), kwargs.pop("code"), **kwargs),)),
        kb,
    )
    assert summary(found) == expected
    for alert in found:
        assert alert.code == "ALGY"
        assert alert.implicated == ("AllergyIntolerance/alg-1",)
        assert alert.cause.startswith("allergy:AllergyIntolerance/alg-1:")
        assert alert.cause.endswith(f":{alert.level}")


def test_allergy_message_names_the_allergen_and_the_drug(kb: KnowledgeBase) -> None:
    [alert] = drug_allergy.check(
        ctx(med(AMOXICILLIN_500_CAP), allergies=(allergy(SCT, SCT_PENICILLIN),)), kb
    )
    assert "Penicillin" in alert.message
    assert "amoxicillin 500 MG Oral Capsule" in alert.message
    assert "criticality high" in alert.message


def test_cross_reactivity_alert_carries_the_caveat_and_its_source(kb: KnowledgeBase) -> None:
    [alert] = drug_allergy.check(
        ctx(med(CEPHALEXIN_500_CAP), allergies=(allergy(SCT, SCT_PENICILLIN),)), kb
    )
    [entry] = kb.cross_reactions({"penicillins"}, {"cephalosporins"})
    assert entry.note.rstrip(".") in alert.message
    assert alert.source == entry.source


def test_criticality_change_changes_the_cause(kb: KnowledgeBase) -> None:
    """An acknowledged warning must never stand for a later hard-stop of the same allergy."""
    low = drug_allergy.check(
        ctx(med(AMOXICILLIN_500_CAP), allergies=(allergy(RX, AMOXICILLIN, criticality="low"),)),
        kb,
    )
    high = drug_allergy.check(
        ctx(med(AMOXICILLIN_500_CAP), allergies=(allergy(RX, AMOXICILLIN, criticality="high"),)),
        kb,
    )
    assert low[0].cause != high[0].cause


def test_each_counting_allergy_is_its_own_alert(kb: KnowledgeBase) -> None:
    found = drug_allergy.check(
        ctx(
            med(AMOXICILLIN_500_CAP),
            allergies=(
                allergy(RX, AMOXICILLIN, rid="a1", criticality="low"),
                allergy(SCT, SCT_PENICILLIN, rid="a2", criticality="high"),
                allergy(SCT, SCT_PENICILLIN, rid="a3", verification="refuted"),
            ),
        ),
        kb,
    )
    assert [(a.rule_id, a.level, a.implicated) for a in found] == [
        ("ALLERGY-DRUG", "warning", ("AllergyIntolerance/a1",)),
        ("ALLERGY-CLASS", "hard-stop", ("AllergyIntolerance/a2",)),
    ]


def test_allergy_rule_ignores_non_medication_orders(kb: KnowledgeBase) -> None:
    order = service([(LOINC, "58410-2")])
    assert drug_allergy.check(ctx(order, allergies=(allergy(SCT, SCT_PENICILLIN),)), kb) == []


# ---------------------------------------------------------------------- drug-drug
INTERACTION_CASES = [
    # (name, ordered, other, expected [(rule_id, level)])
    (
        "amoxicillin with active warfarin: Monitor INR warning",
        AMOXICILLIN_500_CAP,
        WARFARIN,
        [("DDI-AMOX-WARFARIN", "warning")],
    ),
    (
        "warfarin ordered with amoxicillin on file (either way round)",
        WARFARIN,
        AMOXICILLIN_500_CAP,
        [("DDI-AMOX-WARFARIN", "warning")],
    ),
    (
        "amoxicillin with a warfarin 5 mg tablet product",
        AMOXICILLIN_500_CAP,
        WARFARIN_5_TAB,
        [("DDI-AMOX-WARFARIN", "warning")],
    ),
    (
        "amoxicillin/clavulanate with warfarin",
        AMOX_CLAV_SUSP,
        WARFARIN,
        [("DDI-AMOX-WARFARIN", "warning")],
    ),
    (
        "penicillin V with warfarin: class rule",
        PENICILLIN_V,
        WARFARIN,
        [("DDI-PENICILLIN-WARFARIN", "warning")],
    ),
    (
        "warfarin with aspirin: the specific rule supersedes the NSAID rule",
        WARFARIN,
        ASPIRIN,
        [("DDI-WARFARIN-ASPIRIN", "warning")],
    ),
    (
        "warfarin with ibuprofen: major, warning",
        WARFARIN,
        IBUPROFEN,
        [("DDI-WARFARIN-NSAID", "warning")],
    ),
    ("amoxicillin twice is a duplicate, not an interaction", AMOXICILLIN_500_CAP, AMOXICILLIN, []),
    ("amoxicillin with ibuprofen: nothing", AMOXICILLIN_500_CAP, IBUPROFEN, []),
    ("unknown other drug is skipped", AMOXICILLIN_500_CAP, "99999999", []),
]


@pytest.mark.parametrize(
    ("ordered", "other", "expected"),
    [pytest.param(o, t, e, id=n) for n, o, t, e in INTERACTION_CASES],
)
def test_drug_interaction(kb: KnowledgeBase, ordered: str, other: str, expected: list[Any]) -> None:
    found = drug_interaction.check(
        ctx(med(ordered), others=(med(other, rid="other-1", status="active"),)), kb
    )
    assert summary(found) == expected
    for alert in found:
        assert alert.code == "DRG"
        assert alert.implicated == ("MedicationRequest/other-1",)
        assert alert.cause == f"ddi:{alert.rule_id}:MedicationRequest/other-1"


def test_amoxicillin_warfarin_says_monitor_inr(kb: KnowledgeBase) -> None:
    [alert] = drug_interaction.check(
        ctx(med(AMOXICILLIN_500_CAP), others=(med(WARFARIN, rid="w1", status="active"),)), kb
    )
    assert "Monitor INR" in alert.message
    assert alert.source
    assert "MedicationRequest/w1" in (alert.detail or "")


def test_interaction_ignores_other_resource_types_and_the_order_itself(kb: KnowledgeBase) -> None:
    order = med(AMOXICILLIN_500_CAP, rid="me")
    others = (
        service([(LOINC, "58410-2")], rid="sr-1"),
        {**med(WARFARIN), "id": "me"},  # the order itself, should a caller pass it
    )
    assert drug_interaction.check(ctx(order, others=others), kb) == []


def test_interaction_with_an_unsaved_other_draft_has_a_stable_cause(kb: KnowledgeBase) -> None:
    first = drug_interaction.check(ctx(med(AMOXICILLIN_500_CAP), others=(med(WARFARIN),)), kb)
    again = drug_interaction.check(ctx(med(AMOXICILLIN_500_CAP), others=(med(WARFARIN),)), kb)
    assert [a.cause for a in first] == [a.cause for a in again]
    assert first[0].cause == f"ddi:DDI-AMOX-WARFARIN:MedicationRequest?code={RX}|{WARFARIN}"
    assert first[0].implicated == ()


# ONC high-priority list (Phansalkar et al., JAMIA 2012; AJHP 2022 Table 4), written here
# independently of the knowledge file: row -> one representative ingredient pair.
ONC_PAIRS = {
    1: ("6901", "8123"),  # methylphenidate + phenelzine
    2: ("343047", "7646"),  # atazanavir + omeprazole
    3: ("73689", "1256"),  # febuxostat + azathioprine
    4: ("4493", "8123"),  # fluoxetine + phenelzine
    5: ("51499", "6135"),  # irinotecan + ketoconazole
    6: ("6754", "10734"),  # meperidine + tranylcypromine
    7: ("704", "6011"),  # amitriptyline + isocarboxazid
    8: ("49247", "18631"),  # dofetilide + azithromycin
    9: ("596205", "42355"),  # ramelteon + fluvoxamine
    10: ("9384", "85762"),  # rifampin + ritonavir
    11: ("36567", "21212"),  # simvastatin + clarithromycin
    12: ("85762", "4025"),  # ritonavir + ergotamine
    13: ("57258", "2551"),  # tizanidine + ciprofloxacin
    14: ("10734", "8702"),  # tranylcypromine + procarbazine
    15: ("37418", "8123"),  # sumatriptan + phenelzine
}


@pytest.mark.parametrize("reverse", [False, True], ids=["a-ordered", "b-ordered"])
@pytest.mark.parametrize("row", sorted(ONC_PAIRS))
def test_every_onc_high_priority_pair_is_a_hard_stop(
    kb: KnowledgeBase, row: int, reverse: bool
) -> None:
    a, b = ONC_PAIRS[row]
    ordered, other = (b, a) if reverse else (a, b)
    found = drug_interaction.check(
        ctx(med(ordered), others=(med(other, rid="o", status="active"),)), kb
    )
    onc_rows = {r.id: r.onc_row for r in kb.rules}
    fired = [x for x in found if onc_rows.get(x.rule_id) == row]
    assert len(fired) == 1, summary(found)
    assert fired[0].level == "hard-stop"


def test_the_independent_onc_table_covers_all_15_rows(kb: KnowledgeBase) -> None:
    assert sorted(ONC_PAIRS) == list(range(1, 16))
    rows = [r.onc_row for r in kb.rules if r.onc_high_priority and r.onc_row is not None]
    assert sorted(rows) == list(range(1, 16))


def _representative_pair(kb: KnowledgeBase, rule_id: str) -> tuple[str, str]:
    rule = next(r for r in kb.rules if r.id == rule_id)
    side_a, side_b = kb.rule_ingredients(rule)
    for a in sorted(side_a):
        for b in sorted(side_b):
            if a != b:
                return a, b
    raise AssertionError(f"{rule_id} has no pair")  # pragma: no cover


@pytest.mark.parametrize("rule_id", [r.id for r in load_knowledge().rules])
def test_every_rule_in_the_knowledge_file_fires_at_its_level(
    kb: KnowledgeBase, rule_id: str
) -> None:
    rule = next(r for r in kb.rules if r.id == rule_id)
    a, b = _representative_pair(kb, rule_id)
    found = drug_interaction.check(ctx(med(a), others=(med(b, rid="o", status="active"),)), kb)
    levels = {x.rule_id: x.level for x in found}
    superseding = {r.id for r in kb.rules if rule_id in r.supersedes}
    if superseding & set(levels):
        return  # a more specific rule said it instead, by design
    expected = "hard-stop" if rule.severity == "contraindicated" else "warning"
    assert levels.get(rule_id) == expected, (a, b, levels)


# ---------------------------------------------------------------------- duplicate order
CBC = (LOINC, "58410-2")
BMP = (LOINC, "51990-0")
DUPLICATE_CASES = [
    # (name, order, others, expected [(rule_id, level)])
    (
        "duplicate CBC while another CBC is active",
        service([CBC], text="CBC"),
        (service([CBC], rid="sr-9", status="active"),),
        [("DUPLICATE-ORDER", "warning")],
    ),
    (
        "duplicate CBC while another CBC is a draft",
        service([CBC]),
        (service([CBC], rid="sr-9", status="draft"),),
        [("DUPLICATE-ORDER", "warning")],
    ),
    (
        "CBC then BMP: different code, nothing",
        service([CBC]),
        (service([BMP], rid="sr-9", status="active"),),
        [],
    ),
    (
        "same code in another system is not the same code",
        service([CBC]),
        (service([("urn:local:lab", "58410-2")], rid="sr-9"),),
        [],
    ),
    (
        "one coding in common among several is enough",
        service([("urn:local:lab", "CBC"), CBC]),
        (service([CBC], rid="sr-9"),),
        [("DUPLICATE-ORDER", "warning")],
    ),
    (
        "two other CBCs: one warning naming both",
        service([CBC]),
        (service([CBC], rid="sr-8"), service([CBC], rid="sr-9")),
        [("DUPLICATE-ORDER", "warning")],
    ),
    ("a lab never duplicates a medication", service([CBC]), (med(AMOXICILLIN, rid="m1"),), []),
    (
        "amoxicillin capsule while amoxicillin/clavulanate is active: shared ingredient",
        med(AMOXICILLIN_500_CAP),
        (med(AMOX_CLAV_SUSP, rid="m1", status="active"),),
        [("DUPLICATE-ORDER", "warning")],
    ),
    (
        "amoxicillin and warfarin are not duplicates",
        med(AMOXICILLIN_500_CAP),
        (med(WARFARIN, rid="m1"),),
        [],
    ),
    (
        "an unknown drug ordered twice: exact coding match",
        med("99999999"),
        (med("99999999", rid="m1"),),
        [("DUPLICATE-ORDER", "warning")],
    ),
    (
        "an unknown drug and a different unknown drug: nothing",
        med("99999999"),
        (med("99999998", rid="m1"),),
        [],
    ),
    (
        "same diet twice",
        diet("226208002"),
        (diet("226208002", rid="n1"),),
        [("DUPLICATE-ORDER", "warning")],
    ),
    ("different diets", diet("226208002"), (diet("160670007", rid="n1"),), []),
    ("a diet never duplicates a lab", diet("226208002"), (service([CBC], rid="sr-9"),), []),
    (
        "the order itself is not its own duplicate",
        service([CBC], rid="sr-1"),
        (service([CBC], rid="sr-1"),),
        [],
    ),
]


@pytest.mark.parametrize(
    ("order", "others", "expected"),
    [pytest.param(o, t, e, id=n) for n, o, t, e in DUPLICATE_CASES],
)
def test_duplicate_order(
    kb: KnowledgeBase, order: dict[str, Any], others: tuple[dict[str, Any], ...], expected: Any
) -> None:
    found = duplicate_order.check(ctx(order, others=others), kb)
    assert summary(found) == expected
    for alert in found:
        assert alert.code == "DUPTHPY"
        assert alert.cause.startswith("dup:")


def test_duplicate_cbc_names_the_other_order_and_its_status(kb: KnowledgeBase) -> None:
    [alert] = duplicate_order.check(
        ctx(service([CBC], text="CBC"), others=(service([CBC], rid="sr-9", status="active"),)),
        kb,
    )
    assert alert.message == "Duplicate order: CBC is already ordered (ServiceRequest/sr-9, active)"
    assert alert.implicated == ("ServiceRequest/sr-9",)
    assert alert.cause == "dup:ServiceRequest:http://loinc.org|58410-2"


def test_many_duplicates_give_one_alert_naming_the_first_few(kb: KnowledgeBase) -> None:
    """A patient with many open CBCs gets one warning, not one per order."""
    others = tuple(service([CBC], rid=f"sr-{i}", status="active") for i in range(12))
    [alert] = duplicate_order.check(ctx(service([CBC], text="CBC"), others=others), kb)
    assert alert.message == (
        "Duplicate order: CBC is already ordered 12 times (ServiceRequest/sr-0 (active), "
        "ServiceRequest/sr-1 (active), ServiceRequest/sr-2 (active) and 9 more)"
    )
    assert len(alert.implicated) == 10
    again = duplicate_order.check(ctx(service([CBC], text="CBC"), others=others[:1]), kb)
    assert again[0].cause == alert.cause, "the cause names what is duplicated, not how often"


def test_duplicate_medication_is_named_by_its_code_not_its_display(kb: KnowledgeBase) -> None:
    [alert] = duplicate_order.check(
        ctx(
            med(AMOXICILLIN_500_CAP, display="Tylenol"),
            others=(med(AMOXICILLIN, rid="m1", status="on-hold"),),
        ),
        kb,
    )
    assert "amoxicillin 500 MG Oral Capsule" in alert.message
    assert "Tylenol" not in alert.message
    assert "(MedicationRequest/m1, on-hold)" in alert.message


# ---------------------------------------------------------------------- unknown drug
UNKNOWN_CASES = [
    (
        "unknown RxNorm code",
        med("99999999", display="Mystery 5 mg"),
        "unknown:info:" + RX + "|99999999",
    ),
    (
        "a local code only",
        med("ABC-1", system="urn:local:formulary"),
        "unknown:info:urn:local:formulary|ABC-1",
    ),
    ("text only", med(None, text="Grandma's tonic"), "unknown:info:text:Grandma's tonic"),
]


@pytest.mark.parametrize(
    ("order", "cause"), [pytest.param(o, c, id=n) for n, o, c in UNKNOWN_CASES]
)
def test_unknown_drug_with_nothing_to_check_against_is_an_info_alert(
    kb: KnowledgeBase, order: dict[str, Any], cause: str
) -> None:
    [alert] = unknown_drug.check(ctx(order), kb)
    assert (alert.rule_id, alert.level, alert.code) == ("DRUG-UNKNOWN", "info", "KNOWLEDGE-GAP")
    assert "could not be identified" in alert.message
    assert "allergy and interaction checks were not performed" in (alert.detail or "")
    assert alert.cause == cause


@pytest.mark.parametrize(
    "reference", ["Medication/m-7", "https://pharmacy.example/fhir/Medication/m-7", "#gone"]
)
def test_a_medication_that_cannot_be_read_is_a_warning_with_nothing_to_check_against(
    kb: KnowledgeBase, reference: str
) -> None:
    """Not in the context (not stored in the tenant, not sent by the caller, not contained):
    the order names no drug anyone can see, so it waits for an acknowledgement."""
    order = {
        **med(None),
        "medicationCodeableConcept": None,
        "medicationReference": {"reference": reference},
    }
    [alert] = unknown_drug.check(ctx(order), kb)
    assert (alert.rule_id, alert.level) == ("DRUG-UNKNOWN", "warning")
    assert "the referenced Medication could not be read" in alert.message
    assert alert.cause == f"unknown:warning:reference:{reference}"


def test_known_drug_is_not_unknown(kb: KnowledgeBase) -> None:
    assert unknown_drug.check(ctx(med(AMOXICILLIN_500_CAP)), kb) == []


def test_a_contained_medication_is_read_by_its_code(kb: KnowledgeBase) -> None:
    order = {
        **med(None),
        "medicationCodeableConcept": None,
        "contained": [
            {
                "resourceType": "Medication",
                "id": "m",
                "code": {"coding": [{"system": RX, "code": AMOXICILLIN_500_CAP}]},
            }
        ],
        "medicationReference": {"reference": "#m"},
    }
    assert unknown_drug.check(ctx(order), kb) == []
    assert summary(drug_allergy.check(ctx(order, allergies=(allergy(RX, AMOXICILLIN),)), kb)) == [
        ("ALLERGY-DRUG", "hard-stop")
    ]


def test_unknown_drug_gets_no_allergy_or_interaction_alert(kb: KnowledgeBase) -> None:
    context = ctx(
        med("99999999", display="Amoxicillin 500mg"),
        allergies=(allergy(SCT, SCT_PENICILLIN), allergy(RX, AMOXICILLIN, rid="alg-2")),
        others=(med(WARFARIN, rid="w1", status="active"),),
    )
    assert drug_allergy.check(context, kb) == []
    assert drug_interaction.check(context, kb) == []
    assert code_display.check(context, kb) == []  # no known code whose display could lie


def test_unknown_drug_ignores_other_order_types(kb: KnowledgeBase) -> None:
    assert unknown_drug.check(ctx(service([CBC])), kb) == []


# ---------------------------------------------------------------------- code/display
DISPLAY_CASES = [
    (
        "seed example: 1049502 shown as Amoxicillin 500mg",
        med(OXYCODONE_ER_10, display="Amoxicillin 500mg"),
        [("CODE_DISPLAY_MISMATCH", "warning")],
    ),
    ("1049502 with its own name", med(OXYCODONE_ER_10, display="Oxycodone ER 10 mg"), []),
    (
        "1049502 mislabelled only in text",
        med(OXYCODONE_ER_10, text="Amoxicillin 500mg"),
        [("CODE_DISPLAY_MISMATCH", "warning")],
    ),
    (
        "amoxicillin code with an amoxicillin display",
        med(AMOXICILLIN_500_CAP, display="Amoxicillin 500mg"),
        [],
    ),
    (
        "amoxicillin code shown as a brand of warfarin",
        med(AMOXICILLIN_500_CAP, display="Coumadin 5 mg"),
        [("CODE_DISPLAY_MISMATCH", "warning")],
    ),
    (
        "a display naming no known drug is not a mismatch",
        med(AMOXICILLIN_500_CAP, display="Capsule 500 mg"),
        [],
    ),
    ("no display at all", med(OXYCODONE_ER_10), []),
    (
        "combination product named by one of its own ingredients",
        med(AMOX_CLAV_SUSP, display="Amoxicillin suspension"),
        [],
    ),
]


@pytest.mark.parametrize(
    ("order", "expected"), [pytest.param(o, e, id=n) for n, o, e in DISPLAY_CASES]
)
def test_code_display(kb: KnowledgeBase, order: dict[str, Any], expected: list[Any]) -> None:
    found = code_display.check(ctx(order), kb)
    assert summary(found) == expected
    for alert in found:
        assert alert.code == "CODE-DISPLAY"


def test_code_display_message_for_the_seed_example(kb: KnowledgeBase) -> None:
    [alert] = code_display.check(ctx(med(OXYCODONE_ER_10, display="Amoxicillin 500mg")), kb)
    assert alert.message == (
        "RxNorm 1049502 is 12 HR Oxycodone Hydrochloride 10 MG Extended Release Oral Tablet, "
        "but the display says 'Amoxicillin 500mg'. Codes are authoritative; check the order."
    )
    assert alert.cause == "display:1049502"


def test_one_mismatch_alert_per_code_even_when_display_and_text_both_lie(
    kb: KnowledgeBase,
) -> None:
    order = med(OXYCODONE_ER_10, display="Amoxicillin 500mg", text="Aspirin")
    assert summary(code_display.check(ctx(order), kb)) == [("CODE_DISPLAY_MISMATCH", "warning")]


def test_another_patients_orders_never_count(kb: KnowledgeBase) -> None:
    stranger = {**med(WARFARIN, rid="w9", status="active"), "subject": {"reference": "Patient/x"}}
    context = ctx(med(AMOXICILLIN_500_CAP), others=(stranger,))
    assert drug_interaction.check(context, kb) == []
    assert duplicate_order.check(ctx(med(WARFARIN), others=(stranger,)), kb) == []


# ------------------------------------------------------- interaction messages name drugs
@pytest.mark.parametrize(
    ("ordered", "other", "expected"),
    [
        # the rule's own text already names both ingredients: kept as written
        (
            med(AMOXICILLIN_500_CAP),
            med(WARFARIN, rid="w1", status="active"),
            "Potential interaction: Amoxicillin + Warfarin. Monitor INR.",
        ),
        # a class in the rule's text: the drugs are added, ordered drug first
        (
            med(IBUPROFEN),
            med(WARFARIN, rid="w1", status="active"),
            "Major interaction: Warfarin + NSAID. Raised risk of serious bleeding. Avoid, or "
            "monitor closely. (ibuprofen with warfarin)",
        ),
        (
            med(WARFARIN),
            med(IBUPROFEN, rid="i1", status="active"),
            "Major interaction: Warfarin + NSAID. Raised risk of serious bleeding. Avoid, or "
            "monitor closely. (warfarin with ibuprofen)",
        ),
        # a drug matched by its RxNorm-style name is said to be, even when the text names it
        (
            med("local-1", system="urn:local", display="ibuprofen 200 MG Oral Tablet"),
            med(WARFARIN, rid="w1", status="active"),
            "Major interaction: Warfarin + NSAID. Raised risk of serious bleeding. Avoid, or "
            "monitor closely. (ibuprofen (matched by name) with warfarin)",
        ),
        (
            med("local-2", system="urn:local", text="amoxicillin 500 MG Oral Capsule"),
            med(WARFARIN, rid="w1", status="active"),
            "Potential interaction: Amoxicillin + Warfarin. Monitor INR. "
            "(amoxicillin (matched by name) with warfarin)",
        ),
    ],
)
def test_interaction_message_names_both_drugs_exactly(
    kb: KnowledgeBase, ordered: dict[str, Any], other: dict[str, Any], expected: str
) -> None:
    [alert] = drug_interaction.check(ctx(ordered, others=(other,)), kb)
    assert alert.message == expected


def test_a_combination_product_is_named_by_all_its_ingredients_in_order(
    kb: KnowledgeBase,
) -> None:
    name = "amoxicillin 875 MG / clavulanate potassium 125 MG Oral Tablet"
    ordered = med("local-3", system="urn:local", display=name)
    [alert] = drug_interaction.check(
        ctx(ordered, others=(med(WARFARIN, rid="w1", status="active"),)), kb
    )
    assert alert.message.endswith("(amoxicillin / clavulanate (matched by name) with warfarin)"), (
        alert.message
    )
