"""`orders-service kb import-rxnorm DIR`: the product table from an RxNorm release.

Reads the Rich Release Format files of a full or prescribable RxNorm release (the prescribable
subset needs no UMLS licence): RXNCONSO.RRF for concepts (SAB=RXNORM, not suppressed) and
RXNREL.RRF for relationships. For every clinical or branded drug or pack (SCD, SBD, GPCK,
BPCK) with at least one ingredient the knowledge base knows, it writes the product's
ingredients with their strengths and its dose form; ingredients the knowledge base lacks are
written by name, so a combination product is complete.
See: https://www.nlm.nih.gov/research/umls/rxnorm/docs/techdoc.html (files, TTYs, RELAs).

Paths walked (RxNorm writes each relationship in both directions with inverse labels; the
walk matches concepts by term type, so it does not depend on which way a row is written):
SCD -consists_of- SCDC -has_ingredient- IN (or -has_precise_ingredient- PIN -form_of- IN);
SCD -has_dose_form- DF; SBD -tradename_of- SCD; GPCK/BPCK -contains- SCD/SBD.

The output is an overlay with the shape of products.json (instance folder; docs/decisions.md),
checked by loading the knowledge base with it before it replaces the previous one.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from app.cds.kb.base import KnowledgeBase

SOURCE_KEY: Final = "rxnorm-release"
PRODUCT_TTYS: Final = ("SCD", "SBD", "GPCK", "BPCK")
WANTED_TTYS: Final = frozenset({"IN", "PIN", "MIN", "SCDC", "SBDC", "DF", *PRODUCT_TTYS})
_TTY_RANK: Final = {
    tty: i
    for i, tty in enumerate(
        ("SCD", "SBD", "GPCK", "BPCK", "SCDC", "SBDC", "IN", "PIN", "MIN", "DF")
    )
}
RELAS: Final = frozenset(
    {
        "consists_of", "constitutes",
        "has_ingredient", "ingredient_of",
        "has_precise_ingredient", "precise_ingredient_of",
        "form_of", "has_form",
        "has_dose_form", "dose_form_of",
        "tradename_of", "has_tradename",
        "contains", "contained_in",
    }
)  # fmt: skip
_STRENGTH = re.compile(r"(\d+(?:\.\d+)?\s+[A-Z]+(?:/[A-Z]+)?)\s*$")


@dataclass(frozen=True)
class Summary:
    products: int
    new_ingredients: int
    path: Path


def _rows(path: Path) -> Iterator[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        yield from csv.reader(handle, delimiter="|", quoting=csv.QUOTE_NONE)


def read_concepts(directory: Path) -> dict[str, tuple[str, str]]:
    """RXCUI -> (TTY, name) of the RxNorm atoms of interest (best-ranked TTY per concept)."""
    concepts: dict[str, tuple[str, str]] = {}
    for row in _rows(directory / "RXNCONSO.RRF"):
        if len(row) < 17 or row[11] != "RXNORM" or row[16] not in ("N", ""):
            continue
        rxcui, tty, name = row[0], row[12], row[14]
        if tty not in WANTED_TTYS:
            continue
        known = concepts.get(rxcui)
        if known is None or _TTY_RANK[tty] < _TTY_RANK[known[0]]:
            concepts[rxcui] = (tty, name)
    return concepts


def read_links(directory: Path, concepts: dict[str, tuple[str, str]]) -> dict[str, set[str]]:
    """RXCUI -> RXCUIs related by one of the walked relationships (either direction)."""
    links: dict[str, set[str]] = defaultdict(set)
    for row in _rows(directory / "RXNREL.RRF"):
        if len(row) < 15 or row[10] != "RXNORM" or row[7] not in RELAS:
            continue
        if row[14] not in ("N", "") or row[0] not in concepts or row[4] not in concepts:
            continue
        links[row[0]].add(row[4])
        links[row[4]].add(row[0])
    return links


class _Walker:
    def __init__(self, concepts: dict[str, tuple[str, str]], links: dict[str, set[str]]) -> None:
        self.concepts = concepts
        self.links = links

    def near(self, rxcui: str, *ttys: str) -> list[str]:
        return sorted(o for o in self.links.get(rxcui, ()) if self.concepts[o][0] in ttys)

    def ingredient_of_component(self, scdc: str) -> str | None:
        found = self.near(scdc, "IN")
        if found:
            return found[0]
        for pin in self.near(scdc, "PIN"):
            forms = self.near(pin, "IN")
            if forms:
                return forms[0]
        return None

    def clinical(self, scd: str) -> dict[str, str]:
        """Ingredient RXCUI -> strength of a clinical drug."""
        out: dict[str, str] = {}
        for scdc in self.near(scd, "SCDC"):
            ingredient = self.ingredient_of_component(scdc)
            if ingredient is not None:
                m = _STRENGTH.search(self.concepts[scdc][1])
                out[ingredient] = m.group(1) if m else ""
        return out

    def product(self, rxcui: str) -> tuple[dict[str, str], str | None]:
        tty = self.concepts[rxcui][0]
        if tty == "SCD":
            forms = self.near(rxcui, "DF")
            return self.clinical(rxcui), self.concepts[forms[0]][1] if forms else None
        if tty == "SBD":
            for scd in self.near(rxcui, "SCD"):
                return self.product(scd)
            return {}, None
        merged: dict[str, str] = {}
        for part in self.near(rxcui, "SCD", "SBD"):
            merged.update(self.product(part)[0])
        return merged, "Pack"


def build_overlay(directory: Path, kb: KnowledgeBase) -> dict[str, Any]:
    """The overlay document for the release in `directory`."""
    concepts = read_concepts(directory)
    walker = _Walker(concepts, read_links(directory, concepts))
    known = {code for code, drug in kb.drugs.items() if drug.tty == "IN"}
    products: dict[str, Any] = {}
    new_ingredients: dict[str, str] = {}
    for rxcui, (tty, name) in sorted(concepts.items(), key=lambda item: int(item[0])):
        if tty not in PRODUCT_TTYS:
            continue
        ingredients, form = walker.product(rxcui)
        if not ingredients or not set(ingredients) & known:
            continue
        for code in ingredients:
            if code not in known:
                new_ingredients[code] = concepts[code][1]
        if rxcui in kb.drugs and kb.drugs[rxcui].tty not in PRODUCT_TTYS:
            continue  # an ingredient-level entry of drugs.json is never overridden
        entry: dict[str, Any] = {"name": name, "tty": tty, "ingredients": ingredients}
        if form:
            entry["dose_form"] = form
        entry["source"] = SOURCE_KEY
        products[rxcui] = entry
    return {
        "version": f"rxnorm-import {datetime.now(UTC).date().isoformat()}",
        "description": (
            f"Imported by `orders-service kb import-rxnorm` from {directory.resolve()}: "
            f"{len(products)} products of the knowledge base's ingredients."
        ),
        "sources": {SOURCE_KEY: f"RxNorm release files (RXNCONSO.RRF, RXNREL.RRF) in {directory}"},
        "ingredients": new_ingredients,
        "products": products,
    }


def write_overlay(document: dict[str, Any], path: Path, check: Callable[[Path], object]) -> Summary:
    """Write next to `path`, `check` it (load the knowledge base with it), then replace the
    previous overlay in one rename: a bad or half-written overlay is never loaded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", "utf-8")
    try:
        check(temporary)
    except Exception:
        temporary.unlink()
        raise
    os.replace(temporary, path)
    return Summary(len(document["products"]), len(document["ingredients"]), path)
