"""Safety behaviours of the allergy and interaction rules that mutation testing found unpinned
(issue 16), against the REAL shipped knowledge base and its real codes.

Each test states a clinical behaviour that must hold whatever the implementation: what an
allergy or order listed EARLIER must never hide, same-class allergies beyond penicillins,
records that are not allergies, and unsaved records. Builders are shared with
test_cds_rules.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.cds.alerts import Alert
from app.cds.knowledge_base import KnowledgeBase, KnowledgeError, load_knowledge
from app.cds.rules import drug_allergy, drug_interaction
from tests.unit.test_cds_rules import (
    AMOX_CLAV_SUSP,
    AMOXICILLIN,
    AMOXICILLIN_500_CAP,
    IBUPROFEN,
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
    med,
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
    source = Path(load_knowledge.__code__.co_filename).parent / "knowledge"
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
