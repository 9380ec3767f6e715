"""The CDS engine end to end (all rules, real knowledge base) and its CDS Hooks rendering."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from app.cds import alerts as alerts_mod
from app.cds.alerts import Alert, category_coding, indicator, level_of_indicator, severity
from app.cds.context import OrderContext
from app.cds.engine import SERVICES, SUMMARY_MAX, CdsEngine, card, deduplicate, truncate
from app.cds.knowledge_base import KnowledgeBase, load_knowledge
from tests.unit.test_cds_rules import (
    AMOXICILLIN,
    AMOXICILLIN_500_CAP,
    CBC,
    CEPHALEXIN_500_CAP,
    OXYCODONE_ER_10,
    PATIENT,
    RX,
    SCT,
    SCT_PENICILLIN,
    WARFARIN,
    allergy,
    ctx,
    med,
    service,
)

#: A card uuid for tests that do not care which.
U = "6f1c2b7d-4e60-4a51-9f2a-3d6b7e8f9a0b"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge()


@pytest.fixture(scope="module")
def engine(kb: KnowledgeBase) -> CdsEngine:
    return CdsEngine(kb)


def busy_context() -> OrderContext:
    """An order that sets off every kind of alert at once."""
    return ctx(
        med(AMOXICILLIN_500_CAP, display="Coumadin 5 mg"),
        allergies=(
            allergy(RX, AMOXICILLIN, rid="alg-1", criticality="high"),
            allergy(SCT, SCT_PENICILLIN, rid="alg-2", criticality="low"),
        ),
        others=(
            med(WARFARIN, rid="w1", status="active"),
            med(AMOXICILLIN, rid="m2", status="draft"),
            service([CBC], rid="sr-1", status="active"),
        ),
    )


# ---------------------------------------------------------------------- scenarios
def test_amoxicillin_with_active_warfarin_is_one_monitor_inr_warning(engine: CdsEngine) -> None:
    found = engine.evaluate(
        ctx(med(AMOXICILLIN_500_CAP), others=(med(WARFARIN, rid="w1", status="active"),))
    )
    assert [(a.rule_id, a.level) for a in found] == [("DDI-AMOX-WARFARIN", "warning")]
    assert "Monitor INR" in found[0].message


def test_amoxicillin_allergy_high_criticality_is_a_hard_stop(engine: CdsEngine) -> None:
    found = engine.evaluate(ctx(med(AMOXICILLIN_500_CAP), allergies=(allergy(RX, AMOXICILLIN),)))
    assert [(a.rule_id, a.level) for a in found] == [("ALLERGY-DRUG", "hard-stop")]


def test_penicillin_allergy_with_cephalexin_is_a_cross_reactivity_warning(
    engine: CdsEngine,
) -> None:
    found = engine.evaluate(ctx(med(CEPHALEXIN_500_CAP), allergies=(allergy(SCT, SCT_PENICILLIN),)))
    assert [(a.rule_id, a.level) for a in found] == [("ALLERGY-CROSS-REACTIVITY", "warning")]


def test_duplicate_cbc_through_the_engine(engine: CdsEngine) -> None:
    found = engine.evaluate(
        ctx(service([CBC], text="CBC"), others=(service([CBC], rid="sr-9", status="active"),))
    )
    assert [(a.rule_id, a.level, a.message) for a in found] == [
        (
            "DUPLICATE-ORDER",
            "warning",
            "Duplicate order: CBC is already ordered (ServiceRequest/sr-9, active)",
        )
    ]


def test_unknown_drug_with_allergies_and_orders_on_file_is_one_warning(
    engine: CdsEngine,
) -> None:
    """Never silent (issue 12): with something to check against, an unknown drug is a warning
    to acknowledge, and no other rule pretends to have checked it."""
    found = engine.evaluate(
        ctx(
            med("99999999", display="Amoxicillin 500mg"),
            allergies=(allergy(SCT, SCT_PENICILLIN), allergy(RX, AMOXICILLIN, rid="alg-2")),
            others=(med(WARFARIN, rid="w1", status="active"),),
        )
    )
    assert [(a.rule_id, a.level) for a in found] == [("DRUG-UNKNOWN", "warning")]
    assert "1 other medication order(s) and 2 medication allergy record(s)" in found[0].message


def test_seed_1049502_shown_as_amoxicillin_fires_no_amoxicillin_rule(engine: CdsEngine) -> None:
    """Codes are authoritative: 1049502 is oxycodone ER, whatever its display says."""
    found = engine.evaluate(
        ctx(
            med(OXYCODONE_ER_10, display="Amoxicillin 500mg"),
            allergies=(
                allergy(RX, AMOXICILLIN, rid="alg-1", criticality="high"),
                allergy(SCT, SCT_PENICILLIN, rid="alg-2", criticality="high"),
            ),
            others=(med(WARFARIN, rid="w1", status="active"),),
        )
    )
    rules = [a.rule_id for a in found]
    assert "CODE_DISPLAY_MISMATCH" in rules
    mismatch = next(a for a in found if a.rule_id == "CODE_DISPLAY_MISMATCH")
    assert mismatch.level == "warning"
    assert not any(r.startswith("ALLERGY") for r in rules), rules
    assert "DDI-AMOX-WARFARIN" not in rules
    assert "DDI-PENICILLIN-WARFARIN" not in rules
    assert "DRUG-UNKNOWN" not in rules  # the code IS known: oxycodone
    for alert in found:
        if alert is not mismatch:
            assert "amoxicillin" not in alert.message.casefold(), alert


# ---------------------------------------------------------------------- engine mechanics
def test_alerts_come_most_urgent_first(engine: CdsEngine) -> None:
    found = engine.evaluate(busy_context())
    ranks = [alerts_mod.LEVELS.index(a.level) for a in found]
    assert ranks == sorted(ranks)
    assert {a.level for a in found} == {"hard-stop", "warning"}
    assert {a.rule_id for a in found} == {
        "ALLERGY-DRUG",
        "ALLERGY-CLASS",
        "DDI-AMOX-WARFARIN",
        "DUPLICATE-ORDER",
        "CODE_DISPLAY_MISMATCH",
    }
    assert len({a.cause for a in found}) == len(found)


def test_info_comes_last() -> None:
    rules = [
        lambda c, k: [Alert("I", "info", "i", "X", "c-i")],
        lambda c, k: [Alert("W", "warning", "w", "X", "c-w")],
        lambda c, k: [Alert("H", "hard-stop", "h", "X", "c-h")],
    ]
    engine = CdsEngine(load_knowledge(), rules=rules)
    assert [a.rule_id for a in engine.evaluate(ctx(med(AMOXICILLIN)))] == ["H", "W", "I"]


def test_causes_are_stable_across_evaluations_and_knowledge_reloads(engine: CdsEngine) -> None:
    first = engine.evaluate(busy_context())
    second = engine.evaluate(busy_context())
    third = CdsEngine(load_knowledge()).evaluate(busy_context())
    assert first == second == third
    assert [a.cause for a in first] == [a.cause for a in third]


def test_a_gone_cause_disappears_and_the_others_stay(engine: CdsEngine) -> None:
    before = {a.cause for a in engine.evaluate(busy_context())}
    context = busy_context()
    without_warfarin = OrderContext(
        order=context.order,
        patient_id=context.patient_id,
        allergies=context.allergies,
        other_orders=tuple(o for o in context.other_orders if o.get("id") != "w1"),
        hook="order-sign",
    )
    after = {a.cause for a in engine.evaluate(without_warfarin)}
    assert before - after == {"ddi:DDI-AMOX-WARFARIN:MedicationRequest/w1"}
    assert after < before


def test_duplicates_by_cause_keep_the_most_urgent() -> None:
    found = deduplicate(
        [
            Alert("A", "warning", "first", "X", "same"),
            Alert("B", "hard-stop", "second", "X", "same"),
            Alert("C", "hard-stop", "third", "X", "same"),
            Alert("D", "info", "other", "X", "other"),
        ]
    )
    assert [(a.rule_id, a.cause) for a in found] == [("B", "same"), ("D", "other")]


def test_a_failing_rule_is_not_silenced(kb: KnowledgeBase) -> None:
    def broken(c: OrderContext, k: KnowledgeBase) -> list[Alert]:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        CdsEngine(kb, rules=[broken]).evaluate(ctx(med(AMOXICILLIN)))


def test_no_alerts_for_an_order_with_nothing_to_say(engine: CdsEngine) -> None:
    assert engine.evaluate(ctx(med(AMOXICILLIN_500_CAP))) == []
    assert engine.evaluate(ctx(service([CBC]))) == []


# ---------------------------------------------------------------------- cards
@pytest.mark.parametrize(
    ("level", "expected"), [("hard-stop", "critical"), ("warning", "warning"), ("info", "info")]
)
def test_indicator_mapping(level: Any, expected: str) -> None:
    assert indicator(level) == expected
    assert level_of_indicator(expected) == level
    alert = Alert("R", level, "m", "DRG", "c")
    assert alert.indicator == expected
    assert card(alert, uuid=U)["indicator"] == expected


@pytest.mark.parametrize(
    ("level", "expected"), [("hard-stop", "high"), ("warning", "moderate"), ("info", "low")]
)
def test_severity_mapping(level: Any, expected: str) -> None:
    assert severity(level) == expected


def test_unknown_levels_are_refused() -> None:
    with pytest.raises(ValueError):
        Alert("R", "critical", "m", "DRG", "c")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        indicator("severe")
    with pytest.raises(ValueError):
        Alert("R", "info", "m", "DRG", "")


def test_category_codings() -> None:
    v3 = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    assert category_coding("DRG") == {
        "system": v3,
        "code": "DRG",
        "display": "Drug Interaction Alert",
    }
    assert category_coding("ALGY")["system"] == v3
    assert category_coding("DUPTHPY")["system"] == v3
    assert category_coding("KNOWLEDGE-GAP")["system"] != v3
    assert category_coding("CODE-DISPLAY")["system"] != v3


def test_every_card_of_a_busy_order_is_valid_cds_hooks(engine: CdsEngine) -> None:
    context = busy_context()
    cards = [card(a, uuid=str(uuid.uuid4())) for a in engine.evaluate(context)]
    assert cards
    for c in cards:
        assert set(c) <= {"uuid", "summary", "detail", "indicator", "source", "overrideReasons"}
        assert uuid.UUID(c["uuid"])
        assert 0 < len(c["summary"]) <= SUMMARY_MAX < 140
        assert c["indicator"] in {"info", "warning", "critical"}
        assert c["source"]["label"]
        assert "suggestions" not in c
        for reason in c.get("overrideReasons", []):
            assert reason["system"] and reason["code"] and reason["display"]


def test_long_messages_are_truncated_with_an_ellipsis() -> None:
    alert = Alert("R", "warning", "word " * 60, "DRG", "c")
    rendered = card(alert, uuid=U)
    assert len(rendered["summary"]) <= SUMMARY_MAX
    assert rendered["summary"].endswith("…")
    assert rendered["detail"].startswith("word word")
    assert truncate("short") == "short"
    assert len(truncate("x" * 500)) == SUMMARY_MAX


def test_override_reasons_only_on_warnings() -> None:
    assert "overrideReasons" in card(Alert("R", "warning", "m", "DRG", "c"), uuid=U)
    assert "overrideReasons" not in card(Alert("R", "hard-stop", "m", "DRG", "c"), uuid=U)
    assert "overrideReasons" not in card(Alert("R", "info", "m", "KNOWLEDGE-GAP", "c"), uuid=U)


def test_card_uuid_is_the_one_given() -> None:
    """The service layer decides card uuids (from the stored alert, or the hook instance)."""
    alert = Alert("R", "warning", "m", "DRG", "cause-1")
    given = str(uuid.uuid4())
    assert card(alert, uuid=given)["uuid"] == given


def test_card_detail_cites_the_source(engine: CdsEngine) -> None:
    [alert] = engine.evaluate(
        ctx(med(AMOXICILLIN_500_CAP), others=(med(WARFARIN, rid="w1", status="active"),))
    )
    rendered = engine.card(alert, uuid=U, source_label="Test CDS")
    assert rendered["source"]["label"] == "Test CDS"
    assert rendered["source"]["topic"]["code"] == "DDI-AMOX-WARFARIN"
    assert alert.source in rendered["detail"]


# ---------------------------------------------------------------------- discovery
def test_discovery_lists_the_two_order_services() -> None:
    by_id = {s["id"]: s for s in SERVICES}
    assert set(by_id) == {"order-select-checks", "order-sign-checks"}
    assert by_id["order-select-checks"]["hook"] == "order-select"
    assert by_id["order-sign-checks"]["hook"] == "order-sign"
    for s in SERVICES:
        assert s["title"] and s["description"]
        assert s["prefetch"] == {
            "patient": "Patient/{{context.patientId}}",
            "allergies": "AllergyIntolerance?patient={{context.patientId}}",
            "medications": (
                "MedicationRequest?patient={{context.patientId}}&status=draft,active,on-hold"
                "&_include=MedicationRequest:medication"
            ),
            "services": "ServiceRequest?patient={{context.patientId}}&status=draft,active,on-hold",
            "diets": "NutritionOrder?patient={{context.patientId}}&status=draft,active,on-hold",
        }


def test_context_refuses_an_unknown_hook() -> None:
    with pytest.raises(ValueError):
        OrderContext(order=med(AMOXICILLIN), patient_id=PATIENT, hook="patient-view")  # type: ignore[arg-type]
