"""The CDS knowledge base: drugs, classes, interactions and allergy codes, shipped as data.

Why data and not code: every rule cites its source and a pharmacist can review a JSON file
without reading Python. Why a strict loader: a bad edit must stop start-up with the file,
the JSON path and the problem (`KnowledgeError`) — a silently dropped rule means a missed
alert, which is the worst failure a CDS can have.

`load_knowledge()` reads `app/cds/knowledge/{drugs,classes,interactions,allergy_codes}.json`,
validates each against its JSON Schema (draft 2020-12, shipped with the code in
`knowledge/schema/`) and cross-checks what a schema cannot express (references exist, ids are
unique, names are unambiguous, every rule can fire). Nothing is read at import time.

Matching model (DESIGN §6: codes are authoritative, displays are not):
* a drug is an RxNorm concept; products map to ingredient RxCUIs and a drug's classes are the
  classes of its ingredients;
* an interaction rule fires for two drugs when one has an ingredient on side `a` and the other
  a *different* ingredient on side `b` (either way round) — a drug never "interacts" with its
  own ingredient, that is a duplicate order;
* an allergy code resolves to ingredients (ingredient-level allergy) or classes (class-level
  allergy); class-to-class cross-reactivity is separate data. RxNorm allergy codes are
  ingredient-level unless allergy_codes.json says the code is used for a class.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

RXNORM_SYSTEM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED_SYSTEM: Final = "http://snomed.info/sct"
DEFAULT_DIRECTORY: Final = Path(__file__).parent / "knowledge"
# Schemas are part of the code's contract, so they always come from the package, even when
# the data is loaded from another directory.
SCHEMA_DIRECTORY: Final = DEFAULT_DIRECTORY / "schema"
FILES: Final = ("drugs", "classes", "interactions", "allergy_codes")
SEVERITIES: Final = ("contraindicated", "major", "moderate")

_RXNORM_ALIASES: Final = frozenset({"", "rxnorm", RXNORM_SYSTEM.lower()})
_SNOMED_ALIASES: Final = frozenset({"snomed", "sct", "snomed-ct", "snomedct", SNOMED_SYSTEM})
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NON_ALNUM: Final = re.compile(r"[^a-z0-9]+")


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
    `verified` is False when the code could not be confirmed against an RxNav-derived source.
    """

    rxcui: str
    name: str
    tty: str
    ingredients: frozenset[str]
    synonyms: tuple[str, ...]
    classes: frozenset[str]
    verified: bool = True


@dataclass(frozen=True, slots=True)
class DrugClass:
    """A named set of ingredient RxCUIs with the citation its membership comes from."""

    id: str
    name: str
    members: frozenset[str]
    source: str
    note: str | None = None


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


class KnowledgeBase:
    """Immutable, indexed view of the knowledge files. Build it with `load_knowledge()`.

    All lookups are dictionary hits or small set operations; indexes are built once at load.
    """

    def __init__(
        self,
        *,
        drugs: Mapping[str, Drug],
        classes: Mapping[str, DrugClass],
        rules: Sequence[Interaction],
        rule_sides: Mapping[str, tuple[frozenset[str], frozenset[str]]],
        cross_reactivity: Sequence[CrossReactivity],
        allergens: Mapping[tuple[str, str], Allergen],
        allergen_verified: Mapping[tuple[str, str], bool],
        name_terms: Mapping[str, tuple[frozenset[str], str]],
        versions: Mapping[str, str],
    ) -> None:
        self._drugs = dict(drugs)
        self._classes = dict(classes)
        self.rules: tuple[Interaction, ...] = tuple(rules)
        self._rule_sides = dict(rule_sides)
        self.cross_reactivity: tuple[CrossReactivity, ...] = tuple(cross_reactivity)
        self._allergens = dict(allergens)
        self._allergen_verified = dict(allergen_verified)
        self._name_terms = dict(name_terms)
        self.versions: dict[str, str] = dict(versions)

        by_ingredient: dict[str, set[str]] = {}
        for drug_class in self._classes.values():
            for member in drug_class.members:
                by_ingredient.setdefault(member, set()).add(drug_class.id)
        self._ingredient_classes = {k: frozenset(v) for k, v in by_ingredient.items()}

        rules_by_ingredient: dict[str, list[int]] = {}
        for index, rule in enumerate(self.rules):
            side_a, side_b = self._rule_sides[rule.id]
            for ingredient in side_a | side_b:
                rules_by_ingredient.setdefault(ingredient, []).append(index)
        self._rules_by_ingredient = {k: tuple(v) for k, v in rules_by_ingredient.items()}

        # One alternation, longest term first, bounded by non-letters: "amoxicillin500mg"
        # still names amoxicillin, "cipro" does not match inside "ciprofloxacin".
        terms = sorted(self._name_terms, key=lambda t: (-len(t), t))
        self._name_pattern: re.Pattern[str] | None = (
            re.compile(r"(?<![a-z])(?:" + "|".join(re.escape(t) for t in terms) + r")(?![a-z])")
            if terms
            else None
        )

    # ------------------------------------------------------------------ drugs and classes
    def drug(self, system: str | None, code: str) -> Drug | None:
        """The drug an RxNorm coding names, or None (unknown code or not an RxNorm coding).

        None, "" and "rxnorm" count as RxNorm so callers holding bare codes need no special
        case; any other system is not a drug code here.
        """
        if not _is_rxnorm(system):
            return None
        return self._drugs.get(code.strip())

    def drug_class(self, class_id: str) -> DrugClass | None:
        """A class by id, for its name and citation when explaining an alert."""
        return self._classes.get(class_id)

    @property
    def drugs(self) -> Mapping[str, Drug]:
        """Every known drug by RxCUI (a read-only view: coverage notes, tests)."""
        return MappingProxyType(self._drugs)

    @property
    def classes(self) -> Mapping[str, DrugClass]:
        """Every class by id (a read-only view)."""
        return MappingProxyType(self._classes)

    def classes_of(self, ingredient: str) -> frozenset[str]:
        """Ids of the classes an ingredient RxCUI belongs to (empty when none or unknown)."""
        return self._ingredient_classes.get(ingredient, frozenset())

    # ------------------------------------------------------------------ interactions
    def rule_ingredients(self, rule: Interaction) -> tuple[frozenset[str], frozenset[str]]:
        """Both sides of a rule expanded to ingredient RxCUIs (classes resolved)."""
        return self._rule_sides[rule.id]

    def interactions(self, drug_a: Drug, drug_b: Drug) -> list[Interaction]:
        """Rules that fire for the pair, in file order, each once, superseded ones dropped.

        Symmetric: `interactions(a, b)` and `interactions(b, a)` return the same rules.
        """
        ingredients_a, ingredients_b = drug_a.ingredients, drug_b.ingredients
        candidates: set[int] = set()
        for ingredient in ingredients_a | ingredients_b:
            candidates.update(self._rules_by_ingredient.get(ingredient, ()))
        fired: list[Interaction] = []
        for index in sorted(candidates):
            rule = self.rules[index]
            side_a, side_b = self._rule_sides[rule.id]
            if _pair_fires(ingredients_a & side_a, ingredients_b & side_b) or _pair_fires(
                ingredients_a & side_b, ingredients_b & side_a
            ):
                fired.append(rule)
        superseded = {rule_id for rule in fired for rule_id in rule.supersedes}
        return [rule for rule in fired if rule.id not in superseded]

    # ------------------------------------------------------------------ allergies
    def allergen(self, system: str | None, code: str) -> Allergen | None:
        """What an allergy coding is to, or None when the code is unknown.

        allergy_codes.json decides first: SNOMED CT substances, and the few RxNorm codes that
        records use to mean a whole class (RxNorm 7980 penicillin G is how the seed, and many
        records, write "penicillin allergy"). Any other RxNorm code (ingredient or product)
        resolves through the drug table at ingredient level.
        """
        code = code.strip()
        listed = self._allergens.get((_canonical_system(system), code))
        if listed is not None or not _is_rxnorm(system):
            return listed
        drug = self._drugs.get(code)
        if drug is None:
            return None
        return Allergen(ingredients=drug.ingredients, classes=frozenset(), label=drug.name)

    def cross_reactions(
        self, allergen_classes: Iterable[str], drug_classes: Iterable[str]
    ) -> list[CrossReactivity]:
        """Cross-reactivity entries from any allergen class to any of the drug's classes."""
        allergic = frozenset(allergen_classes)
        ordered = frozenset(drug_classes)
        return [
            entry
            for entry in self.cross_reactivity
            if entry.from_class in allergic and entry.to_class in ordered
        ]

    # ------------------------------------------------------------------ code/display check
    def display_names_other_drug(self, drug: Drug, display: str) -> str | None:
        """The name of another known drug that `display` names, or None.

        Word match, case-insensitive, over ingredient names and synonyms (brand names). A
        name whose ingredients are all among this drug's ingredients is this drug's own name
        ("Oxycodone ER 10 mg" on 1049502); a display naming no known drug is not a mismatch.
        """
        if not display or self._name_pattern is None:
            return None
        for match in self._name_pattern.finditer(_normalize(display)):
            ingredients, name = self._name_terms[match.group(0)]
            if not ingredients <= drug.ingredients:
                return name
        return None

    # ------------------------------------------------------------------ reporting
    def coverage(self) -> dict[str, Any]:
        """Counts and the unverified codes, for the coverage note and start-up logging."""
        ingredients = [d for d in self._drugs.values() if d.tty == "IN"]
        return {
            "drugs": len(self._drugs),
            "ingredients": len(ingredients),
            "products": len(self._drugs) - len(ingredients),
            "classes": len(self._classes),
            "rules": len(self.rules),
            "onc_high_priority_rules": sum(1 for r in self.rules if r.onc_high_priority),
            "cross_reactivity": len(self.cross_reactivity),
            "allergy_codes": len(self._allergens),
            "unverified_drug_codes": sorted(
                (d.rxcui for d in self._drugs.values() if not d.verified), key=int
            ),
            "unverified_allergy_codes": sorted(
                code for (_, code), ok in self._allergen_verified.items() if not ok
            ),
        }


# ---------------------------------------------------------------------- loading
def load_knowledge(directory: Path | None = None) -> KnowledgeBase:
    """Load, validate and cross-check the knowledge files; raise `KnowledgeError` on any problem.

    `directory` defaults to the knowledge shipped with the package (tests point it at edited
    copies). The schemas always come from the package.
    """
    base = Path(directory) if directory is not None else DEFAULT_DIRECTORY
    documents: dict[str, tuple[str, dict[str, Any]]] = {}
    for name in FILES:
        path = base / f"{name}.json"
        label = _display_path(path)
        documents[name] = (label, _load_document(path, label, _schema_validator(name)))
    return _Builder(documents).build()


def _schema_validator(name: str) -> Draft202012Validator:
    path = SCHEMA_DIRECTORY / f"{name}.schema.json"
    label = _display_path(path)
    schema = _parse_json(path, label)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise KnowledgeError(label, _json_path(exc.absolute_path), exc.message) from exc
    return Draft202012Validator(schema)


def _load_document(path: Path, label: str, validator: Draft202012Validator) -> dict[str, Any]:
    data = _parse_json(path, label)
    errors = list(validator.iter_errors(data))
    if errors:
        error = best_match(errors)
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise KnowledgeError(label, _json_path(error.absolute_path), error.message + more)
    if not isinstance(data, dict):  # pragma: no cover - every schema requires an object
        raise KnowledgeError(label, "$", "expected a JSON object")
    return data


def _parse_json(path: Path, label: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise KnowledgeError(label, "$", "file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise KnowledgeError(label, "$", f"cannot read file: {exc}") from exc
    try:
        data = json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise KnowledgeError(
            label, "$", f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except ValueError as exc:
        raise KnowledgeError(label, "$", f"malformed JSON: {exc}") from exc
    duplicate = _first_duplicate_key(data)
    if duplicate is not None:
        where, key = duplicate
        raise KnowledgeError(label, where, f"duplicate key {key!r} (a later value would hide it)")
    return data


class _DuplicateKeys(dict[str, Any]):
    """A parsed JSON object that had repeated keys (json would keep only the last silently)."""

    duplicates: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    duplicates: list[str] = []
    for key, value in pairs:
        if key in result:
            duplicates.append(key)
        result[key] = value
    if duplicates:
        marked = _DuplicateKeys(result)
        marked.duplicates = duplicates
        return marked
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _first_duplicate_key(data: Any) -> tuple[str, str] | None:
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _DuplicateKeys):
            return _json_path(path), node.duplicates[0]
        if isinstance(node, dict):
            stack.extend((value, (*path, key)) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, (*path, index)) for index, value in enumerate(node))
    return None


class _Builder:
    """Cross-checks the validated documents and assembles the indexed `KnowledgeBase`."""

    def __init__(self, documents: Mapping[str, tuple[str, dict[str, Any]]]) -> None:
        self.documents = documents

    def fail(self, name: str, path: Sequence[str | int], problem: str) -> KnowledgeError:
        return KnowledgeError(self.documents[name][0], _json_path(path), problem)

    def build(self) -> KnowledgeBase:
        raw_drugs = self.documents["drugs"][1]["drugs"]
        self.check_drugs(raw_drugs)
        classes, cross = self.check_classes(raw_drugs)
        ingredient_classes: dict[str, set[str]] = {}
        for drug_class in classes.values():
            for member in drug_class.members:
                ingredient_classes.setdefault(member, set()).add(drug_class.id)
        drugs = {
            code: Drug(
                rxcui=code,
                name=entry["name"],
                tty=entry["tty"],
                ingredients=frozenset(entry["ingredients"]),
                synonyms=tuple(entry["synonyms"]),
                classes=frozenset().union(
                    *(ingredient_classes.get(i, set()) for i in entry["ingredients"])
                ),
                verified=entry.get("verified", True),
            )
            for code, entry in raw_drugs.items()
        }
        rules, sides = self.check_rules(raw_drugs, classes)
        allergens, verified = self.check_allergy_codes(raw_drugs, classes)
        return KnowledgeBase(
            drugs=drugs,
            classes=classes,
            rules=rules,
            rule_sides=sides,
            cross_reactivity=cross,
            allergens=allergens,
            allergen_verified=verified,
            name_terms=self.name_terms(raw_drugs),
            versions={name: doc["version"] for name, (_, doc) in self.documents.items()},
        )

    # -- drugs.json
    def check_drugs(self, raw: Mapping[str, Any]) -> None:
        sources = self.documents["drugs"][1]["sources"]
        for code, entry in raw.items():
            here: tuple[str | int, ...] = ("drugs", code)
            if entry["source"] not in sources:
                raise self.fail(
                    "drugs",
                    (*here, "source"),
                    f"unknown source {entry['source']!r} (not a key of $.sources)",
                )
            ingredients = entry["ingredients"]
            if entry["tty"] == "IN":
                if ingredients != [code]:
                    raise self.fail(
                        "drugs",
                        (*here, "ingredients"),
                        f"an ingredient (tty IN) must list exactly itself: [{code!r}]",
                    )
                continue
            for index, ingredient in enumerate(ingredients):
                where = (*here, "ingredients", index)
                if ingredient not in raw:
                    raise self.fail("drugs", where, f"unknown ingredient {ingredient!r}")
                if raw[ingredient]["tty"] != "IN":
                    raise self.fail("drugs", where, f"{ingredient!r} is not an ingredient (tty IN)")

    def name_terms(self, raw: Mapping[str, Any]) -> dict[str, tuple[frozenset[str], str]]:
        """Normalized name -> (ingredients it names, name to report); ambiguity is an error."""
        terms: dict[str, tuple[frozenset[str], str]] = {}
        owners: dict[str, str] = {}
        for code, entry in raw.items():
            ingredients = frozenset(entry["ingredients"])
            names: list[tuple[tuple[str | int, ...], str]] = [
                (("drugs", code, "synonyms", i), s) for i, s in enumerate(entry["synonyms"])
            ]
            if entry["tty"] == "IN":
                names.insert(0, (("drugs", code, "name"), entry["name"]))
            for where, text in names:
                term = _normalize(text)
                if len(term) < 3:
                    raise self.fail("drugs", where, f"name {text!r} is too short to match safely")
                reported = entry["name"] if entry["tty"] == "IN" else text
                known = terms.get(term)
                if known is not None and known[0] != ingredients:
                    raise self.fail(
                        "drugs",
                        where,
                        f"name {text!r} already names a different drug ({owners[term]})",
                    )
                terms.setdefault(term, (ingredients, reported))
                owners.setdefault(term, code)
        return terms

    # -- classes.json
    def check_classes(
        self, raw_drugs: Mapping[str, Any]
    ) -> tuple[dict[str, DrugClass], list[CrossReactivity]]:
        document = self.documents["classes"][1]
        classes: dict[str, DrugClass] = {}
        for index, entry in enumerate(document["classes"]):
            here: tuple[str | int, ...] = ("classes", index)
            if entry["id"] in classes:
                raise self.fail("classes", (*here, "id"), f"duplicate class id {entry['id']!r}")
            for position, member in enumerate(entry["members"]):
                self.require_ingredient("classes", (*here, "members", position), member, raw_drugs)
            classes[entry["id"]] = DrugClass(
                id=entry["id"],
                name=entry["name"],
                members=frozenset(entry["members"]),
                source=entry["source"],
                note=entry.get("note"),
            )
        cross: list[CrossReactivity] = []
        seen: set[tuple[str, str]] = set()
        for index, entry in enumerate(document["cross_reactivity"]):
            here = ("cross_reactivity", index)
            for key in ("from_class", "to_class"):
                if entry[key] not in classes:
                    raise self.fail("classes", (*here, key), f"unknown class {entry[key]!r}")
            pair = (entry["from_class"], entry["to_class"])
            if pair[0] == pair[1]:
                raise self.fail(
                    "classes", (*here, "to_class"), "a class cannot cross-react with itself"
                )
            if pair in seen:
                raise self.fail(
                    "classes", here, f"duplicate cross-reactivity {pair[0]} -> {pair[1]}"
                )
            seen.add(pair)
            cross.append(CrossReactivity(pair[0], pair[1], entry["note"], entry["source"]))
        return classes, cross

    def require_ingredient(
        self, name: str, where: Sequence[str | int], code: str, raw_drugs: Mapping[str, Any]
    ) -> None:
        if code not in raw_drugs:
            raise self.fail(name, where, f"unknown ingredient {code!r} (not in drugs.json)")
        if raw_drugs[code]["tty"] != "IN":
            raise self.fail(name, where, f"{code!r} is not an ingredient (tty IN) in drugs.json")

    # -- interactions.json
    def check_rules(
        self, raw_drugs: Mapping[str, Any], classes: Mapping[str, DrugClass]
    ) -> tuple[list[Interaction], dict[str, tuple[frozenset[str], frozenset[str]]]]:
        raw_rules = self.documents["interactions"][1]["rules"]
        ids = [rule["id"] for rule in raw_rules]
        rules: list[Interaction] = []
        sides: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        onc_rows: dict[int, str] = {}
        for index, entry in enumerate(raw_rules):
            here: tuple[str | int, ...] = ("rules", index)
            if entry["id"] in sides:
                raise self.fail("interactions", (*here, "id"), f"duplicate rule id {entry['id']!r}")
            expanded = []
            for side in ("a", "b"):
                members: set[str] = set()
                for position, code in enumerate(entry[side].get("ingredients", [])):
                    where = (*here, side, "ingredients", position)
                    self.require_ingredient("interactions", where, code, raw_drugs)
                    members.add(code)
                for position, class_id in enumerate(entry[side].get("classes", [])):
                    if class_id not in classes:
                        raise self.fail(
                            "interactions",
                            (*here, side, "classes", position),
                            f"unknown class {class_id!r} (not in classes.json)",
                        )
                    members |= classes[class_id].members
                expanded.append(frozenset(members))
            if not _pair_fires(expanded[0], expanded[1]):
                raise self.fail(
                    "interactions",
                    here,
                    "the rule can never fire: no pair of different ingredients",
                )
            onc = entry["onc_high_priority"]
            if onc and entry["severity"] != "contraindicated":
                raise self.fail(
                    "interactions",
                    (*here, "severity"),
                    "an ONC high-priority rule must be 'contraindicated' (Phansalkar 2012)",
                )
            row = entry.get("onc_row")
            if row is not None:
                if row in onc_rows:
                    raise self.fail(
                        "interactions",
                        (*here, "onc_row"),
                        f"ONC row {row} is already rule {onc_rows[row]!r}",
                    )
                onc_rows[row] = entry["id"]
            for position, other in enumerate(entry.get("supersedes", [])):
                if other not in ids or other == entry["id"]:
                    problem = (
                        "a rule cannot supersede itself"
                        if other == entry["id"]
                        else f"unknown rule id {other!r}"
                    )
                    raise self.fail("interactions", (*here, "supersedes", position), problem)
            sides[entry["id"]] = (expanded[0], expanded[1])
            rules.append(
                Interaction(
                    id=entry["id"],
                    severity=entry["severity"],
                    onc_high_priority=onc,
                    message=entry["message"],
                    source=entry["source"],
                    a_ingredients=frozenset(entry["a"].get("ingredients", [])),
                    a_classes=frozenset(entry["a"].get("classes", [])),
                    b_ingredients=frozenset(entry["b"].get("ingredients", [])),
                    b_classes=frozenset(entry["b"].get("classes", [])),
                    supersedes=tuple(entry.get("supersedes", [])),
                    onc_row=row,
                )
            )
        return rules, sides

    # -- allergy_codes.json
    def check_allergy_codes(
        self, raw_drugs: Mapping[str, Any], classes: Mapping[str, DrugClass]
    ) -> tuple[dict[tuple[str, str], Allergen], dict[tuple[str, str], bool]]:
        document = self.documents["allergy_codes"][1]
        sources = document["sources"]
        allergens: dict[tuple[str, str], Allergen] = {}
        verified: dict[tuple[str, str], bool] = {}
        for system, codes in document["systems"].items():
            canonical = _canonical_system(system)
            for code, entry in codes.items():
                here: tuple[str | int, ...] = ("systems", system, code)
                if canonical == RXNORM_SYSTEM:
                    # An RxNorm entry may only widen the code to classes: its ingredients must
                    # stay those of drugs.json, so the two files cannot disagree on what it is.
                    if system != RXNORM_SYSTEM:
                        raise self.fail(
                            "allergy_codes", ("systems", system), f"write RxNorm as {RXNORM_SYSTEM}"
                        )
                    known = raw_drugs.get(code)
                    if known is None:
                        raise self.fail(
                            "allergy_codes", here, f"RxNorm {code} is not in drugs.json"
                        )
                    if sorted(entry.get("ingredients", [])) != sorted(known["ingredients"]):
                        raise self.fail(
                            "allergy_codes",
                            (*here, "ingredients"),
                            f"must equal the ingredients of RxNorm {code} in drugs.json "
                            f"({known['ingredients']})",
                        )
                if entry["source"] not in sources:
                    raise self.fail(
                        "allergy_codes",
                        (*here, "source"),
                        f"unknown source {entry['source']!r} (not a key of $.sources)",
                    )
                for position, ingredient in enumerate(entry.get("ingredients", [])):
                    self.require_ingredient(
                        "allergy_codes", (*here, "ingredients", position), ingredient, raw_drugs
                    )
                for position, class_id in enumerate(entry.get("classes", [])):
                    if class_id not in classes:
                        raise self.fail(
                            "allergy_codes",
                            (*here, "classes", position),
                            f"unknown class {class_id!r} (not in classes.json)",
                        )
                key = (canonical, code)
                allergens[key] = Allergen(
                    ingredients=frozenset(entry.get("ingredients", [])),
                    classes=frozenset(entry.get("classes", [])),
                    label=entry["label"],
                )
                verified[key] = entry.get("verified", True)
        return allergens, verified


# ---------------------------------------------------------------------- helpers
def _pair_fires(left: frozenset[str], right: frozenset[str]) -> bool:
    """True when some ingredient of `left` and a *different* one of `right` exist."""
    return bool(left) and bool(right) and not (len(left) == 1 and left == right)


def _is_rxnorm(system: str | None) -> bool:
    return system is None or system.strip().rstrip("/").lower() in _RXNORM_ALIASES


def _canonical_system(system: str | None) -> str:
    if _is_rxnorm(system):
        return RXNORM_SYSTEM
    assert system is not None
    cleaned = system.strip().rstrip("/")
    return SNOMED_SYSTEM if cleaned.lower() in _SNOMED_ALIASES else cleaned


def _normalize(text: str) -> str:
    """Lower-case, punctuation to single spaces: "St. John's Wort" -> "st john s wort"."""
    return _NON_ALNUM.sub(" ", text.casefold()).strip()


def _json_path(parts: Iterable[str | int]) -> str:
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


def _display_path(path: Path) -> str:
    """The path as an operator would type it: relative to the working directory if inside it."""
    try:
        return path.resolve().relative_to(Path(os.getcwd()).resolve()).as_posix()
    except ValueError:
        return str(path)
