"""docs/knowledge-base.md states the knowledge base's coverage in numbers and names the
ingredients that have no product row; this test fails when those drift from what
`KnowledgeBase.coverage()` and the shipped files say (issue 12: each pass changed the data and
the page had to be updated by hand).

After a deliberate data change, update the page's coverage table, the "No product row" list and
the unverified-code count to the values in the failure message.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from app.cds.knowledge_base import KnowledgeBase, load_knowledge

DOC = Path(__file__).resolve().parents[2] / "docs" / "knowledge-base.md"
PRODUCT_TTYS = ("SCD", "SBD", "GPCK", "BPCK")


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge()


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text(encoding="utf-8")


def table(text: str) -> dict[str, tuple[str, str]]:
    """The coverage table: what → (count, notes)."""
    rows: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 3 and cells[0] not in ("what", "---"):
            rows.setdefault(cells[0], (cells[1], cells[2]))
        if rows and not line.startswith("|"):
            break
    return rows


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_coverage_table_matches_coverage(kb: KnowledgeBase, text: str) -> None:
    coverage = kb.coverage()
    rows = table(text)
    expected = {
        "ingredients (RxNorm IN)": str(coverage["ingredients"]),
        "products (SCD/SBD/packs)": str(coverage["products"]),
        "drug classes": str(coverage["classes"]),
        "cross-reactivity": str(coverage["cross_reactivity"]),
        "interaction rules": str(coverage["rules"]),
        "allergy codes": str(coverage["allergy_codes"]),
        "duplicate-therapy groups": str(coverage["therapy_groups"]),
        "maximum daily doses": str(coverage["max_daily_doses"]),
        "age rules": str(coverage["age_rules"]),
        "lab look-back windows": f"{coverage['lab_windows']} LOINC codes",
    }
    assert {what: rows.get(what, ("missing",))[0] for what in expected} == expected


def test_product_and_rule_breakdowns_match(kb: KnowledgeBase, text: str) -> None:
    coverage = kb.coverage()
    rows = table(text)
    ttys = Counter(d.tty for d in kb.drugs.values())
    breakdown = ", ".join(f"{ttys[t]} {t}" for t in PRODUCT_TTYS if ttys[t])
    with_products, ingredients = coverage["ingredients_with_products"], coverage["ingredients"]
    products_notes = rows["products (SCD/SBD/packs)"][1]
    assert products_notes.startswith(breakdown + ";"), products_notes
    assert (
        f"{with_products} of the {ingredients} ingredients have at least one product "
        f"({ingredients - with_products} have none" in products_notes
    )
    onc = coverage["onc_high_priority_rules"]
    assert rows["interaction rules"][1].startswith(
        f"{onc} ONC high-priority (hard-stop) + {coverage['rules'] - onc} others"
    )
    assert f"{len(kb.dosing.max_daily)}" == rows["maximum daily doses"][0]


def test_unverified_code_count_matches(kb: KnowledgeBase, text: str) -> None:
    unverified = kb.coverage()["unverified_drug_codes"]
    flat = squash(text)
    assert f'`coverage()["unverified_drug_codes"]`, {len(unverified)} codes' in flat


def test_no_product_row_list_names_exactly_the_ingredients_without_products(
    kb: KnowledgeBase, text: str
) -> None:
    covered = {i for d in kb.drugs.values() if d.tty in PRODUCT_TTYS for i in d.ingredients}
    missing = {d.name for code, d in kb.drugs.items() if d.tty == "IN" and code not in covered}
    section = text.split("### No product row", 1)[1]
    header, body = section.split("\n", 1)
    assert f"({len(missing)} ingredients)" in header
    listed = squash(body.split("never silent:", 1)[1].split(" — ", 1)[0])
    names = {re.sub(r" \(.*", "", name).strip() for name in re.split(r",(?![^(]*\))", listed)}
    assert names == missing
