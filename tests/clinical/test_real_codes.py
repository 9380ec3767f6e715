"""Issue 12 acceptance: decision support on the codes real EHRs send, on both faces.

Every story runs on the FHIR face and on the legacy face (and, through the `app` fixture, on
SQLite and PostgreSQL). Codes are RxNorm clinical drugs as orders carry them: 855332 warfarin
sodium 5 MG tablet, 310965 ibuprofen 200 MG tablet, 562251 amoxicillin/clavulanate tablet,
308191 amoxicillin 500 MG capsule, 105585 methotrexate 2.5 MG tablet, 993781
acetaminophen 300 MG / codeine phosphate 30 MG tablet; and the fourth-pass codes 484814
tadalafil 10 MG tablet (openFDA and a public code table agree) with 705129 nitroglycerin spray,
854856 dronedarone 400 MG tablet with 198211 simvastatin 40 MG tablet.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient

from tests.clinical.faces import Face, FhirFace, LegacyFace
from tests.clinical.ward import SNOMED
from tests.conftest import TokenFactory

WARFARIN_5 = "855332"
IBUPROFEN_200 = "310965"
NAPROXEN_500 = "198014"
AMOX_CLAV = "562251"
AMOXICILLIN_500_CAP = "308191"
METHOTREXATE_2_5 = "105585"
APAP_CODEINE_30 = "993781"
ACETAMINOPHEN_325 = "313782"
DIPHENHYDRAMINE_25 = "1049630"
PENICILLIN_SUBSTANCE = "764146007"
ALLERGY_TO_PENICILLIN = "91936005"
UNKNOWN = "99999999"
TADALAFIL_10 = "484814"
NITROGLYCERIN_SPRAY = "705129"
DRONEDARONE_400 = "854856"
SIMVASTATIN_40 = "198211"


@pytest.fixture(params=["fhir", "legacy"])
def face(request: pytest.FixtureRequest, client: FlaskClient, headers: TokenFactory) -> Face:
    return (FhirFace if request.param == "fhir" else LegacyFace)(client, headers)


def years_ago(years: int) -> str:
    today = datetime.now(UTC).date()
    return today.replace(year=today.year - years).isoformat()


@pytest.mark.parametrize(
    ("on_file", "ordered", "rule", "words"),
    [
        pytest.param(
            WARFARIN_5,
            IBUPROFEN_200,
            "DDI-WARFARIN-NSAID",
            ("ibuprofen", "warfarin"),
            id="warfarin on file, ibuprofen tablet",
        ),
        # Fourth pass: simvastatin label §2.3 caps simvastatin at 10 mg a day with dronedarone.
        pytest.param(
            SIMVASTATIN_40,
            DRONEDARONE_400,
            "DDI-SIMVASTATIN-DRONEDARONE",
            ("dronedarone", "simvastatin", "10 mg"),
            id="simvastatin on file, dronedarone tablet",
        ),
    ],
)
def test_managed_interaction_warns_naming_both_drugs_until_acknowledged(
    face: Face, on_file: str, ordered: str, rule: str, words: tuple[str, ...]
) -> None:
    pid = face.patient()
    face.on_file(pid, on_file)
    placed = face.prescribe(pid, ordered)
    assert placed.status == 201
    alert = placed.of(rule)
    assert alert.level == "warning"
    assert all(word in alert.message.casefold() for word in words), alert.message
    assert ordered not in alert.message
    assert face.activate(placed) == (422, "CDS_WARNING_UNACKNOWLEDGED")
    face.acknowledge_warnings(placed)
    assert face.activate(placed) == (200, None)


def test_high_criticality_penicillin_allergy_blocks_amoxicillin_clavulanate(face: Face) -> None:
    pid = face.patient()
    face.allergy(pid, PENICILLIN_SUBSTANCE, system=SNOMED, criticality="high")
    placed = face.prescribe(pid, AMOX_CLAV)
    assert (placed.status, placed.error_code) == (422, "CDS_HARD_STOP")
    assert "ALLERGY-CLASS" in placed.rules()
    assert "Penicillin" in placed.of("ALLERGY-CLASS").message


def test_allergy_recorded_as_snomed_finding_blocks_amoxicillin(face: Face) -> None:
    pid = face.patient()
    face.allergy(pid, ALLERGY_TO_PENICILLIN, system=SNOMED, criticality="high")
    placed = face.prescribe(pid, AMOXICILLIN_500_CAP)
    assert (placed.status, placed.error_code) == (422, "CDS_HARD_STOP")
    assert "ALLERGY-CLASS" in placed.rules()


def test_amoxicillin_on_file_and_amoxicillin_clavulanate_is_a_duplicate_ingredient(
    face: Face,
) -> None:
    pid = face.patient()
    face.on_file(pid, AMOXICILLIN_500_CAP)
    placed = face.prescribe(pid, AMOX_CLAV)
    assert placed.status == 201
    duplicate = placed.of("DUPLICATE-ORDER")
    assert duplicate.level == "warning"
    assert "amoxicillin" in duplicate.message


def test_unknown_drug_for_a_patient_on_warfarin_waits_for_acknowledgement(face: Face) -> None:
    pid = face.patient()
    face.on_file(pid, WARFARIN_5)
    placed = face.prescribe(pid, UNKNOWN, "Mystery tablet")
    assert placed.status == 201
    unknown = placed.of("DRUG-UNKNOWN")
    assert unknown.level == "warning"
    assert "Mystery tablet" in unknown.message
    assert face.activate(placed) == (422, "CDS_WARNING_UNACKNOWLEDGED")
    face.acknowledge_warnings(placed)
    assert face.activate(placed) == (200, None)


def test_unresolvable_drug_on_file_makes_a_new_warfarin_order_warn(face: Face) -> None:
    pid = face.patient()
    on_file = face.prescribe(pid, UNKNOWN, "Mystery tablet")
    assert on_file.status == 201
    placed = face.prescribe(pid, WARFARIN_5)
    assert placed.status == 201
    other = placed.of("DRUG-UNKNOWN-OTHER")
    assert other.level == "warning"
    assert "Mystery tablet" in other.message and "warfarin" in other.message


def test_methotrexate_tablet_once_daily_is_a_hard_stop(face: Face) -> None:
    pid = face.patient()
    placed = face.prescribe(pid, METHOTREXATE_2_5, dose=2.5, unit="mg", frequency="OD")
    assert (placed.status, placed.error_code) == (422, "CDS_HARD_STOP")
    assert "DOSE-METHOTREXATE-WEEKLY" in placed.rules()


@pytest.mark.parametrize("frequency", ["WEEKLY", "QW"])
def test_methotrexate_tablet_weekly_has_no_serious_alert(face: Face, frequency: str) -> None:
    """Weekly is Timing repeat frequency 1 per 1 wk on the FHIR face, `WEEKLY`/`QW` on the
    legacy face (mapped to the same Timing)."""
    pid = face.patient()
    placed = face.prescribe(pid, METHOTREXATE_2_5, dose=15, unit="mg", frequency=frequency)
    assert placed.status == 201
    assert not [a for a in placed.alerts if a.level in ("warning", "hard-stop")]


def test_methotrexate_every_other_day_is_still_flagged(face: Face) -> None:
    pid = face.patient()
    placed = face.prescribe(pid, METHOTREXATE_2_5, dose=2.5, unit="mg", frequency="Q2D")
    assert (placed.status, placed.error_code) == (422, "CDS_HARD_STOP")
    assert "DOSE-METHOTREXATE-WEEKLY" in placed.rules()


def test_seven_year_old_and_codeine_is_a_hard_stop(face: Face) -> None:
    pid = face.patient(birth_date=years_ago(7))
    placed = face.prescribe(pid, APAP_CODEINE_30)
    assert (placed.status, placed.error_code) == (422, "CDS_HARD_STOP")
    assert "AGE-CODEINE-TRAMADOL-UNDER-12" in placed.rules()
    assert "codeine" in placed.of("AGE-CODEINE-TRAMADOL-UNDER-12").message.casefold()


def test_codeine_for_an_adult_has_no_age_alert(face: Face) -> None:
    pid = face.patient(birth_date=years_ago(40))
    placed = face.prescribe(pid, APAP_CODEINE_30)
    assert placed.status == 201
    assert not {r for r in placed.rules() if r.startswith("AGE-")}


def test_acetaminophen_above_four_grams_a_day_warns(face: Face) -> None:
    pid = face.patient()
    placed = face.prescribe(pid, ACETAMINOPHEN_325, dose=1300, unit="mg", frequency="QDS")
    assert placed.status == 201
    alert = placed.of("DOSE-MAX-DAILY")
    assert alert.level == "warning"
    assert "5200 mg a day" in alert.message and "4000 mg" in alert.message


def test_acetaminophen_in_tablets_converts_through_the_product_strength(face: Face) -> None:
    pid = face.patient()
    within = face.prescribe(pid, ACETAMINOPHEN_325, dose=2, unit="tablet", frequency="QDS")
    assert within.status == 201
    assert "DOSE-MAX-DAILY" not in within.rules()
    unconvertible = face.prescribe(pid, ACETAMINOPHEN_325, dose=5, unit="drops", frequency="OD")
    assert unconvertible.of("DOSE-UNCHECKED").level == "info"


def test_beers_drug_at_seventy_warns(face: Face) -> None:
    pid = face.patient(birth_date=years_ago(70))
    placed = face.prescribe(pid, DIPHENHYDRAMINE_25)
    assert placed.of("AGE-BEERS-65").level == "warning"


def test_two_nsaids_are_duplicate_therapy(face: Face) -> None:
    pid = face.patient()
    face.on_file(pid, IBUPROFEN_200)
    placed = face.prescribe(pid, NAPROXEN_500)
    alert = placed.of("DUPLICATE-THERAPY")
    assert alert.level == "warning"
    assert "naproxen" in alert.message and "ibuprofen" in alert.message


def test_tadalafil_tablet_with_nitroglycerin_on_file_is_a_hard_stop(face: Face) -> None:
    """A tadalafil order coded with its product code (not the ingredient) must still reach the
    PDE5 inhibitor + nitrate contraindication; before the fourth pass it was DRUG-UNKNOWN."""
    pid = face.patient()
    face.on_file(pid, NITROGLYCERIN_SPRAY)
    placed = face.prescribe(pid, TADALAFIL_10)
    assert (placed.status, placed.error_code) == (422, "CDS_HARD_STOP")
    alert = placed.of("DDI-PDE5-NITRATE")
    assert "tadalafil" in alert.message and "nitroglycerin" in alert.message
    assert "DRUG-UNKNOWN" not in placed.rules()


def test_text_only_penicillin_allergy_matches_by_name(face: Face) -> None:
    pid = face.patient()
    face.allergy(pid, None, text="Penicillins", criticality="high")
    placed = face.prescribe(pid, AMOXICILLIN_500_CAP)
    assert (placed.status, placed.error_code) == (422, "CDS_HARD_STOP")
    assert "matched by name" in placed.of("ALLERGY-CLASS").message


def test_anaphylaxis_history_makes_a_low_criticality_allergy_a_hard_stop(face: Face) -> None:
    pid = face.patient()
    reaction = {
        "manifestation": [{"coding": [{"system": SNOMED, "code": "39579001"}]}],
        "severity": "severe",
    }
    face.allergy(pid, "723", criticality="low", reaction=[reaction])
    placed = face.prescribe(pid, AMOX_CLAV)
    assert (placed.status, placed.error_code) == (422, "CDS_HARD_STOP")
    assert "severe reaction" in placed.of("ALLERGY-DRUG").message


def test_intolerance_is_called_an_intolerance(face: Face) -> None:
    pid = face.patient()
    face.allergy(pid, "5640", criticality="low", type="intolerance")
    placed = face.prescribe(pid, IBUPROFEN_200)
    assert placed.of("ALLERGY-DRUG").message.startswith("Intolerance to ibuprofen")


def test_unreadable_medication_allergy_warns_that_it_could_not_be_checked(face: Face) -> None:
    pid = face.patient()
    face.allergy(
        pid, "LOCAL-77", system="urn:local:allergens", text="Drug X", category=["medication"]
    )
    placed = face.prescribe(pid, IBUPROFEN_200)
    alert = placed.of("ALLERGY-UNCHECKED")
    assert alert.level == "warning"
    assert "could not be checked" in alert.message and "Drug X" in alert.message


def test_food_allergy_is_not_a_drug_allergy_gap(face: Face) -> None:
    pid = face.patient()
    face.allergy(pid, "762952008", system=SNOMED, text="Peanut", category=["food"])
    placed = face.prescribe(pid, IBUPROFEN_200)
    assert "ALLERGY-UNCHECKED" not in placed.rules()


def test_rxnorm_normalized_name_under_a_local_code_is_matched_by_name(face: Face) -> None:
    pid = face.patient()
    face.on_file(pid, WARFARIN_5)
    placed = face.prescribe(
        pid, "IBU-200", "Ibuprofen 200 MG Oral Tablet", system="urn:local:formulary"
    )
    alert = placed.of("DDI-WARFARIN-NSAID")
    assert "matched by name" in alert.message
    assert "DRUG-UNKNOWN" not in placed.rules()


# ---------------------------------------------------------------- FHIR Medication resources
def test_contained_and_referenced_medications_resolve(
    client: FlaskClient, headers: TokenFactory
) -> None:
    face = FhirFace(client, headers)
    pid = face.patient()
    face.on_file(pid, WARFARIN_5)
    contained = face.ward.medication(pid, IBUPROFEN_200)
    del contained["medicationCodeableConcept"]
    contained["contained"] = [
        {
            "resourceType": "Medication",
            "id": "m1",
            "code": {"text": "Local NSAID"},
            "ingredient": [
                {
                    "itemCodeableConcept": {
                        "coding": [
                            {
                                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                "code": "5640",
                            }
                        ]
                    }
                }
            ],
        }
    ]
    contained["medicationReference"] = {"reference": "#m1"}
    assert "DDI-WARFARIN-NSAID" in face.place(contained).rules()

    # A CDS Hooks client may send the referenced Medication in the draftOrders Bundle next to
    # the order (a stored one: tests/clinical/test_stored_medications.py).
    medication = {
        "resourceType": "Medication",
        "id": "naproxen-500",
        "code": {
            "coding": [
                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": NAPROXEN_500}
            ]
        },
    }
    draft = face.ward.medication(pid, NAPROXEN_500)
    del draft["medicationCodeableConcept"]
    draft["medicationReference"] = {"reference": "Medication/naproxen-500"}
    cards = face.ward.order_select(pid, draft, beside=(medication,))
    topics = {c["source"]["topic"]["code"] for c in cards}
    assert "DDI-WARFARIN-NSAID" in topics
    assert "DRUG-UNKNOWN" not in topics


def test_cds_hooks_card_says_what_the_stored_alert_says(
    client: FlaskClient, headers: TokenFactory
) -> None:
    face = FhirFace(client, headers)
    pid = face.patient()
    face.on_file(pid, WARFARIN_5)
    cards = face.ward.order_select(pid, face.ward.medication(pid, IBUPROFEN_200))
    card = next(c for c in cards if c["source"]["topic"]["code"] == "DDI-WARFARIN-NSAID")
    stored = face.prescribe(pid, IBUPROFEN_200).of("DDI-WARFARIN-NSAID")
    assert card["detail"].startswith(stored.message)
    assert "Source:" in card["detail"]


# ---------------------------------------------------------------- lab look-back window
def test_lab_duplicate_uses_the_look_back_window(
    client: FlaskClient, headers: TokenFactory
) -> None:
    ward = FhirFace(client, headers).ward
    pid = ward.patient()
    old = ward.lab(pid, "58410-2")
    old["authoredOn"] = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ward.order(old)
    fresh = ward.order(ward.lab(pid, "58410-2"))
    assert "DUPLICATE-ORDER" not in {
        c["code"] for a in ward.alerts(fresh) for c in a["code"]["coding"]
    }, "a CBC ordered three days ago is outside the 24 h window"
    again = ward.order(ward.lab(pid, "58410-2"))
    assert "DUPLICATE-ORDER" in {c["code"] for a in ward.alerts(again) for c in a["code"]["coding"]}


def test_completed_lab_within_the_window_is_a_duplicate(
    client: FlaskClient, headers: TokenFactory
) -> None:
    ward = FhirFace(client, headers).ward
    pid = ward.patient()
    first = ward.order(ward.lab(pid, "4548-4"))
    ward.ok(ward.activate(first))
    tasks = ward.ok(
        client.get(f"/fhir/R4/Task?focus=ServiceRequest/{first['id']}", headers=ward.doc)
    )
    task = tasks["entry"][0]["resource"]
    ward.ok(
        client.put(
            f"/fhir/R4/Task/{task['id']}", json={**task, "status": "completed"}, headers=ward.nurse
        )
    )
    assert ward.read(first)["status"] == "completed"
    second = ward.order(ward.lab(pid, "4548-4"))
    detail = [a["detail"] for a in ward.alerts(second)]
    assert any(f"ServiceRequest/{first['id']}" in d and "completed" in d for d in detail), detail


def test_stored_alert_cites_the_rules_source(client: FlaskClient, headers: TokenFactory) -> None:
    face = FhirFace(client, headers)
    pid = face.patient()
    face.on_file(pid, WARFARIN_5)
    placed = face.prescribe(pid, IBUPROFEN_200)
    [issue] = [
        a
        for a in face.ward.alerts(placed.handle)
        if any(c["code"] == "DDI-WARFARIN-NSAID" for c in a["code"]["coding"])
    ]
    sources = [e["valueString"] for e in issue["extension"] if e["url"].endswith("cds-source")]
    assert sources and "PDDI" in sources[0]
