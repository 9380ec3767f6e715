"""Reading dose, frequency and route from an R4 MedicationRequest, never guessing.

`interval_days` reads `Timing.repeat` (frequency per period) first, then the R4 timing
abbreviation code, then — defensively — the legacy frequency text the /api/v1 mapping keeps in
`Timing.code.text` (OD, BD, TDS, QDS, NOCTE, QnH, and WEEKLY/QW/QnD/QnW, which the legacy
vocabulary is gaining). `dose_mg` converts the dose to milligrams of one ingredient: mass units
directly, tablets/capsules through the product strength, mL through a per-mL strength. Anything
else is `None` with the unit, so the rule can say the dose could not be checked.
See: https://hl7.org/fhir/R4/datatypes.html#Timing, https://hl7.org/fhir/R4/dosage.html
"""

from __future__ import annotations

import re
from typing import Any, Final

from app.cds.kb.model import Drug

_UNIT_DAYS: Final = {
    "s": 1 / 86400,
    "min": 1 / 1440,
    "h": 1 / 24,
    "d": 1.0,
    "wk": 7.0,
    "mo": 30.0,
    "a": 365.0,
}
_CODE_DAYS: Final = {
    "QD": 1.0,
    "AM": 1.0,
    "PM": 1.0,
    "BED": 1.0,
    "BID": 0.5,
    "TID": 1 / 3,
    "QID": 0.25,
    "QOD": 2.0,
    "WK": 7.0,
    "OD": 1.0,
    "BD": 0.5,
    "TDS": 1 / 3,
    "QDS": 0.25,
    "NOCTE": 1.0,
    "WEEKLY": 7.0,
    "ONCE WEEKLY": 7.0,
    "QW": 7.0,
    "QWK": 7.0,
}
_EVERY = re.compile(r"^Q(?P<n>\d{1,3})(?P<unit>H|D|W|WK)$")
_MASS_MG: Final = {"mg": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001, "µg": 0.001, "kg": 1e6}
_COUNT_UNITS: Final = frozenset(
    {
        "tab",
        "tabs",
        "tablet",
        "tablets",
        "{tbl}",
        "{tablet}",
        "cap",
        "caps",
        "capsule",
        "capsules",
        "{cap}",
        "{capsule}",
        "1",
        "{each}",
        "each",
        "unit dose",
    }
)
_STRENGTH = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>MG|G|MCG)(?P<per>/ML)?\s*$", re.I)


def dosage(order: dict[str, Any]) -> dict[str, Any] | None:
    """The first Dosage of the order (the one the legacy face writes)."""
    for item in order.get("dosageInstruction") or ():
        if isinstance(item, dict):
            return item
    return None


def interval_days(timing: Any) -> float | None:
    """Days between doses, or None when the timing does not say (PRN, STAT, absent)."""
    if not isinstance(timing, dict):
        return None
    repeat = timing.get("repeat")
    if isinstance(repeat, dict):
        frequency = repeat.get("frequencyMax") or repeat.get("frequency") or 1
        period, unit = repeat.get("period"), repeat.get("periodUnit")
        if (
            isinstance(period, int | float)
            and period > 0
            and isinstance(unit, str)
            and unit in _UNIT_DAYS
            and isinstance(frequency, int | float)
            and frequency > 0
        ):
            return float(period) * _UNIT_DAYS[unit] / float(frequency)
    concept = timing.get("code")
    if not isinstance(concept, dict):
        return None
    words = [str(c.get("code") or "") for c in concept.get("coding") or () if isinstance(c, dict)]
    words.append(str(concept.get("text") or ""))
    for word in words:
        days = _word_days(word.strip().upper())
        if days is not None:
            return days
    return None


def _word_days(word: str) -> float | None:
    if word in _CODE_DAYS:
        return _CODE_DAYS[word]
    m = _EVERY.match(word)
    if m is None or int(m.group("n")) == 0:
        return None
    n = int(m.group("n"))
    return {"H": n / 24, "D": float(n), "W": 7.0 * n, "WK": 7.0 * n}[m.group("unit")]


def routes(order: dict[str, Any]) -> frozenset[str]:
    """SNOMED CT route codes the order's dosages name (empty when none is coded)."""
    found: set[str] = set()
    for item in order.get("dosageInstruction") or ():
        route = item.get("route") if isinstance(item, dict) else None
        for coding in (route or {}).get("coding") or ():
            if isinstance(coding, dict) and coding.get("code"):
                found.add(str(coding["code"]))
    return frozenset(found)


def _quantity(item: dict[str, Any]) -> dict[str, Any] | None:
    for rate in item.get("doseAndRate") or ():
        if not isinstance(rate, dict):
            continue
        if isinstance(rate.get("doseQuantity"), dict):
            return dict(rate["doseQuantity"])
        high = (rate.get("doseRange") or {}).get("high")
        if isinstance(high, dict):
            return dict(high)
    return None


def dose_mg(order: dict[str, Any], drug: Drug, ingredient: str) -> tuple[float | None, str]:
    """(mg of `ingredient` in one dose, the unit as written); mg is None when there is no dose
    or it cannot be converted (the unit says which)."""
    item = dosage(order)
    quantity = _quantity(item) if item else None
    if quantity is None or not isinstance(quantity.get("value"), int | float):
        return None, ""
    value = float(quantity["value"])
    unit = str(quantity.get("code") or quantity.get("unit") or "").strip()
    lowered = unit.lower()
    if lowered in _MASS_MG:
        if len(drug.ingredients) > 1:
            return None, unit  # mg of a combination product names no one ingredient
        return value * _MASS_MG[lowered], unit
    strength = _STRENGTH.match(drug.strengths.get(ingredient, ""))
    if strength is None:
        return None, unit or "no unit"
    per_unit = float(strength.group("num")) * _MASS_MG[strength.group("unit").lower()]
    if strength.group("per") and lowered in ("ml", "milliliter", "millilitre"):
        return value * per_unit, unit
    if not strength.group("per") and lowered in _COUNT_UNITS:
        return value * per_unit, unit
    return None, unit or "no unit"
