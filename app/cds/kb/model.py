"""What the knowledge base holds, as immutable data: drugs, classes, rules, allergy codes,
dosing and duplicate-therapy tables. No I/O here (loading is `app.cds.kb.loading`, the
cross-checks `app.cds.kb.checks`, the indexed view `app.cds.kb.base`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

RXNORM_SYSTEM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED_SYSTEM: Final = "http://snomed.info/sct"
LOINC_SYSTEM: Final = "http://loinc.org"
SEVERITIES: Final = ("contraindicated", "major", "moderate")
PRODUCT_TTYS: Final = frozenset({"SCD", "SBD", "GPCK", "BPCK"})

_RXNORM_ALIASES: Final = frozenset({"", "rxnorm", RXNORM_SYSTEM.lower()})
_SNOMED_ALIASES: Final = frozenset({"snomed", "sct", "snomed-ct", "snomedct", SNOMED_SYSTEM})
_NON_ALNUM: Final = re.compile(r"[^a-z0-9]+")
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class KnowledgeError(Exception):
    """A knowledge file is missing, malformed, fails its schema or a cross-check.

    The message is `<file>: <JSON path>: <problem>` so an operator can fix the file without
    reading the loader; the parts are kept as attributes for callers and tests.
    """

    def __init__(self, file: str, path: str, problem: str) -> None:
        super().__init__(f"{file}: {path}: {problem}")
        self.file = file
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Drug:
    """An RxNorm concept the knowledge base knows (ingredient or product).

    `ingredients` are ingredient RxCUIs (an ingredient lists itself); `classes` are the classes
    of those ingredients, computed at load so callers never recompute membership.
    `strengths` maps an ingredient to its strength as RxNorm writes it ("500 MG") for
    products; `dose_form` is the product's dose form ("Oral Tablet").
    `verified` is False when the code could not be confirmed against an RxNav-derived source.
    """

    rxcui: str
    name: str
    tty: str
    ingredients: frozenset[str]
    synonyms: tuple[str, ...]
    classes: frozenset[str]
    verified: bool = True
    strengths: Mapping[str, str] = field(default_factory=dict)
    dose_form: str | None = None


@dataclass(frozen=True, slots=True)
class DrugClass:
    """A named set of ingredient RxCUIs with the citation its membership comes from.

    `terms` are words that name the class in free text (text-only allergies)."""

    id: str
    name: str
    members: frozenset[str]
    source: str
    note: str | None = None
    terms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Interaction:
    """A drug-drug interaction rule as written in the file (sides not expanded).

    `supersedes` lists rules this one replaces when both fire (e.g. warfarin + aspirin drops
    the generic warfarin + NSAID rule), so one pair never yields two alerts saying the same.
    """

    id: str
    severity: str
    onc_high_priority: bool
    message: str
    source: str
    a_ingredients: frozenset[str]
    a_classes: frozenset[str]
    b_ingredients: frozenset[str]
    b_classes: frozenset[str]
    supersedes: tuple[str, ...] = ()
    onc_row: int | None = None


@dataclass(frozen=True, slots=True)
class CrossReactivity:
    """An allergy to `from_class` may cross-react with drugs of `to_class` (warning level)."""

    from_class: str
    to_class: str
    note: str
    source: str


@dataclass(frozen=True, slots=True)
class Allergen:
    """What an allergy code means: ingredient-level (`ingredients`) or class-level (`classes`).

    An RxNorm ingredient or product code is an ingredient-level allergy to its ingredients; its
    classes are deliberately not added (an amoxicillin allergy is not a recorded penicillin-class
    allergy). A class code (e.g. SNOMED 764146007 penicillin) is class-level, and so is an
    RxNorm code that allergy_codes.json lists with classes (7980, "penicillin").
    """

    ingredients: frozenset[str]
    classes: frozenset[str]
    label: str


@dataclass(frozen=True, slots=True)
class MaxDailyDose:
    """The most of one ingredient a day (mg), for the routes listed (empty: any route)."""

    ingredient: str
    mg: float
    level: str
    source: str
    routes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class MinInterval:
    """Doses of these ingredients must be at least `days` apart (oral methotrexate: 7)."""

    id: str
    ingredients: frozenset[str]
    days: float
    level: str
    message: str
    source: str
    routes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AgeRule:
    """An age limit: `under_years` (paediatric contraindication) or `from_years` (Beers)."""

    id: str
    ingredients: frozenset[str]
    level: str
    message: str
    source: str
    under_years: float | None = None
    from_years: float | None = None


@dataclass(frozen=True, slots=True)
class TherapyGroup:
    """Drugs of any of these classes duplicate each other (two NSAIDs, ACE inhibitor + ARB)."""

    id: str
    name: str
    classes: frozenset[str]
    source: str


@dataclass(frozen=True, slots=True)
class LabWindows:
    """How far back (hours) an order of the same LOINC code counts as a duplicate."""

    default_hours: float
    source: str
    hours: Mapping[str, float] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)

    def window(self, code: str) -> float:
        return self.hours.get(code, self.default_hours)


@dataclass(frozen=True, slots=True)
class Dosing:
    max_daily: Mapping[str, MaxDailyDose] = field(default_factory=dict)
    min_intervals: tuple[MinInterval, ...] = ()
    age_rules: tuple[AgeRule, ...] = ()


def is_rxnorm(system: str | None) -> bool:
    """None, "" and "rxnorm" count as RxNorm, so callers holding bare codes need no case."""
    return system is None or system.strip().rstrip("/").lower() in _RXNORM_ALIASES


def canonical_system(system: str | None) -> str:
    if is_rxnorm(system):
        return RXNORM_SYSTEM
    assert system is not None
    cleaned = system.strip().rstrip("/")
    return SNOMED_SYSTEM if cleaned.lower() in _SNOMED_ALIASES else cleaned


def normalize(text: str) -> str:
    """Lower-case, punctuation to single spaces: "St. John's Wort" -> "st john s wort"."""
    return _NON_ALNUM.sub(" ", text.casefold()).strip()


def pair_fires(left: frozenset[str], right: frozenset[str]) -> bool:
    """True when some ingredient of `left` and a *different* one of `right` exist."""
    return bool(left) and bool(right) and not (len(left) == 1 and left == right)


def json_path(parts: Iterable[str | int]) -> str:
    """JSONPath for an error location: $.rules[3].severity, $.drugs['723'].tty."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}"
        else:
            out += f"[{part!r}]"
    return out
