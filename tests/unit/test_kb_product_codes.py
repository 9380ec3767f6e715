"""Product codes added to the shipped table in issue 12 (VSAC eCQM 2025 expansions, an OMOP
RxNorm export, an HL7 IG antiarrhythmics value set, NLM RxImage, Synthea HIV modules) resolve to their ingredients and fire the class rules those ingredients belong
to, against the REAL knowledge base: a product row that maps a drug to the wrong ingredient would
make every check silently wrong for that drug, so each code here is pinned to what it is.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.cds.knowledge_base import KnowledgeBase, load_knowledge
from app.cds.rules import drug_allergy, drug_interaction, duplicate_therapy
from tests.unit.test_cds_rules import SCT, SCT_PENICILLIN, allergy, ctx, med, summary

WARFARIN_5_TAB, LISINOPRIL_10_TAB = "855332", "314076"
SIMVASTATIN_40_TAB, NITROGLYCERIN_SPRAY, RIFAMPIN_300_CAP = "198211", "705129", "198202"
AMIODARONE_200_TAB = "833528"
OXYCODONE_5_TAB, PHENELZINE_15_TAB = "1049621", "312347"
TADALAFIL_10_TAB, AUVELITY, DRONEDARONE_400_TAB = "484814", "2611260", "854856"
PIPERACILLIN_TAZOBACTAM_4G = "1659149"
PDE5_NITRATE = ("DDI-PDE5-NITRATE", "hard-stop")
MAOI = ("DDI-ONC-06-NARCOTIC-MAOI", "hard-stop")
PENICILLIN_WARFARIN = ("DDI-PENICILLIN-WARFARIN", "warning")

# (product RxCUI, RxNorm name, {ingredient RxCUI: strength}, a class it must be in)
PRODUCTS = [
    ("1996254", "valsartan 4 MG/ML Oral Solution", {"69749": "4 MG/ML"}, "arbs"),
    (
        "200285",
        "hydrochlorothiazide 12.5 MG / valsartan 160 MG Oral Tablet",
        {"5487": "12.5 MG", "69749": "160 MG"},
        "arbs",
    ),
    ("1114198", "rivaroxaban 10 MG Oral Tablet", {"1114195": "10 MG"}, "doacs"),
    (
        "1037045",
        "dabigatran etexilate 150 MG Oral Capsule",
        {"1037042": "150 MG"},
        "doacs",
    ),
    ("1599551", "edoxaban 30 MG Oral Tablet", {"1599538": "30 MG"}, "doacs"),
    ("892582", "morphine sulfate 15 MG Oral Tablet", {"7052": "15 MG"}, "opioids"),
    ("864706", "methadone hydrochloride 10 MG Oral Tablet", {"6813": "10 MG"}, "opioids"),
    ("1665050", "cefazolin 1000 MG Injection", {"2180": "1000 MG"}, "cephalosporins"),
    ("1665093", "cefepime 1000 MG Injection", {"20481": "1000 MG"}, "cephalosporins"),
    ("197817", "indomethacin 25 MG Oral Capsule", {"5781": "25 MG"}, "nsaids"),
    ("834022", "ketorolac tromethamine 10 MG Oral Tablet", {"35827": "10 MG"}, "nsaids"),
    (
        "1361615",
        "heparin sodium, porcine 5000 UNT/ML Injectable Solution",
        {"5224": "5000 UNT/ML"},
        "heparins",
    ),
    (
        "313096",
        "spironolactone 25 MG Oral Tablet",
        {"9997": "25 MG"},
        "potassium-sparing-diuretics",
    ),
    ("198051", "omeprazole 20 MG Delayed Release Oral Capsule", {"7646": "20 MG"}, "ppis"),
    # HL7 registry-protocols IG antiarrhythmics value set
    ("833528", "amiodarone hydrochloride 200 MG Oral Tablet", {"703": "200 MG"}, "qt-prolonging"),
    (
        "834346",
        "amiodarone hydrochloride 200 MG Oral Tablet [Pacerone]",
        {"703": "200 MG"},
        "qt-prolonging",
    ),
    (
        "1663224",
        "3 ML amiodarone hydrochloride 50 MG/ML Injection",
        {"703": "50 MG/ML"},
        "qt-prolonging",
    ),
    ("310004", "dofetilide 0.25 MG Oral Capsule", {"49247": "0.25 MG"}, "qt-prolonging-high-risk"),
    ("854856", "dronedarone 400 MG Oral Tablet", {"233698": "400 MG"}, "qt-prolonging-high-risk"),
    ("852877", "quinidine sulfate 200 MG Oral Tablet", {"9068": "200 MG"}, "qt-prolonging"),
    ("309958", "disopyramide 100 MG Oral Capsule", {"3541": "100 MG"}, "qt-prolonging"),
    # NLM RxImage (Viagra), Synthea HIV modules, VSAC RCTC ARV boosters
    ("213270", "sildenafil 50 MG Oral Tablet [Viagra]", {"136411": "50 MG"}, "pde5-inhibitors"),
    ("1359269", "darunavir 800 MG Oral Tablet", {"460132": "800 MG"}, "protease-inhibitors"),
    (
        "597730",
        "lopinavir 200 MG / ritonavir 50 MG Oral Tablet",
        {"195088": "200 MG", "85762": "50 MG"},
        "protease-inhibitors",
    ),
    (
        "859863",
        "saquinavir mesylate 500 MG Oral Tablet",
        {"83395": "500 MG"},
        "protease-inhibitors",
    ),
    ("900575", "ritonavir 100 MG Oral Tablet", {"85762": "100 MG"}, "protease-inhibitors"),
]

# Fourth pass (issue 12): VSAC 2025 combinations that give dextromethorphan and piperacillin their
# first product rows, and the one tadalafil code on which openFDA's RxNorm mapping and a public
# code table agree. Each row is verified (two sources, or a VSAC expansion), so none is listed
# as unverified; each must reach the class rule of every ingredient it names.
FOURTH_PASS_PRODUCTS = [
    (
        "2611260",
        "bupropion hydrochloride 105 MG / dextromethorphan hydrobromide 45 MG"
        " Extended Release Oral Tablet",
        {"42347": "105 MG", "3289": "45 MG"},
        "narcotic-analgesics-selected",
    ),
    (
        "991528",
        "dextromethorphan hydrobromide 3 MG/ML / promethazine hydrochloride 1.25 MG/ML Oral Solution",
        {"3289": "3 MG/ML", "8745": "1.25 MG/ML"},
        "narcotic-analgesics-selected",
    ),
    (
        "1659137",
        "piperacillin 3000 MG / tazobactam 375 MG Injection",
        {"8339": "3000 MG", "37617": "375 MG"},
        "penicillins",
    ),
    ("484814", "tadalafil 10 MG Oral Tablet", {"358263": "10 MG"}, "pde5-inhibitors"),
]


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge()


def other(code: str) -> dict[str, Any]:
    return med(code, rid="other-1", status="active")


@pytest.mark.parametrize(
    ("code", "name", "ingredients", "klass"),
    [pytest.param(*row, id=row[1]) for row in PRODUCTS + FOURTH_PASS_PRODUCTS],
)
def test_new_product_resolves_to_its_ingredients_and_class(
    kb: KnowledgeBase, code: str, name: str, ingredients: dict[str, str], klass: str
) -> None:
    drug = kb.drug(None, code)
    assert drug is not None, f"RxNorm {code} should be in the product table"
    assert drug.name == name and drug.tty in ("SCD", "SBD")
    assert dict(drug.strengths) == ingredients
    assert klass in drug.classes
    assert kb.coverage()["unverified_drug_codes"].count(code) == 0


def test_new_cephalosporin_product_against_a_penicillin_allergy_cross_reacts(
    kb: KnowledgeBase,
) -> None:
    high = allergy(SCT, SCT_PENICILLIN, rid="alg-penicillin", criticality="high")
    for cephalosporin in ("1665050", "1665021", "1665093"):  # cefazolin, ceftriaxone, cefepime
        found = drug_allergy.check(ctx(med(cephalosporin), allergies=(high,)), kb)
        assert summary(found) == [("ALLERGY-CROSS-REACTIVITY", "warning")], cephalosporin


@pytest.mark.parametrize(
    ("ordered", "on_file", "rule"),
    [
        pytest.param(WARFARIN_5_TAB, "197817", "DDI-WARFARIN-NSAID", id="indomethacin + warfarin"),
        pytest.param("834022", WARFARIN_5_TAB, "DDI-WARFARIN-NSAID", id="ketorolac + warfarin"),
        pytest.param("1114198", WARFARIN_5_TAB, "DDI-WARFARIN-DOAC", id="rivaroxaban + warfarin"),
        pytest.param(WARFARIN_5_TAB, "1037045", "DDI-WARFARIN-DOAC", id="warfarin + dabigatran"),
        pytest.param("1361615", "855288", "DDI-WARFARIN-HEPARIN", id="heparin + warfarin 1 mg"),
        pytest.param(
            "313096", LISINOPRIL_10_TAB, "DDI-ACEI-POTASSIUM-SPARING", id="spironolactone + ACEI"
        ),
    ],
)
def test_new_product_triggers_its_interaction_rule(
    kb: KnowledgeBase, ordered: str, on_file: str, rule: str
) -> None:
    found = drug_interaction.check(ctx(med(ordered), others=(other(on_file),)), kb)
    assert [alert.rule_id for alert in found] == [rule]
    assert found[0].level == "warning"


def test_new_methadone_product_with_an_maoi_is_the_onc_hard_stop(kb: KnowledgeBase) -> None:
    found = drug_interaction.check(ctx(med("864706"), others=(other(PHENELZINE_15_TAB),)), kb)
    assert summary(found) == [("DDI-ONC-06-NARCOTIC-MAOI", "hard-stop")]


@pytest.mark.parametrize(
    ("ordered", "on_file"),
    [
        pytest.param("1996254", LISINOPRIL_10_TAB, id="valsartan solution + lisinopril"),
        pytest.param("892582", OXYCODONE_5_TAB, id="morphine + oxycodone"),
    ],
)
def test_new_product_is_a_therapeutic_duplicate_of_its_class(
    kb: KnowledgeBase, ordered: str, on_file: str
) -> None:
    found = duplicate_therapy.check(ctx(med(ordered), others=(other(on_file),)), kb)
    assert summary(found) == [("DUPLICATE-THERAPY", "warning")]


def test_isosorbide_dinitrate_is_6058_and_no_code_stands_for_mononitrate(kb: KnowledgeBase) -> None:
    dinitrate = kb.drug(None, "6058")
    assert dinitrate is not None and dinitrate.name == "isosorbide dinitrate"
    assert "nitrates" in dinitrate.classes
    assert kb.drug(None, "6057") is None


def test_new_strengths_map_each_ingredient_to_its_strength(kb: KnowledgeBase) -> None:
    """The strength a dose check reads must be the product's, per ingredient."""
    combination = kb.drug(None, "597730")
    assert combination is not None
    assert dict(combination.strengths) == {"195088": "200 MG", "85762": "50 MG"}
    assert combination.dose_form == "Oral Tablet"


@pytest.mark.parametrize("viagra", ["213269", "213270", "213271"])
def test_new_sildenafil_product_with_a_nitrate_is_the_contraindication_hard_stop(
    kb: KnowledgeBase, viagra: str
) -> None:
    found = drug_interaction.check(ctx(med(viagra), others=(other(NITROGLYCERIN_SPRAY),)), kb)
    assert summary(found) == [("DDI-PDE5-NITRATE", "hard-stop")]
    assert "sildenafil" in found[0].message and "nitroglycerin" in found[0].message


def test_new_amiodarone_product_with_simvastatin_40_is_the_dose_managed_warning(
    kb: KnowledgeBase,
) -> None:
    found = drug_interaction.check(
        ctx(med(AMIODARONE_200_TAB), others=(other(SIMVASTATIN_40_TAB),)), kb
    )
    assert summary(found) == [("DDI-SIMVASTATIN-AMIODARONE", "warning")]
    assert "20 mg" in found[0].message


@pytest.mark.parametrize(
    ("ordered", "on_file", "expected"),
    [
        pytest.param(
            AMIODARONE_200_TAB,
            WARFARIN_5_TAB,
            [("DDI-WARFARIN-AMIODARONE", "warning")],
            id="amiodarone + warfarin",
        ),
        pytest.param(
            "310004",
            AMIODARONE_200_TAB,
            [("DDI-ONC-08-QT-QT", "hard-stop")],
            id="dofetilide + amiodarone",
        ),
        pytest.param(
            "1359269",
            RIFAMPIN_300_CAP,
            [("DDI-ONC-10-CYP3A4-INDUCER-PI", "hard-stop")],
            id="darunavir + rifampin",
        ),
        pytest.param(
            "597730",
            SIMVASTATIN_40_TAB,
            [("DDI-ONC-11-STATIN-CYP3A4", "hard-stop")],
            id="lopinavir/ritonavir + simvastatin",
        ),
        # Fourth pass: product codes of tadalafil, dextromethorphan and piperacillin.
        pytest.param(TADALAFIL_10_TAB, NITROGLYCERIN_SPRAY, [PDE5_NITRATE], id="tadalafil + GTN"),
        pytest.param(AUVELITY, PHENELZINE_15_TAB, [MAOI], id="bupropion/DXM + phenelzine"),
        pytest.param("991528", PHENELZINE_15_TAB, [MAOI], id="DXM/promethazine + phenelzine"),
        pytest.param(
            PIPERACILLIN_TAZOBACTAM_4G, WARFARIN_5_TAB, [PENICILLIN_WARFARIN], id="pip/tazo"
        ),
    ],
)
def test_new_product_fires_the_rule_of_its_ingredient(
    kb: KnowledgeBase, ordered: str, on_file: str, expected: list[tuple[str, str]]
) -> None:
    found = drug_interaction.check(ctx(med(ordered), others=(other(on_file),)), kb)
    assert summary(found) == expected


def test_single_source_dinitrate_product_is_unverified_but_still_checked(
    kb: KnowledgeBase,
) -> None:
    """197840 comes from one third-party RxNorm mirror: listed as unverified, yet it maps to
    isosorbide dinitrate, so sildenafil against it is still the hard-stop."""
    assert "197840" in kb.coverage()["unverified_drug_codes"]
    found = drug_interaction.check(ctx(med("213271"), others=(other("197840"),)), kb)
    assert summary(found) == [("DDI-PDE5-NITRATE", "hard-stop")]


# Single-source product rows (issue 12, third pass): each code is paired with its exact RxNorm
# name by one public source and contradicted by none seen, so the row is shipped unverified.
UNVERIFIED_PRODUCTS = [
    (
        "979092",
        "hydroxychloroquine sulfate 200 MG Oral Tablet",
        {"5521": "200 MG"},
        "qt-prolonging",
    ),
    (
        "979094",
        "hydroxychloroquine sulfate 200 MG Oral Tablet [Plaquenil]",
        {"5521": "200 MG"},
        "qt-prolonging",
    ),
    ("213469", "celecoxib 200 MG Oral Capsule [Celebrex]", {"140587": "200 MG"}, "nsaids"),
    ("207106", "fluconazole 50 MG Oral Tablet [Diflucan]", {"4450": "50 MG"}, "qt-prolonging"),
    ("283504", "ondansetron 2 MG/ML Injectable Solution", {"26225": "2 MG/ML"}, "qt-prolonging"),
    (
        "757968",
        "{4 (amoxicillin 500 MG Oral Capsule) / 2 (clarithromycin 500 MG Oral Tablet)"
        " / 2 (lansoprazole 30 MG Delayed Release Oral Capsule) } Pack",
        {"723": "500 MG", "21212": "500 MG", "17128": "30 MG"},
        "ppis",
    ),
]
CELECOXIB_200_CAP, FLUCONAZOLE_50_TAB, ONDANSETRON_INJ = "213469", "207106", "283504"
HYDROXYCHLOROQUINE_200_TAB, DOFETILIDE_025_CAP, IBUPROFEN_200_TAB = "979092", "310004", "310965"


@pytest.mark.parametrize(
    ("code", "name", "ingredients", "klass"),
    [pytest.param(*row, id=row[1]) for row in UNVERIFIED_PRODUCTS],
)
def test_single_source_product_resolves_but_is_listed_unverified(
    kb: KnowledgeBase, code: str, name: str, ingredients: dict[str, str], klass: str
) -> None:
    drug = kb.drug(None, code)
    assert drug is not None, f"RxNorm {code} should be in the product table"
    assert drug.name == name and drug.tty in ("SCD", "SBD", "GPCK")
    assert dict(drug.strengths) == ingredients
    assert klass in drug.classes
    assert code in kb.coverage()["unverified_drug_codes"]


@pytest.mark.parametrize(
    ("ordered", "on_file", "expected"),
    [
        pytest.param(
            CELECOXIB_200_CAP,
            WARFARIN_5_TAB,
            [("DDI-WARFARIN-NSAID", "warning")],
            id="celecoxib + warfarin",
        ),
        pytest.param(
            WARFARIN_5_TAB,
            FLUCONAZOLE_50_TAB,
            [("DDI-WARFARIN-FLUCONAZOLE", "warning")],
            id="warfarin + fluconazole",
        ),
        pytest.param(
            ONDANSETRON_INJ,
            DOFETILIDE_025_CAP,
            [("DDI-ONC-08-QT-QT", "hard-stop")],
            id="ondansetron + dofetilide",
        ),
        pytest.param(
            HYDROXYCHLOROQUINE_200_TAB,
            DOFETILIDE_025_CAP,
            [("DDI-ONC-08-QT-QT", "hard-stop")],
            id="hydroxychloroquine + dofetilide",
        ),
    ],
)
def test_single_source_product_fires_its_class_rule(
    kb: KnowledgeBase, ordered: str, on_file: str, expected: list[tuple[str, str]]
) -> None:
    found = drug_interaction.check(ctx(med(ordered), others=(other(on_file),)), kb)
    assert summary(found) == expected


def test_single_source_celecoxib_is_a_duplicate_nsaid_of_ibuprofen(kb: KnowledgeBase) -> None:
    found = duplicate_therapy.check(
        ctx(med(CELECOXIB_200_CAP), others=(other(IBUPROFEN_200_TAB),)), kb
    )
    assert summary(found) == [("DUPLICATE-THERAPY", "warning")]


def test_single_source_lansoprazole_pack_carries_all_three_ingredients(kb: KnowledgeBase) -> None:
    """The Prevpac pack (BPCK 757969) is amoxicillin + clarithromycin + lansoprazole: a
    penicillin allergy is a hard-stop, omeprazole is a second PPI, simvastatin meets
    clarithromycin (ONC row 11)."""
    high = allergy(SCT, SCT_PENICILLIN, rid="alg-penicillin", criticality="high")
    prevpac = med("757969")
    assert summary(drug_allergy.check(ctx(prevpac, allergies=(high,)), kb)) == [
        ("ALLERGY-CLASS", "hard-stop")
    ]
    duplicate = duplicate_therapy.check(ctx(prevpac, others=(other("198051"),)), kb)
    assert summary(duplicate) == [("DUPLICATE-THERAPY", "warning")]
    interaction = drug_interaction.check(ctx(prevpac, others=(other(SIMVASTATIN_40_TAB),)), kb)
    assert summary(interaction) == [("DDI-ONC-11-STATIN-CYP3A4", "hard-stop")]


@pytest.mark.parametrize(
    ("ordered", "on_file", "expected"),
    [
        pytest.param(
            "2588478",
            WARFARIN_5_TAB,
            [("DDI-WARFARIN-NSAID", "warning")],
            id="celecoxib/tramadol + warfarin",
        ),
        pytest.param(
            "2588478",
            PHENELZINE_15_TAB,
            [("DDI-ONC-06-NARCOTIC-MAOI", "hard-stop")],
            id="celecoxib/tramadol + phenelzine",
        ),
        pytest.param(
            "1366873",
            PHENELZINE_15_TAB,
            [("DDI-ONC-01-AMPHETAMINE-MAOI", "hard-stop")],
            id="hydrocodone/pseudoephedrine + phenelzine",
        ),
    ],
)
def test_vsac_combination_products_map_every_ingredient(
    kb: KnowledgeBase, ordered: str, on_file: str, expected: list[tuple[str, str]]
) -> None:
    """VSAC 2025 Opioids rows that give celecoxib and pseudoephedrine their first product:
    each ingredient of the combination must fire its own class rule, and the rows are
    verified (a VSAC expansion), so not in the unverified list."""
    found = drug_interaction.check(ctx(med(ordered), others=(other(on_file),)), kb)
    assert summary(found) == expected
    assert ordered not in kb.coverage()["unverified_drug_codes"]


def test_piperacillin_tazobactam_against_a_high_criticality_penicillin_allergy_is_a_hard_stop(
    kb: KnowledgeBase,
) -> None:
    high = allergy(SCT, SCT_PENICILLIN, rid="alg-penicillin", criticality="high")
    found = drug_allergy.check(ctx(med(PIPERACILLIN_TAZOBACTAM_4G), allergies=(high,)), kb)
    assert summary(found) == [("ALLERGY-CLASS", "hard-stop")]


@pytest.mark.parametrize(
    ("ordered", "on_file"),
    [
        pytest.param(DRONEDARONE_400_TAB, SIMVASTATIN_40_TAB, id="dronedarone ordered"),
        pytest.param(SIMVASTATIN_40_TAB, DRONEDARONE_400_TAB, id="simvastatin ordered"),
    ],
)
def test_simvastatin_with_dronedarone_is_the_ten_milligram_dose_warning(
    kb: KnowledgeBase, ordered: str, on_file: str
) -> None:
    """Zocor label §2.3: with dronedarone, simvastatin no more than 10 mg a day — a managed
    pair (warning that names the cap), either way round."""
    found = drug_interaction.check(ctx(med(ordered), others=(other(on_file),)), kb)
    assert summary(found) == [("DDI-SIMVASTATIN-DRONEDARONE", "warning")]
    assert "10 mg" in found[0].message
    assert "dronedarone" in found[0].message and "simvastatin" in found[0].message


@pytest.mark.parametrize("code", ["3418", "3648", "10438", "358263", "135775", "37617", "42347"])
def test_fourth_pass_ingredient_codes_are_no_longer_unverified(
    kb: KnowledgeBase, code: str
) -> None:
    """Dihydroergotamine, droperidol, theophylline, tadalafil and zolmitriptan are in the RxNav
    IN catalog; tazobactam too, bupropion in the CPIC drug table."""
    drug = kb.drug(None, code)
    assert drug is not None and drug.tty == "IN"
    assert code not in kb.coverage()["unverified_drug_codes"]
