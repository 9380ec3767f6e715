"""Drug identity, dose arithmetic and the new rules, table-driven (no I/O; issue 12)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.cds.context import OrderContext
from app.cds.dosage import dose_mg, interval_days
from app.cds.knowledge_base import KnowledgeBase, load_knowledge
from app.cds.resolve import INGREDIENTS, NAME, TERMINOLOGY, drug_from_name, resolve
from app.cds.rules import (
    allergy_unchecked,
    dose_check,
    duplicate_order,
    duplicate_therapy,
    patient_age,
    unknown_other,
)
from app.cds.rules.allergy_facts import allergens, severe

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge()


def med(
    code: str | None,
    *,
    rid: str | None = None,
    status: str = "draft",
    display: str | None = None,
    system: str = RX,
    dosage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    concept: dict[str, Any] = {}
    if code is not None:
        concept["coding"] = [
            {"system": system, "code": code, **({"display": display} if display else {})}
        ]
    body: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": concept,
    }
    if rid:
        body["id"] = rid
    if dosage:
        body["dosageInstruction"] = [dosage]
    return body


def ctx(order: dict[str, Any], **extra: Any) -> OrderContext:
    return OrderContext(order=order, patient_id="p1", now=NOW, **extra)


# ---------------------------------------------------------------- resolution
@pytest.mark.parametrize(
    ("text", "ingredients"),
    [
        ("ibuprofen 200 MG Oral Tablet", {"5640"}),
        ("Ibuprofen 200 MG Oral Tablet [Advil]", {"5640"}),
        ("warfarin sodium 5 MG Oral Tablet", {"11289"}),
        ("amoxicillin 875 MG / clavulanate potassium 125 MG Oral Tablet", {"723", "48203"}),
        ("12 HR oxycodone hydrochloride 10 MG Extended Release Oral Tablet", {"7804"}),
        ("ibuprofen 200 MG", None),  # no dose form: not a normalized name
        ("ibuprofen tablets", None),
        ("mysterium 5 MG Oral Tablet", None),
        ("amoxicillin 500 MG / mysterium 5 MG Oral Tablet", None),  # every component known
    ],
)
def test_normalized_names(kb: KnowledgeBase, text: str, ingredients: set[str] | None) -> None:
    drug = drug_from_name(text, kb)
    assert (drug.ingredients if drug else None) == (frozenset(ingredients) if ingredients else None)


def test_resolution_order_code_terminology_ingredients_name(kb: KnowledgeBase) -> None:
    by_code = resolve(med("310965"), ctx(med("310965")), kb)
    assert (by_code.how, by_code.ingredients) == ("code", {"5640"})

    looked_up = kb.product("7777777", "ibuprofen", ["5640"])
    order = med("7777777")
    found = resolve(order, ctx(order, resolved_codes={"7777777": looked_up}), kb)
    assert (found.how, found.ingredients) == (TERMINOLOGY, {"5640"})

    contained = {
        **med(None),
        "medicationReference": {"reference": "#m"},
        "contained": [
            {
                "resourceType": "Medication",
                "id": "m",
                "ingredient": [
                    {"itemCodeableConcept": {"coding": [{"system": RX, "code": "161"}]}}
                ],
            }
        ],
    }
    del contained["medicationCodeableConcept"]
    assert resolve(contained, ctx(contained), kb).how == INGREDIENTS

    named = med("L1", system="urn:local", display="naproxen 500 MG Oral Tablet")
    assert resolve(named, ctx(named), kb).how == NAME
    assert "matched by name" in resolve(named, ctx(named), kb).name


def test_unresolved_says_why(kb: KnowledgeBase) -> None:
    order = med("7777778")
    timed_out = ctx(
        order, unresolved_codes={"7777778": "terminology service: no answer within 0.5 s"}
    )
    resolution = resolve(order, timed_out, kb)
    assert not resolution.ok
    assert resolution.problem == "terminology service: no answer within 0.5 s"
    assert resolve(order, ctx(order), kb).problem == "not in the knowledge base"


# ---------------------------------------------------------------- timing and dose
@pytest.mark.parametrize(
    ("timing", "days"),
    [
        ({"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}}, 7.0),
        ({"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}}, 0.25),
        ({"repeat": {"frequency": 1, "period": 8, "periodUnit": "h"}}, 1 / 3),
        ({"code": {"coding": [{"code": "QD"}]}}, 1.0),
        ({"code": {"coding": [{"code": "WK"}]}}, 7.0),
        ({"code": {"text": "OD"}}, 1.0),
        ({"code": {"text": "WEEKLY"}}, 7.0),
        ({"code": {"text": "QW"}}, 7.0),
        ({"code": {"text": "Q2D"}}, 2.0),
        ({"code": {"text": "Q2W"}}, 14.0),
        ({"code": {"text": "Q6H"}}, 0.25),
        ({"code": {"text": "PRN"}}, None),
        ({"repeat": {"count": 1}, "code": {"text": "STAT"}}, None),
        (None, None),
    ],
)
def test_interval_days(timing: Any, days: float | None) -> None:
    assert interval_days(timing) == (pytest.approx(days) if days is not None else None)


@pytest.mark.parametrize(
    ("code", "quantity", "mg"),
    [
        ("313782", {"value": 2, "unit": "tablet"}, 650.0),
        ("313782", {"value": 1, "code": "{tbl}"}, 325.0),
        ("313782", {"value": 1, "code": "g"}, 1000.0),
        ("313782", {"value": 500, "unit": "mg"}, 500.0),
        ("313782", {"value": 5, "unit": "drops"}, None),
        ("993781", {"value": 1, "unit": "tablet"}, 300.0),  # the acetaminophen in it
        ("993781", {"value": 300, "unit": "mg"}, None),  # mg of a combination: which one?
        ("1092189", {"value": 2, "unit": "tablet"}, 1000.0),  # with diphenhydramine 25 MG
    ],
)
def test_dose_in_mg_of_acetaminophen(
    kb: KnowledgeBase, code: str, quantity: dict[str, Any], mg: float | None
) -> None:
    order = med(code, dosage={"doseAndRate": [{"doseQuantity": quantity}]})
    drug = kb.drug(None, code)
    assert drug is not None
    assert dose_mg(order, drug, "161")[0] == mg


def test_methotrexate_by_route_and_frequency(kb: KnowledgeBase) -> None:
    oral = {"coding": [{"system": "http://snomed.info/sct", "code": "26643006"}]}
    iv = {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]}

    def alerts(timing: dict[str, Any], route: dict[str, Any]) -> set[tuple[str, str]]:
        order = med("105585", dosage={"timing": timing, "route": route})
        return {(a.rule_id, a.level) for a in dose_check.check(ctx(order), kb)}

    daily = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}
    weekly = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}}
    assert alerts(daily, oral) == {("DOSE-METHOTREXATE-WEEKLY", "hard-stop")}
    assert alerts(weekly, oral) == set()
    assert alerts({"code": {"text": "WEEKLY"}}, oral) == set()
    assert alerts(daily, iv) == set(), "the weekly rule is for oral methotrexate"
    assert alerts({"code": {"text": "PRN"}}, oral) == {("DOSE-UNCHECKED", "info")}


def _every(period: float, unit: str = "d", frequency: int = 1) -> dict[str, Any]:
    return {"repeat": {"frequency": frequency, "period": period, "periodUnit": unit}}


@pytest.mark.parametrize(
    ("timing", "said"),
    [
        (_every(1), "Methotrexate every 1 day(s): "),
        (_every(1, frequency=2), "Methotrexate 2 times a day: "),
        (_every(6), "Methotrexate every 6 day(s): "),  # still short of a week
    ],
)
def test_methotrexate_more_often_than_weekly_says_how_often(
    kb: KnowledgeBase, timing: dict[str, Any], said: str
) -> None:
    order = med("105585", dosage={"timing": timing})
    [alert] = dose_check.check(ctx(order), kb)
    assert alert.message.startswith(said), alert.message


def test_methotrexate_as_needed_says_why_its_dose_was_not_checked(kb: KnowledgeBase) -> None:
    order = med("105585", dosage={"timing": {"code": {"text": "PRN"}}})
    [alert] = dose_check.check(ctx(order), kb)
    assert alert.message.endswith(
        ": the frequency is not stated (or is as needed), so the dose was not checked."
    )


def _acetaminophen(
    kb: KnowledgeBase, mg: float, timing: dict[str, Any] | None
) -> list[tuple[str, str]]:
    dosage: dict[str, Any] = {"doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg"}}]}
    if timing is not None:
        dosage["timing"] = timing
    order = med("313782", dosage=dosage)
    return [(a.rule_id, a.message) for a in dose_check.check(ctx(order), kb)]


@pytest.mark.parametrize(
    ("mg", "timing", "warned"),
    [
        (1000, _every(1, frequency=4), False),  # exactly the 4 g maximum
        (4001, _every(1), True),  # 1 mg above it
        (5000, _every(2), True),  # every other day: still 5 g on the day it is taken
        (1000, None, False),  # as needed: no daily total to compare
    ],
    ids=["4 g a day", "4001 mg a day", "5 g every other day", "1 g as needed"],
)
def test_acetaminophen_above_four_grams_on_any_day_warns(
    kb: KnowledgeBase, mg: float, timing: dict[str, Any] | None, warned: bool
) -> None:
    assert bool(_acetaminophen(kb, mg, timing)) is warned


def test_the_acetaminophen_warning_says_the_daily_total_and_how_it_was_ordered(
    kb: KnowledgeBase,
) -> None:
    [(_rule, message)] = _acetaminophen(kb, 1500, _every(1, frequency=4))
    assert message == (
        "Acetaminophen 6000 mg a day (1500 mg 4 times a day) is above the maximum of 4000 mg a day."
    )


# ---------------------------------------------------------------- allergies
def test_severity_and_text_only_allergies(kb: KnowledgeBase) -> None:
    reaction = {"manifestation": [{"text": "Anaphylactic shock"}]}
    assert severe({"reaction": [reaction]}) == "anaphylaxis"
    assert severe({"reaction": [{"severity": "moderate"}]}) is None
    text_only = {"resourceType": "AllergyIntolerance", "code": {"text": "sulfa drugs"}}
    [found] = allergens(text_only, kb)
    assert found.by_name and found.allergen.classes == {"sulfonamide-antibiotics"}
    display_only = {
        "code": {"coding": [{"system": "urn:x", "code": "1", "display": "Allergy to codeine"}]}
    }
    [codeine] = allergens(display_only, kb)
    assert codeine.by_name and codeine.allergen.ingredients == {"2670"}


SCT_SYSTEM = "http://snomed.info/sct"


@pytest.mark.parametrize(
    ("reactions", "why"),
    [
        (
            [{"manifestation": [{"coding": [{"system": SCT_SYSTEM, "code": "39579001"}]}]}],
            "anaphylaxis",
        ),
        ([{"manifestation": [{"coding": [{"system": SCT_SYSTEM, "code": "271807003"}]}]}], None),
        (["not a reaction", {"severity": "severe"}], "a severe reaction"),
        ([{"severity": "mild"}], None),
    ],
    ids=[
        "anaphylaxis coded in SNOMED, no words",
        "a coded rash",
        "a severe reaction after a malformed entry",
        "a mild reaction",
    ],
)
def test_which_reaction_history_makes_an_allergy_a_hard_stop(
    reactions: list[Any], why: str | None
) -> None:
    assert severe({"reaction": reactions}) == why


def test_an_allergy_code_the_terminology_service_resolved_is_read_as_that_drug(
    kb: KnowledgeBase,
) -> None:
    """RxNorm codes unknown to the knowledge base, answered by the terminology service, count
    for allergies as they do for orders; the same code in another system does not."""
    looked_up = kb.product("7777777", "ibuprofen", ["5640"])
    rx = {"code": {"coding": [{"system": RX, "code": "7777777"}]}}
    [found] = allergens(rx, kb, {"7777777": looked_up})
    assert (found.allergen.ingredients, found.by_name) == ({"5640"}, False)
    local = {"code": {"coding": [{"system": "urn:local", "code": "7777777"}]}}
    assert allergens(local, kb, {"7777777": looked_up}) == []


def test_a_record_is_read_by_name_through_every_text_until_one_names_a_drug(
    kb: KnowledgeBase,
) -> None:
    """A chart note that names nothing does not stop the coding displays or a reaction's
    substance from being read; a record that names nothing anywhere resolves to nothing."""
    display = {
        "code": {
            "text": "old chart note",
            "coding": [{"system": "urn:x", "code": "1", "display": "Allergy to codeine"}],
        }
    }
    assert [r.allergen.ingredients for r in allergens(display, kb)] == [{"2670"}]
    substance = {"reaction": [{"substance": {"text": "penicillin"}}]}  # no `code` at all
    [found] = allergens(substance, kb)
    assert found.by_name and found.allergen.classes == {"penicillins"}
    assert allergens({"code": {"text": "the blue pills"}}, kb) == []


def test_unreadable_allergy_is_reported_once_per_record(kb: KnowledgeBase) -> None:
    allergy = {
        "resourceType": "AllergyIntolerance",
        "id": "a1",
        "patient": {"reference": "Patient/p1"},
        "code": {"text": "the blue pills"},
    }
    food = {**allergy, "id": "a2", "category": ["food"], "code": {"text": "Shellfish"}}
    [alert] = allergy_unchecked.check(ctx(med("310965"), allergies=(allergy, food)), kb)
    assert (alert.rule_id, alert.level, alert.cause) == (
        "ALLERGY-UNCHECKED",
        "warning",
        "allergy-unchecked:AllergyIntolerance/a1",
    )


# ---------------------------------------------------------------- orders on file
def test_unknown_order_on_file_and_duplicate_therapy(kb: KnowledgeBase) -> None:
    others = (med("99999999", rid="o1", status="active"), med("198014", rid="o2", status="active"))
    context = ctx(med("310965"), other_orders=others)
    [unknown] = unknown_other.check(context, kb)
    assert unknown.cause == "unknown-other:MedicationRequest/o1"
    [dup] = duplicate_therapy.check(context, kb)
    assert dup.cause == "dup-class:two-nsaids" and "naproxen" in dup.message


@pytest.mark.parametrize(
    ("ordered", "mine"),
    [("310965", "ibuprofen 200 MG Oral Tablet"), ("88888888", "the ordered medication")],
    ids=["a known drug is named", "an unknown drug is not"],
)
def test_every_unidentifiable_order_on_file_is_reported_after_a_known_one(
    kb: KnowledgeBase, ordered: str, mine: str
) -> None:
    """A known drug listed first never hides the unknown ones after it; a saved one is linked,
    an unsaved one is named by its code."""
    unsaved = med("99999998")
    others = (med("198014", rid="o2", status="active"), med("99999999", rid="o1"), unsaved)
    saved, new = unknown_other.check(ctx(med(ordered), other_orders=others), kb)
    assert saved.message == (
        f"{RX}|99999999 (RxNorm 99999999), on this patient's orders (MedicationRequest/o1, "
        f"draft), could not be identified (not in the knowledge base): {mine} was not checked "
        "against it."
    )
    assert saved.implicated == ("MedicationRequest/o1",)
    assert new.cause == f"unknown-other:MedicationRequest?code={RX}|99999998"
    assert new.implicated == ()


def test_every_other_nsaid_is_named_in_one_duplicate_therapy_warning(kb: KnowledgeBase) -> None:
    others = (med("198014", rid="o2", status="active"), med("7258", rid="o3"), med("3355"))
    [alert] = duplicate_therapy.check(ctx(med("310965"), other_orders=others), kb)
    assert alert.message == (
        "Duplicate therapy (two NSAIDs): ibuprofen with naproxen (MedicationRequest/o2, active); "
        f"naproxen (MedicationRequest/o3, draft); diclofenac (MedicationRequest?code={RX}|3355, "
        "draft)."
    )
    assert alert.implicated == ("MedicationRequest/o2", "MedicationRequest/o3")


@pytest.mark.parametrize(
    ("ordered", "on_file"),
    [("310965", "308191"), ("308191", "310965")],
    ids=["NSAID", "penicillin"],
)
def test_an_nsaid_and_a_penicillin_are_not_duplicate_therapy_in_either_order(
    kb: KnowledgeBase, ordered: str, on_file: str
) -> None:
    """Both drugs must be in the group: one NSAID is not a therapy duplicated."""
    others = (med(on_file, rid="o1", status="active"),)
    assert duplicate_therapy.check(ctx(med(ordered), other_orders=others), kb) == []


def test_acei_with_arb_is_duplicate_therapy_but_the_same_ingredient_is_not(
    kb: KnowledgeBase,
) -> None:
    on_file = (med("979492", rid="l1", status="active"),)  # losartan 50 MG
    assert duplicate_therapy.check(ctx(med("314076"), other_orders=on_file), kb)[0].cause == (
        "dup-class:acei-arb"
    )
    same = (med("979485", rid="l2", status="active"),)  # losartan 25 MG
    assert duplicate_therapy.check(ctx(med("979492"), other_orders=same), kb) == []


def lab(rid: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        **extra,
    }


def stamp(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("other", "duplicate"),
    [
        (lab("a", "active", authoredOn=stamp(2)), True),
        (lab("b", "active", authoredOn=stamp(30)), False),
        (lab("c", "completed", meta={"lastUpdated": stamp(3)}), True),
        (lab("d", "completed", meta={"lastUpdated": stamp(48)}), False),
        (lab("e", "revoked", authoredOn=stamp(1)), False),
        (lab("f", "active"), True),  # no time at all: an open order counts
        # ordered three days ago, completed this morning: the result is fresh, a duplicate
        (lab("g", "completed", authoredOn=stamp(72), meta={"lastUpdated": stamp(3)}), True),
        # no order time: the last update dates it, and two days is outside the window
        (lab("h", "active", meta={"lastUpdated": stamp(48)}), False),
        # an order time of a year only cannot be placed in a 24 h window: the last update can
        (lab("i", "active", authoredOn=str(NOW.year), meta={"lastUpdated": stamp(48)}), False),
        # a date without a time zone cannot be compared with now: an open order counts
        (lab("j", "active", authoredOn=(NOW - timedelta(days=30)).date().isoformat()), True),
    ],
    ids=[
        "active 2 h ago",
        "active 30 h ago",
        "completed 3 h ago",
        "completed 48 h ago",
        "revoked",
        "active, no time",
        "completed this morning, ordered 3 days ago",
        "active, no order time, updated 2 days ago",
        "active, ordered in a year only, updated 2 days ago",
        "active, ordered on a date without a time",
    ],
)
def test_cbc_look_back_window(kb: KnowledgeBase, other: dict[str, Any], duplicate: bool) -> None:
    found = duplicate_order.check(
        OrderContext(order=lab("new", "draft"), patient_id="p1", other_orders=(other,), now=NOW),
        kb,
    )
    assert bool(found) is duplicate


XRAY = {"system": "http://snomed.info/sct", "code": "399208008"}  # chest X-ray


@pytest.mark.parametrize(("status", "duplicate"), [("active", True), ("completed", False)])
def test_a_procedure_without_a_look_back_window_is_a_duplicate_while_open_however_old(
    kb: KnowledgeBase, status: str, duplicate: bool
) -> None:
    """Windows are for LOINC tests; an open chest X-ray ordered a month ago still duplicates
    a new one, a completed one never does."""
    old = lab("x", status, code={"coding": [XRAY]}, authoredOn=stamp(24 * 30))
    new = lab("new", "draft", code={"coding": [XRAY]})
    context = OrderContext(order=new, patient_id="p1", other_orders=(old,), now=NOW)
    assert bool(duplicate_order.check(context, kb)) is duplicate


@pytest.mark.parametrize(
    ("birth", "now", "age"),
    [
        ("2014-09-20", datetime(2026, 9, 19, tzinfo=UTC), 11),  # the day before the birthday
        ("2014-09-20", datetime(2026, 9, 20, tzinfo=UTC), 12),
        ("2014-09", datetime(2026, 6, 15, tzinfo=UTC), 11),  # a month only: its first day
        ("2014-01", datetime(2026, 1, 1, tzinfo=UTC), 12),
        ("2014", datetime(2026, 1, 1, tzinfo=UTC), 12),  # a year only: 1 January
        ("2014-13-01", NOW, None),  # not a date: no age, no age rule
        (None, NOW, None),
    ],
)
def test_completed_years_from_a_fhir_birth_date(
    birth: str | None, now: datetime, age: int | None
) -> None:
    assert patient_age.age_years({"birthDate": birth} if birth else {}, now) == age


def _compound(*ingredients: str) -> dict[str, Any]:
    """A contained Medication listing its ingredients (a compounded product)."""
    order = {
        **med(None),
        "medicationReference": {"reference": "#m"},
        "contained": [
            {
                "resourceType": "Medication",
                "id": "m",
                "ingredient": [
                    {"itemCodeableConcept": {"coding": [{"system": RX, "code": code}]}}
                    for code in ingredients
                ],
            }
        ],
    }
    del order["medicationCodeableConcept"]
    return order


@pytest.mark.parametrize(
    ("age", "ordered", "expected"),
    [
        # codeine with promethazine (a Beers drug): the child rule for the child, Beers at 70
        (7, ("2670", "8745"), ["Codeine for a patient aged 7"]),
        (70, ("2670", "8745"), ["Promethazine for a patient aged 70"]),
        (7, ("2670", "10689"), ["Codeine, tramadol for a patient aged 7"]),  # both named
        (70, ("723",), []),  # amoxicillin: no age rule at any age
        (7, ("5640",), []),  # ibuprofen
    ],
)
def test_each_age_rule_applies_to_its_own_ingredients(
    kb: KnowledgeBase, age: int, ordered: tuple[str, ...], expected: list[str]
) -> None:
    patient = {"resourceType": "Patient", "birthDate": f"{NOW.year - age}-01-01"}
    found = patient_age.check(ctx(_compound(*ordered), patient=patient), kb)
    assert [a.message.split(":")[0] for a in found] == expected


def test_an_unidentified_drug_gets_no_age_alert(kb: KnowledgeBase) -> None:
    """DRUG-UNKNOWN says it was not checked; the age rules cannot say anything."""
    patient = {"resourceType": "Patient", "birthDate": f"{NOW.year - 7}-01-01"}
    assert patient_age.check(ctx(med("99999999"), patient=patient), kb) == []


@pytest.mark.parametrize(
    ("age", "rule"), [(7, "AGE-CODEINE-TRAMADOL-UNDER-12"), (12, None), (40, None)]
)
def test_codeine_age_limit(kb: KnowledgeBase, age: int, rule: str | None) -> None:
    patient = {"resourceType": "Patient", "birthDate": f"{NOW.year - age}-01-01"}
    found = patient_age.check(ctx(med("993781"), patient=patient), kb)
    assert [a.rule_id for a in found] == ([rule] if rule else [])
