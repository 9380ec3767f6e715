"""`orders-service kb import-rxnorm`: an RRF excerpt becomes product rows (issue 12).

The excerpt has the shape of an RxNorm release's rrf/ files: pipe-separated, a trailing pipe,
RXNCONSO.RRF atoms (one product also has a PSN atom, one is suppressed, one comes from another
source) and RXNREL.RRF relationships written in either direction. Codes 9000xx are test codes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cds.knowledge_base import KnowledgeBase, load_knowledge
from app.cli import main
from app.rxnorm_import import build_overlay, write_overlay


def conso(rxcui: str, tty: str, name: str, *, sab: str = "RXNORM", suppress: str = "N") -> str:
    return f"{rxcui}|ENG||||||A{rxcui}{tty}||||{sab}|{tty}|{rxcui}|{name}||{suppress}|4096|"


def rel(a: str, rela: str, b: str) -> str:
    return f"{a}||CUI|RO|{b}||CUI|{rela}|R{a}{b}||RXNORM|RXNORM|||N||"


CONSO = [
    conso("5640", "IN", "ibuprofen"),
    conso("316074", "SCDC", "ibuprofen 200 MG"),
    conso("317541", "DF", "Oral Tablet"),
    conso("310965", "SCD", "ibuprofen 200 MG Oral Tablet"),
    conso("310965", "PSN", "IBUPROFEN 200MG TAB"),
    conso("731533", "SBD", "ibuprofen 200 MG Oral Tablet [Advil]"),
    conso("900020", "GPCK", "{12 (ibuprofen 200 MG Oral Tablet) } Pack"),
    conso("161", "IN", "acetaminophen"),
    conso("2670", "IN", "codeine"),
    conso("900010", "PIN", "codeine phosphate"),
    conso("900011", "SCDC", "acetaminophen 300 MG"),
    conso("900012", "SCDC", "codeine phosphate 60 MG"),
    conso("900013", "SCD", "acetaminophen 300 MG / codeine phosphate 60 MG Oral Tablet"),
    conso("900060", "IN", "caffeine"),
    conso("900061", "SCDC", "caffeine 65 MG"),
    conso("900063", "SCD", "acetaminophen 300 MG / caffeine 65 MG Oral Tablet"),
    conso("900030", "IN", "zuranolone"),
    conso("900032", "SCD", "zuranolone 30 MG Oral Capsule"),
    conso("900040", "SCD", "ibuprofen 400 MG Oral Tablet", suppress="O"),
    conso("900050", "SCD", "ibuprofen 800 MG Oral Tablet", sab="MTHSPL"),
]
REL = [
    rel("316074", "consists_of", "310965"),  # RXCUI2 consists_of RXCUI1
    rel("310965", "constitutes", "316074"),  # the inverse row, as releases carry both
    rel("5640", "has_ingredient", "316074"),
    rel("317541", "has_dose_form", "310965"),
    rel("310965", "tradename_of", "731533"),
    rel("310965", "contained_in", "900020"),
    rel("900011", "consists_of", "900013"),
    rel("900012", "consists_of", "900013"),
    rel("161", "has_ingredient", "900011"),
    rel("900010", "has_precise_ingredient", "900012"),
    rel("2670", "form_of", "900010"),
    rel("317541", "has_dose_form", "900013"),
    rel("900011", "consists_of", "900063"),
    rel("900061", "consists_of", "900063"),
    rel("900060", "has_ingredient", "900061"),
    rel("900030", "has_ingredient", "900032"),
    rel("5640", "has_ingredient", "900040"),
    rel("5640", "has_ingredient", "900050"),
]


@pytest.fixture
def release(tmp_path: Path) -> Path:
    rrf = tmp_path / "rrf"
    rrf.mkdir()
    (rrf / "RXNCONSO.RRF").write_text("\n".join(CONSO) + "\n", encoding="utf-8")
    (rrf / "RXNREL.RRF").write_text("\n".join(REL) + "\n", encoding="utf-8")
    return rrf


def test_the_excerpt_is_about_twenty_lines_of_each_file() -> None:
    assert 18 <= len(CONSO) <= 22 and 16 <= len(REL) <= 22


def test_rrf_excerpt_becomes_product_rows(release: Path) -> None:
    overlay = build_overlay(release, load_knowledge())
    products = overlay["products"]
    assert products["310965"] == {
        "name": "ibuprofen 200 MG Oral Tablet",
        "tty": "SCD",
        "ingredients": {"5640": "200 MG"},
        "dose_form": "Oral Tablet",
        "source": "rxnorm-release",
    }
    assert products["731533"]["ingredients"] == {"5640": "200 MG"}
    assert products["731533"]["tty"] == "SBD"
    assert products["900020"]["ingredients"] == {"5640": "200 MG"}
    assert products["900013"]["ingredients"] == {"161": "300 MG", "2670": "60 MG"}
    assert products["900063"]["ingredients"] == {"161": "300 MG", "900060": "65 MG"}
    assert overlay["ingredients"] == {"900060": "caffeine"}
    # No ingredient the knowledge base knows; suppressed; another source than RxNorm.
    assert not {"900032", "900040", "900050"} & set(products)


def test_imported_rows_load_and_resolve(release: Path, tmp_path: Path) -> None:
    target = tmp_path / "instance" / "knowledge" / "rxnorm-products.json"
    summary = write_overlay(
        build_overlay(release, load_knowledge()), target, lambda p: load_knowledge(overlays=[p])
    )
    assert (summary.products, summary.new_ingredients) == (5, 1)
    kb: KnowledgeBase = load_knowledge(overlays=[target])
    codeine_combo = kb.drug(None, "900013")
    assert codeine_combo is not None
    assert codeine_combo.ingredients == {"161", "2670"}
    assert "opioids" in codeine_combo.classes
    assert codeine_combo.strengths == {"161": "300 MG", "2670": "60 MG"}
    caffeine = kb.drug(None, "900060")
    assert caffeine is not None and (caffeine.tty, caffeine.name) == ("IN", "caffeine")
    assert kb.coverage()["products"] > load_knowledge().coverage()["products"]


def test_cli_writes_the_overlay_to_the_instance_folder(
    release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = tmp_path / "instance"
    monkeypatch.setenv("ORDERS_INSTANCE_PATH", str(instance))
    for name in ("DATABASE_URL", "OIDC_ISSUER", "OIDC_AUDIENCE", "OIDC_JWKS_URL"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["kb", "import-rxnorm", str(release)])
    assert result.exit_code == 0, result.output
    assert "5 products (1 ingredients new" in result.output
    written = json.loads((instance / "knowledge" / "rxnorm-products.json").read_text())
    assert "900013" in written["products"]


def test_cli_refuses_a_directory_without_release_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["kb", "import-rxnorm", str(tmp_path)])
    assert result.exit_code != 0
    assert "RXNCONSO.RRF not found" in result.output
