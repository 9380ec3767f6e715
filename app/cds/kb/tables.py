"""Cross-checks and assembly of the product, dosing and duplicate tables.

Products come from `products.json` and then from overlays (the RxNorm import in the instance
folder), a later table replacing an earlier entry for the same RxCUI: a hospital's current
release is more authoritative than the shipped table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.cds.kb.model import (
    AgeRule,
    Dosing,
    DrugClass,
    KnowledgeError,
    LabWindows,
    MaxDailyDose,
    MinInterval,
    TherapyGroup,
    json_path,
)

Labelled = tuple[str, dict[str, Any]]
#: A product entry and the label of the file it came from.
Sourced = tuple[dict[str, Any], str]
IMPORT_SOURCE = "import"


def _fail(label: str, path: Sequence[str | int], problem: str) -> KnowledgeError:
    return KnowledgeError(label, json_path(path), problem)


def imported_ingredient(code: str, name: str) -> dict[str, Any]:
    """A drugs.json-shaped entry for an ingredient only an import overlay names."""
    return {
        "name": name,
        "tty": "IN",
        "ingredients": [code],
        "synonyms": [],
        "source": IMPORT_SOURCE,
    }


def products(
    shipped: Labelled, overlays: Sequence[Labelled]
) -> tuple[dict[str, str], dict[str, Sourced]]:
    """(new ingredient names, products by RxCUI with the label of the file they came from)."""
    ingredients: dict[str, str] = {}
    found: dict[str, Sourced] = {}
    for label, document in (shipped, *overlays):
        sources = document["sources"]
        for code, name in document.get("ingredients", {}).items():
            ingredients.setdefault(code, name)
        for code, entry in document["products"].items():
            if entry["source"] not in sources:
                raise _fail(
                    label,
                    ("products", code, "source"),
                    f"unknown source {entry['source']!r} (not a key of $.sources)",
                )
            found[code] = (entry, label)
    return ingredients, found


def check_products(found: Mapping[str, Sourced], raw_drugs: Mapping[str, Any]) -> None:
    """Every product's ingredients are ingredients (tty IN) and it is not also an ingredient."""
    for code, (entry, label) in found.items():
        here = ("products", code)
        if code in raw_drugs:
            raise _fail(label, here, f"{code} is already a drugs.json entry")
        for ingredient in entry["ingredients"]:
            known = raw_drugs.get(ingredient)
            if known is None or known["tty"] != "IN":
                raise _fail(
                    label,
                    (*here, "ingredients", ingredient),
                    f"{ingredient!r} is not an ingredient (tty IN) in drugs.json",
                )


def _require(
    label: str, where: Sequence[str | int], codes: Sequence[str], raw: Mapping[str, Any]
) -> None:
    for position, code in enumerate(codes):
        if code not in raw or raw[code]["tty"] != "IN":
            raise _fail(label, (*where, position), f"{code!r} is not an ingredient in drugs.json")


def dosing(
    document: Labelled, raw_drugs: Mapping[str, Any], classes: Mapping[str, DrugClass]
) -> Dosing:
    label, data = document
    max_daily: dict[str, MaxDailyDose] = {}
    for code, entry in data["max_daily_dose"].items():
        _require(label, ("max_daily_dose",), [code], raw_drugs)
        max_daily[code] = MaxDailyDose(
            code,
            float(entry["mg"]),
            entry["level"],
            entry["source"],
            frozenset(entry.get("routes", [])),
        )
    intervals = []
    for index, entry in enumerate(data["min_interval"]):
        _require(label, ("min_interval", index, "ingredients"), entry["ingredients"], raw_drugs)
        intervals.append(
            MinInterval(
                id=entry["id"],
                ingredients=frozenset(entry["ingredients"]),
                days=float(entry["days"]),
                level=entry["level"],
                message=entry["message"],
                source=entry["source"],
                routes=frozenset(entry.get("routes", [])),
            )
        )
    ages = []
    for index, entry in enumerate(data["age"]):
        where = ("age", index)
        _require(label, (*where, "ingredients"), entry.get("ingredients", []), raw_drugs)
        members = set(entry.get("ingredients", []))
        for position, class_id in enumerate(entry.get("classes", [])):
            if class_id not in classes:
                raise _fail(label, (*where, "classes", position), f"unknown class {class_id!r}")
            members |= classes[class_id].members
        ages.append(
            AgeRule(
                id=entry["id"],
                ingredients=frozenset(members),
                level=entry["level"],
                message=entry["message"],
                source=entry["source"],
                under_years=entry.get("under_years"),
                from_years=entry.get("from_years"),
            )
        )
    return Dosing(max_daily, tuple(intervals), tuple(ages))


def duplicates(
    document: Labelled, classes: Mapping[str, DrugClass]
) -> tuple[list[TherapyGroup], LabWindows]:
    label, data = document
    groups: list[TherapyGroup] = []
    seen: set[str] = set()
    for index, entry in enumerate(data["therapy_groups"]):
        if entry["id"] in seen:
            raise _fail(label, ("therapy_groups", index, "id"), f"duplicate id {entry['id']!r}")
        seen.add(entry["id"])
        for position, class_id in enumerate(entry["classes"]):
            if class_id not in classes:
                raise _fail(
                    label,
                    ("therapy_groups", index, "classes", position),
                    f"unknown class {class_id!r} (not in classes.json)",
                )
        groups.append(
            TherapyGroup(entry["id"], entry["name"], frozenset(entry["classes"]), entry["source"])
        )
    windows = data["lab_windows"]
    codes = windows["codes"]
    return groups, LabWindows(
        default_hours=float(windows["default_hours"]),
        source=windows["source"],
        hours={code: float(entry["hours"]) for code, entry in codes.items()},
        names={code: entry["name"] for code, entry in codes.items()},
    )
