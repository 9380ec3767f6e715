"""The CDS knowledge base: shipped files load, bad files stop start-up with a clear message,
and the clinical facts the CDS relies on are in the data (DESIGN §6, issue 3)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.cds.knowledge_base import (
    DEFAULT_DIRECTORY,
    RXNORM_SYSTEM,
    SNOMED_SYSTEM,
    Drug,
    KnowledgeBase,
    KnowledgeError,
    load_knowledge,
)

AMOXICILLIN, AMPICILLIN, WARFARIN, ASPIRIN = "723", "733", "11289", "1191"
AMOXICILLIN_500_CAPSULE = "308191"
OXYCODONE, OXYCODONE_ER_10 = "7804", "1049502"
CEPHALEXIN, CEFTRIAXONE = "2231", "2193"
SULFAMETHOXAZOLE, FUROSEMIDE = "10180", "4603"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge()


def drug(kb: KnowledgeBase, code: str) -> Drug:
    found = kb.drug(None, code)
    assert found is not None, f"RxNorm {code} should be in the knowledge base"
    return found


# ---------------------------------------------------------------------- shipped files
def test_shipped_knowledge_loads_with_every_source_cited(kb: KnowledgeBase) -> None:
    coverage = kb.coverage()
    assert coverage["onc_high_priority_rules"] == 15
    assert coverage["classes"] >= 20 and coverage["drugs"] >= 150
    assert all(rule.source.strip() for rule in kb.rules)
    assert all(c.source.strip() for c in kb.classes.values())


def test_ingredients_list_themselves_and_products_map_to_ingredients(kb: KnowledgeBase) -> None:
    for code, entry in kb.drugs.items():
        if entry.tty == "IN":
            assert entry.ingredients == {code}
        else:
            assert all(kb.drugs[i].tty == "IN" for i in entry.ingredients)


def test_rxnorm_system_spellings_and_other_systems(kb: KnowledgeBase) -> None:
    for system in (RXNORM_SYSTEM, RXNORM_SYSTEM + "/", None, "", "rxnorm", "RxNorm"):
        assert kb.drug(system, AMOXICILLIN) == drug(kb, AMOXICILLIN)
    assert kb.drug(SNOMED_SYSTEM, AMOXICILLIN) is None
    assert kb.drug(RXNORM_SYSTEM, "999999999") is None


# ---------------------------------------------------------------------- the seed's codes
def test_1049502_is_oxycodone_extended_release_not_amoxicillin(kb: KnowledgeBase) -> None:
    oxy = drug(kb, OXYCODONE_ER_10)
    assert oxy.ingredients == {OXYCODONE}
    assert oxy.name == "12 HR Oxycodone Hydrochloride 10 MG Extended Release Oral Tablet"
    assert "penicillins" not in oxy.classes


def test_amoxicillin_500_capsule_maps_to_amoxicillin_and_penicillins(kb: KnowledgeBase) -> None:
    capsule = drug(kb, AMOXICILLIN_500_CAPSULE)
    assert capsule.ingredients == {AMOXICILLIN}
    assert "penicillins" in capsule.classes
    # Confirmed since issue 12 by the VSAC antibiotic value set expansion (products.json).
    assert capsule.verified is True
    assert capsule.strengths == {AMOXICILLIN: "500 MG"}
    assert capsule.dose_form == "Oral Capsule"


@pytest.mark.parametrize(
    ("display", "expected"),
    [
        ("Amoxicillin 500mg", "amoxicillin"),
        ("AMOXICILLIN500MG caps", "amoxicillin"),
        ("Coumadin 5 mg", "warfarin"),
        ("Oxycodone ER 10 mg", None),
        ("OxyContin 10 mg 12-hourly", None),
        ("12 HR Oxycodone Hydrochloride 10 MG Extended Release Oral Tablet", None),
        ("Take one tablet twice daily", None),
        ("", None),
    ],
)
def test_display_naming_another_drug_on_1049502(
    kb: KnowledgeBase, display: str, expected: str | None
) -> None:
    assert kb.display_names_other_drug(drug(kb, OXYCODONE_ER_10), display) == expected


def test_display_check_matches_words_not_fragments(kb: KnowledgeBase) -> None:
    cipro = drug(kb, "2551")
    # "Cipro" is a brand of ciprofloxacin; the word must not be found inside the generic name.
    assert kb.display_names_other_drug(cipro, "Ciprofloxacin 500 MG Oral Tablet") is None
    assert kb.display_names_other_drug(cipro, "Cipro 500") is None
    augmentin = drug(kb, "617993")
    assert kb.display_names_other_drug(augmentin, "Amoxicillin/clavulanate susp") is None
    assert (
        kb.display_names_other_drug(drug(kb, AMOXICILLIN_500_CAPSULE), "Augmentin") == "Augmentin"
    )


# ---------------------------------------------------------------------- allergy
def test_penicillin_class_allergy_covers_amoxicillin_and_ampicillin(kb: KnowledgeBase) -> None:
    for code in ("764146007", "373270004"):
        allergen = kb.allergen(SNOMED_SYSTEM, code)
        assert allergen is not None
        assert allergen.classes == {"penicillins"} and not allergen.ingredients
    members = kb.classes["penicillins"].members
    assert {AMOXICILLIN, AMPICILLIN} <= members
    assert "penicillins" in drug(kb, AMPICILLIN).classes
    assert kb.classes_of(AMOXICILLIN) >= {"penicillins"}


def test_ingredient_allergy_is_ingredient_level(kb: KnowledgeBase) -> None:
    by_rxnorm = kb.allergen(RXNORM_SYSTEM, AMOXICILLIN_500_CAPSULE)
    assert by_rxnorm is not None
    assert by_rxnorm.ingredients == {AMOXICILLIN} and not by_rxnorm.classes
    by_snomed = kb.allergen("http://snomed.info/sct", "372687004")
    assert by_snomed is not None and by_snomed.ingredients == {AMOXICILLIN}
    assert kb.allergen(SNOMED_SYSTEM, "0000") is None
    assert kb.allergen("http://example.org/local", "764146007") is None


def test_rxnorm_penicillin_g_allergy_is_read_as_a_penicillin_class_allergy(
    kb: KnowledgeBase,
) -> None:
    # The seed (and the FHIR AllergyIntolerance example) record "penicillin allergy" as 7980.
    allergen = kb.allergen(RXNORM_SYSTEM, "7980")
    assert allergen is not None
    assert allergen.ingredients == {"7980"} and allergen.classes == {"penicillins"}
    assert kb.allergen(None, "7980") == allergen
    amoxicillin_allergy = kb.allergen(None, AMOXICILLIN)
    assert amoxicillin_allergy is not None and not amoxicillin_allergy.classes


def test_penicillin_allergy_cross_reacts_with_cephalosporins_with_caveat(kb: KnowledgeBase) -> None:
    for code in (CEPHALEXIN, CEFTRIAXONE):
        crosses = kb.cross_reactions({"penicillins"}, drug(kb, code).classes)
        assert [(c.from_class, c.to_class) for c in crosses] == [("penicillins", "cephalosporins")]
        assert "side-chain" in crosses[0].note and crosses[0].source
    assert kb.cross_reactions({"penicillins"}, drug(kb, WARFARIN).classes) == []


def test_sulfonamide_antibiotic_is_not_a_non_antibiotic_sulfonamide(kb: KnowledgeBase) -> None:
    assert "sulfonamide-antibiotics" in drug(kb, SULFAMETHOXAZOLE).classes
    assert "sulfonamide-antibiotics" not in drug(kb, FUROSEMIDE).classes
    assert "sulfonamide-nonantibiotic" in drug(kb, FUROSEMIDE).classes
    sulfa = kb.allergen(SNOMED_SYSTEM, "387406002")
    assert sulfa is not None and sulfa.classes == {"sulfonamide-antibiotics"}
    assert kb.cross_reactions(sulfa.classes, drug(kb, FUROSEMIDE).classes) == []
    assert "sulfonamide-antibiotics" in drug(kb, "10831").classes  # co-trimoxazole product


# ---------------------------------------------------------------------- interactions
def test_amoxicillin_warfarin_seed_rule_both_directions(kb: KnowledgeBase) -> None:
    capsule, warfarin = drug(kb, AMOXICILLIN_500_CAPSULE), drug(kb, WARFARIN)
    for first, second in ((capsule, warfarin), (warfarin, capsule)):
        found = kb.interactions(first, second)
        # Only the seed rule: the generic penicillin + warfarin rule is superseded by it.
        assert [r.id for r in found] == ["DDI-AMOX-WARFARIN"]
        rule = found[0]
        assert rule.severity == "moderate" and not rule.onc_high_priority
        assert rule.message == "Potential interaction: Amoxicillin + Warfarin. Monitor INR."


def test_no_amoxicillin_rule_fires_on_the_oxycodone_code(kb: KnowledgeBase) -> None:
    assert kb.interactions(drug(kb, OXYCODONE_ER_10), drug(kb, WARFARIN)) == []


def test_other_penicillins_and_warfarin(kb: KnowledgeBase) -> None:
    found = kb.interactions(drug(kb, AMPICILLIN), drug(kb, WARFARIN))
    assert [r.id for r in found] == ["DDI-PENICILLIN-WARFARIN"]


def test_specific_rule_supersedes_the_class_rule(kb: KnowledgeBase) -> None:
    assert [r.id for r in kb.interactions(drug(kb, WARFARIN), drug(kb, ASPIRIN))] == [
        "DDI-WARFARIN-ASPIRIN"
    ]
    assert [r.id for r in kb.interactions(drug(kb, "5640"), drug(kb, WARFARIN))] == [
        "DDI-WARFARIN-NSAID"
    ]


def test_a_drug_does_not_interact_with_its_own_ingredient(kb: KnowledgeBase) -> None:
    pimozide = drug(kb, "8331")  # high-risk QT agent and a QT-prolonging agent itself
    assert kb.interactions(pimozide, pimozide) == []


def test_interactions_have_no_duplicates_and_are_symmetric(kb: KnowledgeBase) -> None:
    codes = sorted(kb.drugs)
    for first in codes:
        for second in codes:
            there = [r.id for r in kb.interactions(kb.drugs[first], kb.drugs[second])]
            back = [r.id for r in kb.interactions(kb.drugs[second], kb.drugs[first])]
            assert len(there) == len(set(there))
            assert there == back


# ---------------------------------------------------------------------- bad files
Edit = Callable[[dict[str, Any]], None]


def broken_copy(tmp_path: Path, file: str, edit: Edit) -> Path:
    directory = tmp_path / "knowledge"
    shutil.copytree(DEFAULT_DIRECTORY, directory)
    path = directory / f"{file}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    return directory


def rule_index(rule_id: str) -> int:
    data = json.loads((DEFAULT_DIRECTORY / "interactions.json").read_text(encoding="utf-8"))
    return next(i for i, rule in enumerate(data["rules"]) if rule["id"] == rule_id)


def test_bad_severity_names_file_path_and_allowed_values(tmp_path: Path) -> None:
    index = rule_index("DDI-AMOX-WARFARIN")

    def edit(data: dict[str, Any]) -> None:
        data["rules"][index]["severity"] = "severe"

    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(broken_copy(tmp_path, "interactions", edit))
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "knowledge" / "interactions.json") + ": ")
    assert f"$.rules[{index}].severity: 'severe' is not one of" in message
    assert "'contraindicated', 'major', 'moderate'" in message


def test_unknown_class_reference(tmp_path: Path) -> None:
    index = rule_index("DDI-WARFARIN-NSAID")

    def edit(data: dict[str, Any]) -> None:
        data["rules"][index]["b"]["classes"] = ["nsaid"]

    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(broken_copy(tmp_path, "interactions", edit))
    assert caught.value.file.endswith("interactions.json")
    assert caught.value.path == f"$.rules[{index}].b.classes[0]"
    assert "unknown class 'nsaid'" in str(caught.value)


def test_duplicate_rule_id(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["rules"].append(dict(data["rules"][0]))

    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(broken_copy(tmp_path, "interactions", edit))
    assert caught.value.path.endswith(".id")
    assert "duplicate rule id 'DDI-ONC-01-AMPHETAMINE-MAOI'" in str(caught.value)


def test_class_member_must_be_a_known_ingredient(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["classes"][0]["members"].append("99999999")

    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(broken_copy(tmp_path, "classes", edit))
    assert caught.value.file.endswith("classes.json")
    assert caught.value.path.startswith("$.classes[0].members[")
    assert "unknown ingredient '99999999'" in str(caught.value)


def test_product_must_map_to_known_ingredients(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["products"][OXYCODONE_ER_10]["ingredients"] = {"424242": "10 MG"}

    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(broken_copy(tmp_path, "products", edit))
    assert caught.value.path == "$.products['1049502'].ingredients['424242']"


def test_malformed_json(tmp_path: Path) -> None:
    directory = tmp_path / "knowledge"
    shutil.copytree(DEFAULT_DIRECTORY, directory)
    (directory / "allergy_codes.json").write_text(
        '{"version": "1",\n  "systems": {', encoding="utf-8"
    )
    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(directory)
    assert caught.value.file.endswith("allergy_codes.json")
    assert caught.value.path == "$"
    assert "malformed JSON at line 2" in str(caught.value)


def test_duplicate_json_key_is_not_silently_dropped(tmp_path: Path) -> None:
    directory = tmp_path / "knowledge"
    shutil.copytree(DEFAULT_DIRECTORY, directory)
    path = directory / "drugs.json"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('"drugs": {', '"drugs": {"723": {}, ', 1), encoding="utf-8")
    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(directory)
    assert caught.value.path == "$.drugs"
    assert "duplicate key '723'" in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    directory = tmp_path / "knowledge"
    shutil.copytree(DEFAULT_DIRECTORY, directory)
    (directory / "classes.json").unlink()
    with pytest.raises(KnowledgeError, match=r"classes\.json: \$: file not found"):
        load_knowledge(directory)


def test_onc_rule_must_be_contraindicated(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["rules"][0]["severity"] = "major"

    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(broken_copy(tmp_path, "interactions", edit))
    assert caught.value.path == "$.rules[0].severity"


def test_rxnorm_allergy_entry_must_keep_the_drugs_ingredients(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["systems"][RXNORM_SYSTEM]["7980"]["ingredients"] = [AMOXICILLIN]

    with pytest.raises(KnowledgeError) as caught:
        load_knowledge(broken_copy(tmp_path, "allergy_codes", edit))
    assert caught.value.path == f"$.systems[{RXNORM_SYSTEM!r}]['7980'].ingredients"
    assert "must equal the ingredients of RxNorm 7980" in str(caught.value)
