"""Every ONC high-priority DDI (Phansalkar et al., JAMIA 2012;19:735-743) fires, contraindicated.

Two independent checks: a list written here (one representative object/precipitant ingredient
pair per row of the ONC table, chosen from the paper, not read from the knowledge file), and a
table-driven pass over the knowledge file itself.
"""

from __future__ import annotations

from itertools import product

import pytest

from app.cds.knowledge_base import Drug, KnowledgeBase, load_knowledge

# (row, object ingredient RxCUI, precipitant ingredient RxCUI, what the pair is)
ONC_PAIRS: list[tuple[int, str, str, str]] = [
    (1, "6901", "8123", "methylphenidate + phenelzine"),
    (2, "343047", "7646", "atazanavir + omeprazole"),
    (3, "73689", "1256", "febuxostat + azathioprine"),
    (4, "4493", "10734", "fluoxetine + tranylcypromine"),
    (5, "51499", "6135", "irinotecan + ketoconazole"),
    (6, "6754", "8123", "meperidine + phenelzine"),
    (7, "704", "6011", "amitriptyline + isocarboxazid"),
    (8, "8331", "21212", "pimozide + clarithromycin"),
    (9, "596205", "42355", "ramelteon + fluvoxamine"),
    (10, "9384", "85762", "rifampin + ritonavir"),
    (11, "36567", "21212", "simvastatin + clarithromycin"),
    (12, "6135", "3418", "ketoconazole + dihydroergotamine"),
    (13, "57258", "2551", "tizanidine + ciprofloxacin"),
    (14, "10734", "8702", "tranylcypromine + procarbazine"),
    (15, "37418", "8123", "sumatriptan + phenelzine"),
]


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge()


def drug(kb: KnowledgeBase, code: str) -> Drug:
    found = kb.drug("http://www.nlm.nih.gov/research/umls/rxnorm", code)
    assert found is not None, f"RxNorm {code} must be known to the knowledge base"
    return found


def test_the_independent_list_covers_all_15_rows() -> None:
    assert sorted(row for row, *_ in ONC_PAIRS) == list(range(1, 16))


@pytest.mark.parametrize(
    ("row", "object_code", "precipitant_code", "label"), ONC_PAIRS, ids=[p[3] for p in ONC_PAIRS]
)
def test_independent_pair_is_contraindicated_in_either_order(
    kb: KnowledgeBase, row: int, object_code: str, precipitant_code: str, label: str
) -> None:
    first, second = drug(kb, object_code), drug(kb, precipitant_code)
    for a, b in ((first, second), (second, first)):
        onc = [r for r in kb.interactions(a, b) if r.onc_high_priority]
        assert onc, f"{label}: no ONC high-priority interaction"
        assert all(r.severity == "contraindicated" for r in onc)
        assert row in {r.onc_row for r in onc}, f"{label}: expected ONC row {row}"


def test_exactly_15_onc_rules_all_contraindicated_one_per_row(kb: KnowledgeBase) -> None:
    onc = [r for r in kb.rules if r.onc_high_priority]
    assert len(onc) == 15
    assert all(r.severity == "contraindicated" for r in onc)
    assert sorted(r.onc_row for r in onc if r.onc_row is not None) == list(range(1, 16))
    assert all("Phansalkar" in r.source for r in onc)


@pytest.mark.parametrize("rule_id", [f"row-{n}" for n in range(1, 16)])
def test_every_onc_rule_fires_for_a_concrete_ingredient_pair(
    kb: KnowledgeBase, rule_id: str
) -> None:
    row = int(rule_id.split("-")[1])
    rule = next(r for r in kb.rules if r.onc_row == row)
    side_a, side_b = kb.rule_ingredients(rule)
    # Pairs a dose-managed rule supersedes (simvastatin + verapamil: a warning with the dose
    # limit, issue 12) are not this rule's to report.
    managed = [r for r in kb.rules if rule.id in r.supersedes]

    def superseded(a: str, b: str) -> bool:
        for other in managed:
            one, two = kb.rule_ingredients(other)
            if (a in one and b in two) or (a in two and b in one):
                return True
        return False

    pair = next(
        (a, b)
        for a, b in product(sorted(side_a), sorted(side_b))
        if a != b and not superseded(a, b)
    )
    found = kb.interactions(drug(kb, pair[0]), drug(kb, pair[1]))
    assert rule in found, f"{rule.id}: {pair} does not fire"
    assert rule in kb.interactions(drug(kb, pair[1]), drug(kb, pair[0]))


def test_non_onc_rules_are_never_marked_high_priority(kb: KnowledgeBase) -> None:
    for rule in kb.rules:
        if not rule.onc_high_priority:
            assert rule.onc_row is None
            # Contraindicated pairs outside the ONC list exist (PDE5 inhibitor + nitrate).
            assert rule.severity in {"contraindicated", "major", "moderate"}
