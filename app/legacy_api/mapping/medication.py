"""`orderType: medication` ↔ MedicationRequest (DESIGN §1, §6).

| legacy | MedicationRequest |
|---|---|
| `medicationDetail.medicationCode` (else `orderCode`) | `medicationCodeableConcept` |
| `orderCode` when it differs from the medication code | extension `…legacy:orderCode` |
| `dose`, `doseUnit` | `dosageInstruction[0].doseAndRate[0].doseQuantity` (UCUM when known) |
| `route` | `dosageInstruction[0].route` (text, + SNOMED CT route code when known) |
| `frequency` | `dosageInstruction[0].timing` (see `common.parse_frequency`) |
| `prn` (or a PRN frequency) | `dosageInstruction[0].asNeededBoolean` |
| `durationDays` | `dispenseRequest.expectedSupplyDuration` (UCUM `d`) |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.legacy_api.mapping.common import (
    JSON,
    SNOMED,
    UCUM,
    add_ext,
    ext_value,
    first_coding,
    same_code,
    text_of,
    to_concept,
)
from app.legacy_api.mapping.frequency import frequency_of, parse_frequency

DETAIL = "medicationDetail"

#: Legacy route text (lower case) → SNOMED CT route of administration (R4 route-codes).
ROUTES: dict[str, tuple[str, str]] = {}
for _names, _code, _display in (
    (("oral", "po", "by mouth", "orally", "per os"), "26643006", "Oral route"),
    (("intravenous", "iv", "i.v."), "47625008", "Intravenous route"),
    (("intramuscular", "im", "i.m."), "78421000", "Intramuscular route"),
    (("subcutaneous", "sc", "sq", "subcut", "s.c."), "34206005", "Subcutaneous route"),
    (("topical",), "6064005", "Topical route"),
    (("sublingual", "sl"), "37839007", "Sublingual route"),
    (("buccal",), "54471007", "Buccal route"),
    (("rectal", "pr", "per rectum"), "37161004", "Per rectum"),
    (("vaginal", "pv", "per vagina"), "16857009", "Per vagina"),
    (("nasal", "intranasal"), "46713006", "Nasal route"),
    (("ophthalmic",), "54485002", "Ophthalmic route"),
    (("otic",), "10547007", "Otic route"),
    (("transdermal",), "45890007", "Transdermal route"),
    (("intrathecal",), "72607000", "Intrathecal route"),
    (("inhalation", "inhaled", "inh"), "447694001", "Respiratory tract route"),
):
    for _name in _names:
        ROUTES[_name] = (_code, _display)

#: Legacy dose unit → UCUM code (only units whose UCUM form is unambiguous).
UCUM_UNITS: dict[str, str] = {
    "mg": "mg",
    "g": "g",
    "gram": "g",
    "grams": "g",
    "kg": "kg",
    "mcg": "ug",
    "ug": "ug",
    "µg": "ug",
    "microgram": "ug",
    "micrograms": "ug",
    "ng": "ng",
    "ml": "mL",
    "l": "L",
    "mmol": "mmol",
    "meq": "meq",
    "iu": "[iU]",
    "mg/kg": "mg/kg",
}


def route_concept(route: str) -> JSON:
    concept: JSON = {"text": route}
    known = ROUTES.get(route.strip().lower())
    if known is not None:
        concept["coding"] = [{"system": SNOMED, "code": known[0], "display": known[1]}]
    return concept


def dose_quantity(dose: Any, unit: str | None) -> JSON:
    quantity: JSON = {"value": dose}
    if unit is not None:
        quantity["unit"] = unit
        code = UCUM_UNITS.get(unit.strip().lower())
        if code is not None:
            quantity["system"] = UCUM
            quantity["code"] = code
    return quantity


def dosage(detail: Mapping[str, Any]) -> JSON | None:
    """medicationDetail → one R4 Dosage (None when the detail says nothing about dosing)."""
    out: JSON = {}
    as_needed: bool | None = detail.get("prn")
    if detail.get("frequency") is not None:
        freq = parse_frequency(str(detail["frequency"]))
        out["timing"] = freq.timing
        if freq.as_needed and as_needed is None:
            as_needed = True
    if as_needed is not None:
        out["asNeededBoolean"] = as_needed
    if detail.get("route") is not None:
        out["route"] = route_concept(str(detail["route"]))
    if detail.get("dose") is not None:
        out["doseAndRate"] = [
            {"doseQuantity": dose_quantity(detail["dose"], detail.get("doseUnit"))}
        ]
    elif detail.get("doseUnit") is not None:
        # A unit without an amount: nowhere to put it in Dosage, so keep it verbatim.
        add_ext(out, f"{DETAIL}.doseUnit", detail["doseUnit"])
    return out or None


def detail_of_dosage(dose: Any) -> JSON:
    """One R4 Dosage → the dosing fields of medicationDetail."""
    out: JSON = {}
    if not isinstance(dose, dict):
        return out
    quantity = next(
        (
            d["doseQuantity"]
            for d in dose.get("doseAndRate") or ()
            if isinstance(d, dict) and isinstance(d.get("doseQuantity"), dict)
        ),
        None,
    )
    if quantity is not None:
        if quantity.get("value") is not None:
            out["dose"] = quantity["value"]
        if quantity.get("unit") is not None or quantity.get("code") is not None:
            out["doseUnit"] = quantity.get("unit") or quantity.get("code")
    else:
        unit = ext_value(dose, f"{DETAIL}.doseUnit")
        if unit is not None:
            out["doseUnit"] = unit
    route = text_of(dose.get("route"))
    if route is not None:
        out["route"] = route
    frequency = frequency_of(dose.get("timing"))
    if frequency is not None:
        out["frequency"] = frequency
    if isinstance(dose.get("asNeededBoolean"), bool):
        out["prn"] = dose["asNeededBoolean"]
    return out


def to_fhir(payload: Mapping[str, Any], base: JSON) -> JSON:
    """Complete `base` (the elements every order type shares) as a MedicationRequest."""
    detail: Mapping[str, Any] = payload.get(DETAIL) or {}
    order_code = payload["orderCode"]
    med_code = detail.get("medicationCode") or order_code
    resource: JSON = {**base, "medicationCodeableConcept": to_concept(med_code)}
    if not same_code(med_code, order_code):
        add_ext(resource, "orderCode", order_code)
    dose = dosage(detail)
    if dose is not None:
        resource["dosageInstruction"] = [dose]
    if detail.get("durationDays") is not None:
        resource["dispenseRequest"] = {
            "expectedSupplyDuration": {
                "value": detail["durationDays"],
                "unit": "days",
                "system": UCUM,
                "code": "d",
            }
        }
    return resource


def order_code_of(resource: Mapping[str, Any]) -> JSON | None:
    return ext_value(resource, "orderCode") or first_coding(
        resource.get("medicationCodeableConcept")
    )


def detail_of(resource: Mapping[str, Any]) -> JSON:
    """MedicationRequest → legacy medicationDetail."""
    out: JSON = {}
    med_code = first_coding(resource.get("medicationCodeableConcept"))
    if med_code is not None:
        out["medicationCode"] = med_code
    dosages = resource.get("dosageInstruction") or []
    if dosages:
        out.update(detail_of_dosage(dosages[0]))
    days = _days((resource.get("dispenseRequest") or {}).get("expectedSupplyDuration"))
    if days is not None:
        out["durationDays"] = days
    return out


_DAYS_PER_UNIT = {"d": 1, "wk": 7}


def _days(duration: Any) -> int | float | None:
    """A Duration in days (`d`, or `wk` from FHIR clients); None when not expressible."""
    if not isinstance(duration, dict) or not isinstance(duration.get("value"), int | float):
        return None
    factor = _DAYS_PER_UNIT.get(str(duration.get("code") or "d"))
    if factor is None:
        return None
    value = duration["value"] * factor
    return int(value) if float(value).is_integer() else value
