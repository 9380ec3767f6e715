"""Safety behaviours of the CDS rules that mutation testing found unpinned (issue 16),
against the REAL shipped knowledge base and its real codes.

Each test states a behaviour that must hold whatever the implementation: what a record or
order listed EARLIER must never hide, same-class allergies beyond penicillins, records that
are not allergies, unsaved records, what the clinician reads (names, the record's own words,
sources, the ONC note), and the spelling of causes, which are stored with every alert and
compared at every later activation. Builders are shared with test_cds_rules.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.cds.alerts import Alert
from app.cds.knowledge_base import KnowledgeBase, KnowledgeError, load_knowledge
from app.cds.rules import (
    allergy_unchecked,
    code_display,
    drug_allergy,
    drug_interaction,
    duplicate_order,
    unknown_drug,
)
from tests.unit.test_cds_rules import (
    AMOX_CLAV_SUSP,
    AMOXICILLIN,
    AMOXICILLIN_500_CAP,
    IBUPROFEN,
    LOINC,
    PATIENT,
    RX,
    SCT,
    SCT_PEANUT,
    SCT_PENICILLIN,
    SULFAMETHOXAZOLE,
    WARFARIN,
    WARFARIN_5_TAB,
    allergy,
    ctx,
    diet,
    med,
    service,
    summary,
)

NAPROXEN = "7258"
DICLOFENAC = "3355"
SULFADIAZINE = "10171"
SMX_TMP = "10831"  # sulfamethoxazole / trimethoprim
LOCAL = "urn:oid:2.16.840.1.113883.3.9999.local-formulary"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge()


def penicillin_hard_stop() -> dict[str, Any]:
    """An active, confirmed, high-criticality penicillin (class) allergy."""
    return allergy(SCT, SCT_PENICILLIN, rid="alg-penicillin", criticality="high")


# ---------------------------------------------------------------------- nothing earlier hides a hard-stop
EARLIER: dict[str, dict[str, Any]] = {
    "a refuted penicillin allergy": allergy(
        SCT, SCT_PENICILLIN, rid="alg-refuted", verification="refuted"
    ),
    "an entered-in-error penicillin allergy": allergy(
        SCT, SCT_PENICILLIN, rid="alg-eie", verification="entered-in-error"
    ),
    "a resolved penicillin allergy": allergy(
        SCT, SCT_PENICILLIN, rid="alg-resolved", clinical="resolved"
    ),
    "another patient's penicillin allergy": allergy(
        SCT, SCT_PENICILLIN, rid="alg-other", patient="someone-else"
    ),
    "an allergy the knowledge base cannot resolve (peanut)": allergy(
        SCT, SCT_PEANUT, rid="alg-peanut"
    ),
    "an allergy to a local code": allergy(LOCAL, "PEN-X", rid="alg-local"),
    "an allergy that does not match the drug (sulfonamide)": allergy(
        RX, SULFAMETHOXAZOLE, rid="alg-sulfa"
    ),
    "a record that is not an AllergyIntolerance": {
        "resourceType": "Condition",
        "id": "cond-1",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "code": {"coding": [{"system": SCT, "code": SCT_PENICILLIN}]},
    },
}


@pytest.mark.parametrize("earlier", list(EARLIER))
def test_an_earlier_allergy_that_does_not_count_never_hides_a_later_hard_stop(
    kb: KnowledgeBase, earlier: str
) -> None:
    alerts = drug_allergy.check(
        ctx(med(AMOXICILLIN_500_CAP), allergies=(EARLIER[earlier], penicillin_hard_stop())), kb
    )
    assert summary(alerts) == [("ALLERGY-CLASS", "hard-stop")]
    assert alerts[0].implicated == ("AllergyIntolerance/alg-penicillin",)


@pytest.mark.parametrize("earlier", list(EARLIER))
def test_a_record_that_does_not_count_gives_no_allergy_alert_on_its_own(
    kb: KnowledgeBase, earlier: str
) -> None:
    assert (
        drug_allergy.check(ctx(med(AMOXICILLIN_500_CAP), allergies=(EARLIER[earlier],)), kb) == []
    )


def test_an_allergy_record_without_a_resource_type_still_counts(kb: KnowledgeBase) -> None:
    """Never silent: a record handed over as an allergy without `resourceType` is an allergy."""
    record = {k: v for k, v in penicillin_hard_stop().items() if k != "resourceType"}
    alerts = drug_allergy.check(ctx(med(AMOXICILLIN_500_CAP), allergies=(record,)), kb)
    assert summary(alerts) == [("ALLERGY-CLASS", "hard-stop")]


# ---------------------------------------------------------------------- same class beyond penicillins
SAME_CLASS = [
    ("ibuprofen allergy, naproxen order", IBUPROFEN, NAPROXEN, ("ibuprofen", "naproxen")),
    ("ibuprofen allergy, diclofenac order", IBUPROFEN, DICLOFENAC, ("ibuprofen", "diclofenac")),
    (
        "sulfamethoxazole allergy, sulfadiazine order",
        SULFAMETHOXAZOLE,
        SULFADIAZINE,
        ("sulfamethoxazole", "sulfadiazine"),
    ),
    # morphine 7052 and oxycodone 7804, both in the opioids class (ATC N02A)
    ("morphine allergy, oxycodone order", "7052", "7804", ("morphine", "oxycodone")),
]


@pytest.mark.parametrize(("case", "allergen", "ordered", "names"), SAME_CLASS)
@pytest.mark.parametrize("criticality", ["high", "low"])
def test_an_ingredient_allergy_warns_for_another_member_of_its_class(
    kb: KnowledgeBase,
    case: str,
    allergen: str,
    ordered: str,
    names: tuple[str, str],
    criticality: str,
) -> None:
    """Same class, different ingredient: always a warning (never silent, never a hard-stop)."""
    alerts = drug_allergy.check(
        ctx(med(ordered), allergies=(allergy(RX, allergen, criticality=criticality),)), kb
    )
    assert summary(alerts) == [("ALLERGY-SAME-CLASS", "warning")], case
    assert all(name in alerts[0].message for name in names), alerts[0].message


@pytest.mark.parametrize(
    ("allergen", "ordered", "names"),
    [
        (AMOXICILLIN, "733", ("amoxicillin", "ampicillin")),
        ("2231", "2180", ("cephalexin", "cefazolin")),
    ],
    ids=["amoxicillin allergy, ampicillin order", "cephalexin allergy, cefazolin order"],
)
def test_penicillins_and_cephalosporins_are_allergy_groups_without_any_cross_reactivity_entry(
    tmp_path: Path, allergen: str, ordered: str, names: tuple[str, str]
) -> None:
    """Both classes are allergy groups in their own right, not only as the two ends of the
    penicillin-cephalosporin cross-reactivity: a knowledge base without that entry still
    warns for another member of the same class."""
    source = Path(__file__).resolve().parents[2] / "app" / "cds" / "knowledge"
    copy = tmp_path / "knowledge"
    shutil.copytree(source, copy)
    path = copy / "classes.json"
    data = json.loads(path.read_text())
    data["cross_reactivity"] = []
    path.write_text(json.dumps(data))
    alerts = drug_allergy.check(
        ctx(med(ordered), allergies=(allergy(RX, allergen, criticality="high"),)),
        load_knowledge(copy),
    )
    assert summary(alerts) == [("ALLERGY-SAME-CLASS", "warning")]
    assert all(name in alerts[0].message for name in names), alerts[0].message


def test_a_sulfamethoxazole_allergy_is_a_hard_stop_for_co_trimoxazole(kb: KnowledgeBase) -> None:
    """The product contains the allergen itself: the criticality decides."""
    alerts = drug_allergy.check(
        ctx(med(SMX_TMP), allergies=(allergy(RX, SULFAMETHOXAZOLE, criticality="high"),)), kb
    )
    assert summary(alerts) == [("ALLERGY-DRUG", "hard-stop")]


def test_an_nsaid_allergy_does_not_reach_a_penicillin(kb: KnowledgeBase) -> None:
    alerts = drug_allergy.check(
        ctx(med(AMOXICILLIN_500_CAP), allergies=(allergy(RX, IBUPROFEN),)), kb
    )
    assert alerts == []


# ---------------------------------------------------------------------- unsaved allergies
def _unsaved(code: str, system: str = RX) -> dict[str, Any]:
    record = allergy(system, code)
    del record["id"]
    return record


def test_two_unsaved_allergies_give_two_alerts_with_distinct_causes(kb: KnowledgeBase) -> None:
    """CDS Hooks prefetch may carry allergies with no id: each is still its own alert."""
    alerts = drug_allergy.check(
        ctx(
            med(AMOXICILLIN_500_CAP),
            allergies=(_unsaved(AMOXICILLIN), _unsaved(SCT_PENICILLIN, SCT)),
        ),
        kb,
    )
    assert summary(alerts) == [("ALLERGY-DRUG", "hard-stop"), ("ALLERGY-CLASS", "hard-stop")]
    assert len({a.cause for a in alerts}) == 2
    assert all(a.implicated == () for a in alerts)


def test_an_unsaved_allergy_has_the_same_cause_on_every_run(kb: KnowledgeBase) -> None:
    first = drug_allergy.check(
        ctx(med(AMOXICILLIN_500_CAP), allergies=(_unsaved(AMOXICILLIN),)), kb
    )
    again = drug_allergy.check(
        ctx(med(AMOXICILLIN_500_CAP), allergies=(_unsaved(AMOXICILLIN),)), kb
    )
    assert [a.cause for a in first] == [a.cause for a in again]
    other = drug_allergy.check(
        ctx(med(AMOXICILLIN_500_CAP), allergies=(_unsaved(AMOX_CLAV_SUSP),)), kb
    )
    assert {a.cause for a in other}.isdisjoint(a.cause for a in first)


# ---------------------------------------------------------------------- interactions
def _ddi(alerts: list[Alert]) -> list[tuple[str, str, str]]:
    return [(a.rule_id, a.level, a.cause.rsplit(":", 1)[-1]) for a in alerts]


@pytest.mark.parametrize(
    "unknown",
    [
        med("999999999", rid="mr-unknown", status="active"),
        med("PEN-X", rid="mr-local", system=LOCAL, status="active"),
        med(None, rid="mr-text", text="grandma's tonic", status="active"),
    ],
    ids=["unknown RxNorm", "local code", "text only"],
)
def test_an_unknown_drug_listed_first_never_hides_warfarin(
    kb: KnowledgeBase, unknown: dict[str, Any]
) -> None:
    others = (unknown, med(WARFARIN_5_TAB, rid="mr-warfarin", status="active"))
    alerts = drug_interaction.check(ctx(med(AMOXICILLIN_500_CAP), others=others), kb)
    assert _ddi(alerts) == [("DDI-AMOX-WARFARIN", "warning", "MedicationRequest/mr-warfarin")]


def test_a_combination_product_gives_one_alert_per_interaction_and_other_order(
    kb: KnowledgeBase,
) -> None:
    """Amoxicillin/clavulanate, coded as the product AND as its amoxicillin ingredient, against
    two warfarin orders: one amoxicillin-warfarin alert per warfarin order (not one per coding
    or per ingredient), and the later order is still reported."""
    order = med(AMOX_CLAV_SUSP)
    order["medicationCodeableConcept"]["coding"].append({"system": RX, "code": AMOXICILLIN})
    others = (
        med(WARFARIN_5_TAB, rid="mr-w1", status="active"),
        med(WARFARIN, rid="mr-w2", status="on-hold"),
    )
    alerts = drug_interaction.check(ctx(order, others=others), kb)
    assert _ddi(alerts) == [
        ("DDI-AMOX-WARFARIN", "warning", "MedicationRequest/mr-w1"),
        ("DDI-AMOX-WARFARIN", "warning", "MedicationRequest/mr-w2"),
    ]


def test_each_other_order_is_checked_after_one_that_interacts(kb: KnowledgeBase) -> None:
    """Co-trimoxazole with warfarin first, then a penicillin-free NSAID: both reported."""
    others = (
        med(WARFARIN_5_TAB, rid="mr-w", status="active"),
        med(NAPROXEN, rid="mr-naproxen", status="active"),
        med(IBUPROFEN, rid="mr-ibuprofen", status="active"),
    )
    alerts = drug_interaction.check(ctx(med(WARFARIN_5_TAB), others=others), kb)
    assert _ddi(alerts) == [
        ("DDI-WARFARIN-NSAID", "warning", "MedicationRequest/mr-naproxen"),
        ("DDI-WARFARIN-NSAID", "warning", "MedicationRequest/mr-ibuprofen"),
    ]


def test_an_unsaved_other_order_is_named_by_its_codes(kb: KnowledgeBase) -> None:
    other = med(WARFARIN_5_TAB, status="draft")
    other.pop("id", None)
    alerts = drug_interaction.check(ctx(med(AMOXICILLIN_500_CAP), others=(other,)), kb)
    assert [a.cause for a in alerts] == [
        f"ddi:DDI-AMOX-WARFARIN:MedicationRequest?code={RX}|{WARFARIN_5_TAB}"
    ]
    assert alerts[0].implicated == ()


def test_an_interaction_severity_without_a_level_cannot_enter_the_knowledge_base(
    tmp_path: Path,
) -> None:
    """Levels exist for contraindicated (hard-stop), major and moderate (warning). A rule of
    any other severity, e.g. `minor`, is refused when the knowledge base loads, so no
    interaction can ever reach the rule without a specified level."""
    source = Path(__file__).resolve().parents[2] / "app" / "cds" / "knowledge"
    copy = tmp_path / "knowledge"
    shutil.copytree(source, copy)
    path = copy / "interactions.json"
    data = json.loads(path.read_text())
    data["rules"][0]["severity"] = "minor"
    path.write_text(json.dumps(data))
    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(copy)
    assert "severity" in str(caught.value)
    severities = {rule.severity for rule in load_knowledge().rules}
    assert severities <= set(drug_interaction.LEVELS)


# ---------------------------------------------------------------------- what the clinician reads
def _one(kb: KnowledgeBase, ordered: str, record: dict[str, Any]) -> Alert:
    [alert] = drug_allergy.check(ctx(med(ordered), allergies=(record,)), kb)
    return alert


def test_an_ingredient_match_names_the_shared_ingredient_and_cites_the_rxnorm_mapping(
    kb: KnowledgeBase,
) -> None:
    alert = _one(kb, AMOX_CLAV_SUSP, allergy(RX, AMOXICILLIN))
    assert "contains amoxicillin." in alert.message
    assert alert.source.startswith("RxNorm ingredient mapping")
    assert "RxNorm 723" not in alert.message  # a name, not a bare code
    assert "recorded as" not in alert.message  # the record has no words of its own


def test_every_shared_ingredient_is_named(kb: KnowledgeBase) -> None:
    """An allergy recorded against the combination product itself, ordered again."""
    alert = _one(kb, AMOX_CLAV_SUSP, allergy(RX, AMOX_CLAV_SUSP))
    assert "contains amoxicillin, clavulanate" in alert.message


def test_a_class_match_names_the_class_and_cites_its_source(kb: KnowledgeBase) -> None:
    alert = _one(kb, AMOXICILLIN_500_CAP, allergy(SCT, SCT_PENICILLIN))
    penicillins = kb.drug_class("penicillins")
    assert penicillins is not None
    assert f"is one of the {penicillins.name}" in alert.message
    assert alert.source == penicillins.source


def test_a_same_class_match_names_the_class_the_allergen_and_cites_the_class(
    kb: KnowledgeBase,
) -> None:
    alert = _one(kb, NAPROXEN, allergy(RX, IBUPROFEN))
    nsaids = kb.drug_class("nsaids")
    assert nsaids is not None
    assert f"same drug class ({nsaids.name}) as ibuprofen" in alert.message
    assert alert.source == nsaids.source


def test_a_cross_reactivity_names_only_the_ordered_drugs_class(kb: KnowledgeBase) -> None:
    alert = _one(kb, "309114", allergy(SCT, SCT_PENICILLIN))  # cephalexin 500 MG capsule
    assert "may cross-react (Cephalosporins)" in alert.message
    assert "Penicillins)" not in alert.message
    assert not alert.message.endswith("..")


def test_the_message_quotes_the_record_when_it_says_something_else(kb: KnowledgeBase) -> None:
    record = allergy(RX, AMOXICILLIN)
    record["code"]["text"] = "Augmentin - hives 2019"
    assert (
        "amoxicillin (recorded as 'Augmentin - hives 2019')"
        in _one(kb, AMOXICILLIN_500_CAP, record).message
    )
    record["code"] = {"coding": [{"system": RX, "code": AMOXICILLIN, "display": "Amoxil 500"}]}
    assert "amoxicillin (recorded as 'Amoxil 500')" in _one(kb, AMOXICILLIN_500_CAP, record).message
    record["code"] = {"coding": [{"system": RX, "code": AMOXICILLIN, "display": "Amoxicillin"}]}
    message = _one(kb, AMOXICILLIN_500_CAP, record).message
    assert "recorded as" not in message  # the same words are not repeated
    assert message.startswith("Allergy to amoxicillin ")


def test_a_missing_criticality_is_said_as_such(kb: KnowledgeBase) -> None:
    alert = _one(kb, AMOXICILLIN_500_CAP, allergy(RX, AMOXICILLIN, criticality=None))
    assert alert.level == "warning"
    assert "criticality not recorded" in alert.message


def test_an_allergy_coded_without_a_system_is_still_resolved(kb: KnowledgeBase) -> None:
    """Never silent: a bare RxNorm code on an allergy record is looked up all the same."""
    record = allergy(RX, AMOXICILLIN)
    record["code"] = {"coding": [{"code": AMOXICILLIN}]}
    assert summary(drug_allergy.check(ctx(med(AMOXICILLIN_500_CAP), allergies=(record,)), kb)) == [
        ("ALLERGY-DRUG", "hard-stop")
    ]


# ---------------------------------------------------------------------- stored causes
# A cause is stored with every DetectedIssue and compared on every later activation: if its
# spelling changed, every open alert would be resolved and raised again. So it is pinned.
CAUSES = [
    (
        AMOXICILLIN_500_CAP,
        (RX, AMOXICILLIN),
        "allergy:AllergyIntolerance/alg-1:ingredient:723:hard-stop",
    ),
    (
        AMOXICILLIN_500_CAP,
        (SCT, SCT_PENICILLIN),
        "allergy:AllergyIntolerance/alg-1:class:penicillins:hard-stop",
    ),
    (NAPROXEN, (RX, IBUPROFEN), "allergy:AllergyIntolerance/alg-1:same-class:nsaids:warning"),
    (
        "309114",
        (SCT, SCT_PENICILLIN),
        "allergy:AllergyIntolerance/alg-1:cross:penicillins>cephalosporins:warning",
    ),
]


@pytest.mark.parametrize(("ordered", "coded", "cause"), CAUSES)
def test_allergy_causes_are_spelled_as_stored(
    kb: KnowledgeBase, ordered: str, coded: tuple[str, str], cause: str
) -> None:
    assert _one(kb, ordered, allergy(*coded)).cause == cause


def test_an_unsaved_allergy_cause_lists_its_codes_sorted(kb: KnowledgeBase) -> None:
    record = _unsaved(AMOXICILLIN)
    record["code"]["coding"].append({"system": SCT, "code": "372687004"})
    alert = _one(kb, AMOXICILLIN_500_CAP, record)
    assert alert.cause == (
        f"allergy:AllergyIntolerance?code={SCT}|372687004,{RX}|{AMOXICILLIN}:ingredient:723:hard-stop"
    )


# ---------------------------------------------------------------------- interaction details
def test_only_an_onc_high_priority_pair_says_so(kb: KnowledgeBase) -> None:
    """Phenelzine (MAOI) with sertraline (SSRI) is ONC pair 4; amoxicillin-warfarin is not."""
    [onc] = drug_interaction.check(
        ctx(med("8123"), others=(med("36437", rid="mr-ssri", status="active"),)), kb
    )
    assert onc.level == "hard-stop"
    assert onc.detail.endswith(" It is on the ONC high-priority list (Phansalkar et al., 2012).")
    [other] = drug_interaction.check(
        ctx(med(AMOXICILLIN_500_CAP), others=(med(WARFARIN_5_TAB, rid="mr-w", status="active"),)),
        kb,
    )
    assert "ONC" not in other.detail
    assert other.detail.rstrip().endswith("active).")


def test_an_unsaved_other_order_with_several_codes_lists_them_sorted(kb: KnowledgeBase) -> None:
    other = med(WARFARIN_5_TAB, status="draft")
    other.pop("id", None)
    other["medicationCodeableConcept"]["coding"].append({"system": RX, "code": WARFARIN})
    [alert] = drug_interaction.check(ctx(med(AMOXICILLIN_500_CAP), others=(other,)), kb)
    assert alert.cause == (
        f"ddi:DDI-AMOX-WARFARIN:MedicationRequest?code={RX}|{WARFARIN},{RX}|{WARFARIN_5_TAB}"
    )


# ---------------------------------------------------------------------- duplicates
CBC = (LOINC, "58410-2")
CBC_LOCAL = ("urn:local-lab", "CBC")


def test_a_duplicate_without_display_is_named_by_its_code(kb: KnowledgeBase) -> None:
    alerts = duplicate_order.check(
        ctx(service([CBC]), others=(service([CBC], rid="sr-1", status="active"),)), kb
    )
    assert [a.message for a in alerts] == [
        f"Duplicate order: {LOINC}|58410-2 is already ordered (ServiceRequest/sr-1, active)"
    ]


def test_two_duplicates_are_named_with_their_statuses(kb: KnowledgeBase) -> None:
    others = (
        service([CBC], rid="sr-1", status="active"),
        service([CBC], rid="sr-2", status="draft"),
    )
    [alert] = duplicate_order.check(ctx(service([CBC], text="CBC panel"), others=others), kb)
    assert alert.message == (
        "Duplicate order: CBC panel is already ordered 2 times "
        "(ServiceRequest/sr-1 (active), ServiceRequest/sr-2 (draft))"
    )
    assert alert.source.startswith("Same order already open (DESIGN §6)")
    assert "app/cds/knowledge/duplicates.json" in alert.source


def test_an_unsaved_duplicate_is_named_by_its_codes(kb: KnowledgeBase) -> None:
    [alert] = duplicate_order.check(ctx(service([CBC]), others=(service([CBC_LOCAL, CBC]),)), kb)
    assert f"(ServiceRequest?code={LOINC}|58410-2,urn:local-lab|CBC, draft)" in alert.message
    assert alert.implicated == ()


def test_duplicate_causes_are_spelled_as_stored(kb: KnowledgeBase) -> None:
    """Stored with the DetectedIssue and compared at activation (see the allergy causes)."""
    [lab] = duplicate_order.check(
        ctx(service([CBC, CBC_LOCAL]), others=(service([CBC_LOCAL, CBC], rid="sr-1"),)), kb
    )
    assert lab.cause == f"dup:ServiceRequest:{LOINC}|58410-2, urn:local-lab|CBC"
    [drug] = duplicate_order.check(
        ctx(med(AMOX_CLAV_SUSP), others=(med(AMOX_CLAV_SUSP, rid="mr-1"),)), kb
    )
    assert drug.cause == "dup:MedicationRequest:same ingredient: amoxicillin, clavulanate"
    local = ("urn:local-formulary", "TONIC")
    unknown = med(None, text="tonic")
    unknown["medicationCodeableConcept"]["coding"] = [
        {"system": s, "code": c} for s, c in (local, ("urn:other", "T1"))
    ]
    twin = {**unknown, "id": "mr-2"}
    [coded] = duplicate_order.check(ctx(unknown, others=(twin,)), kb)
    assert coded.cause == "dup:MedicationRequest:urn:local-formulary|TONIC, urn:other|T1"
    bare = service([])
    bare["code"]["coding"] = [{"code": "CBC"}]  # a code without a system: its bare code
    [unsystemed] = duplicate_order.check(ctx(bare, others=({**bare, "id": "sr-9"},)), kb)
    assert unsystemed.cause == "dup:ServiceRequest:|CBC"


def test_a_known_and_an_unknown_drug_sharing_a_local_code_are_duplicates(
    kb: KnowledgeBase,
) -> None:
    """Amoxicillin coded in RxNorm and the pharmacy's local code, against an order carrying the
    local code only (unknown to the knowledge base): the shared code still makes a duplicate."""
    mine = med(AMOXICILLIN_500_CAP)
    mine["medicationCodeableConcept"]["coding"].append({"system": LOCAL, "code": "AMOX500"})
    theirs = med("AMOX500", rid="mr-local", system=LOCAL, status="active")
    assert summary(duplicate_order.check(ctx(mine, others=(theirs,)), kb)) == [
        ("DUPLICATE-ORDER", "warning")
    ]


@pytest.mark.parametrize(
    "order",
    [
        {"resourceType": "Task", "status": "requested", "intent": "order"},
        service([]),
        {
            "resourceType": "NutritionOrder",
            "status": "draft",
            "intent": "order",
            "patient": {"reference": f"Patient/{PATIENT}"},
            "enteralFormula": {"baseFormulaProductName": "Standard 1 kcal/ml"},
        },
    ],
    ids=["not an order type", "a service request without codes", "tube feeding, no oral diet"],
)
def test_nothing_to_compare_gives_an_empty_list(kb: KnowledgeBase, order: dict[str, Any]) -> None:
    others = (service([CBC], rid="sr-1", status="active"), diet("226379006", rid="no-1"))
    assert duplicate_order.check(ctx(order, others=others), kb) == []


# ---------------------------------------------------------------------- unknown drugs
def _unknown_message(kb: KnowledgeBase, order: dict[str, Any]) -> str:
    [alert] = unknown_drug.check(ctx(order), kb)
    return alert.message


def test_an_unknown_drug_says_the_checks_were_not_done(kb: KnowledgeBase) -> None:
    message = _unknown_message(kb, med("999999", display="Grandma tonic"))
    assert message == (
        "Grandma tonic (RxNorm 999999) could not be identified (not in the knowledge base): "
        "it was not checked against allergies and interactions."
    )


def _unknown(kind: str) -> dict[str, Any]:
    order = med(None)
    if kind == "two codes":
        order = med("999991", system="urn:a")
        order["medicationCodeableConcept"]["coding"].append({"system": "urn:b", "code": "2"})
    elif kind == "a reference by display":
        del order["medicationCodeableConcept"]
        order["medicationReference"] = {"display": "Grandma tonic"}
    return order


@pytest.mark.parametrize(
    ("kind", "cause"),
    [
        ("two codes", "unknown:info:urn:a|999991,urn:b|2"),
        # names no drug at all: a warning even with nothing to check it against
        ("a reference by display", "unknown:warning:reference:Grandma tonic"),
        ("nothing at all", "unknown:info:none"),
    ],
)
def test_unknown_drug_causes_are_spelled_as_stored(
    kb: KnowledgeBase, kind: str, cause: str
) -> None:
    """Stored with the DetectedIssue and compared at activation (see the allergy causes)."""
    [alert] = unknown_drug.check(ctx(_unknown(kind)), kb)
    assert alert.cause == cause
    assert alert.source.startswith("Orders service CDS policy: a drug that cannot be checked")


def test_every_unknown_code_is_listed(kb: KnowledgeBase) -> None:
    order = med("999999", display="Grandma tonic")
    order["medicationCodeableConcept"]["coding"].append({"system": "urn:x", "code": "T1"})
    assert _unknown_message(kb, order).startswith(
        "Grandma tonic (RxNorm 999999, urn:x T1) could not be identified"
    )


def test_a_display_that_only_repeats_the_code_is_not_repeated(kb: KnowledgeBase) -> None:
    message = _unknown_message(kb, med("999999", display="RxNorm 999999"))
    assert message.startswith("RxNorm 999999 could not be identified")


def test_a_right_display_does_not_hide_a_misleading_text(kb: KnowledgeBase) -> None:
    order = med(
        AMOXICILLIN_500_CAP, display="amoxicillin 500 MG Oral Capsule", text="Warfarin 5 mg"
    )
    alerts = code_display.check(ctx(order), kb)
    assert summary(alerts) == [("CODE_DISPLAY_MISMATCH", "warning")]
    assert "'Warfarin 5 mg'" in alerts[0].message
    assert alerts[0].source.startswith("DESIGN §6: codes are authoritative")  # the card cites it


def test_a_text_only_allergy_matches_by_name_and_says_so(kb: KnowledgeBase) -> None:
    """An allergy recorded as text ("Penicillin") is matched through the class name; the
    alert tells the clinician the match came from a name, not a code."""
    record = allergy(RX, "0", criticality="high")
    record["code"] = {"text": "Penicillin"}
    alerts = drug_allergy.check(ctx(med(AMOXICILLIN_500_CAP), allergies=(record,)), kb)
    assert [a.level for a in alerts] == ["hard-stop"]
    assert "(matched by name)" in alerts[0].message, alerts[0].message
    coded = drug_allergy.check(
        ctx(med(AMOXICILLIN_500_CAP), allergies=(penicillin_hard_stop(),)), kb
    )
    assert "matched by name" not in coded[0].message


def test_the_message_names_a_severe_history_only_when_there_is_one(kb: KnowledgeBase) -> None:
    plain = _one(kb, AMOXICILLIN_500_CAP, allergy(RX, AMOXICILLIN, criticality="low"))
    assert "history" not in plain.message
    assert "(criticality low)" in plain.message
    record = allergy(RX, AMOXICILLIN, criticality="low")
    record["reaction"] = [{"manifestation": [{"text": "Anaphylaxis"}]}]
    severe = _one(kb, AMOXICILLIN_500_CAP, record)
    assert "(criticality low; history of anaphylaxis)" in severe.message
    assert severe.level == "hard-stop"


# ---------------------------------------------------------------------- unreadable allergies
def _unreadable(rid: str | None = "alg-2", text: str | None = "Zzyzx tincture") -> dict[str, Any]:
    record = allergy("urn:local-allergy", "ZX-1", rid=rid or "x")
    if rid is None:
        del record["id"]
    record["code"]["coding"].append({"system": "urn:other-allergy", "code": "ZX-9"})
    if text is not None:
        record["code"]["text"] = text
    return record


@pytest.mark.parametrize(
    ("ordered", "drug"),
    [
        (AMOXICILLIN_500_CAP, "amoxicillin 500 MG Oral Capsule"),
        ("999999", "the ordered medication"),
    ],
    ids=["a known drug is named", "an unknown drug is not"],
)
def test_an_unreadable_allergy_after_a_readable_one_still_warns_naming_the_ordered_drug(
    kb: KnowledgeBase, ordered: str, drug: str
) -> None:
    records = (allergy(RX, AMOXICILLIN, rid="alg-1"), _unreadable())
    order = med(ordered) if ordered == AMOXICILLIN_500_CAP else med(ordered, system=LOCAL)
    [alert] = allergy_unchecked.check(ctx(order, allergies=records), kb)
    assert alert.message == (
        "Allergy could not be checked: 'Zzyzx tincture' is not a drug or drug class decision "
        f"support knows, so {drug} was not checked against it."
    )
    assert alert.cause == "allergy-unchecked:AllergyIntolerance/alg-2"
    assert alert.implicated == ("AllergyIntolerance/alg-2",)


def test_an_unsaved_unreadable_allergy_is_named_by_its_codes(kb: KnowledgeBase) -> None:
    """No id to point at: the cause lists the record's codes, nothing is implicated."""
    [alert] = allergy_unchecked.check(
        ctx(med(AMOXICILLIN_500_CAP), allergies=(_unreadable(rid=None),)), kb
    )
    assert alert.cause == (
        "allergy-unchecked:AllergyIntolerance?code=urn:local-allergy|ZX-1, urn:other-allergy|ZX-9"
    )
    assert alert.implicated == ()
    assert "'Zzyzx tincture'" in alert.message


def test_an_unreadable_allergy_without_text_is_quoted_by_its_first_code(kb: KnowledgeBase) -> None:
    [alert] = allergy_unchecked.check(
        ctx(med(AMOXICILLIN_500_CAP), allergies=(_unreadable(text=None),)), kb
    )
    assert "'urn:local-allergy|ZX-1' is not a drug" in alert.message


def test_an_allergy_record_without_any_code_or_text_is_said_to_have_none(
    kb: KnowledgeBase,
) -> None:
    record = allergy("urn:local-allergy", "ZX-1")
    del record["code"]
    [alert] = allergy_unchecked.check(ctx(med(AMOXICILLIN_500_CAP), allergies=(record,)), kb)
    assert "'no code or text' is not a drug" in alert.message
