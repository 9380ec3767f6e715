"""`orderType: diet` ↔ NutritionOrder.

| legacy | NutritionOrder |
|---|---|
| `orderCode`, `dietDetail.dietType` | `oralDiet.type[0]`: coding, `text` |
| `dietDetail.texture` | `oralDiet.texture[0].modifier.text` |
| `dietDetail.fluidRestrictionMl` | `oralDiet.nutrient[]` {modifier "fluid", amount in UCUM `mL`} |
| `dietDetail.supplements[]` | `supplement[].productName` |
| `priority` | extension `…legacy:priority` (R4 NutritionOrder has no priority) |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.legacy_api.mapping.common import JSON, UCUM, first_coding, text_of, to_concept

DETAIL = "dietDetail"
FLUID = "fluid"


def to_fhir(payload: Mapping[str, Any], base: JSON) -> JSON:
    """Complete `base` as a NutritionOrder."""
    d: Mapping[str, Any] = payload.get(DETAIL) or {}
    oral: JSON = {"type": [to_concept(payload["orderCode"], d.get("dietType"))]}
    if d.get("texture") is not None:
        oral["texture"] = [{"modifier": {"text": d["texture"]}}]
    if d.get("fluidRestrictionMl") is not None:
        oral["nutrient"] = [
            {
                "modifier": {"text": FLUID},
                "amount": {
                    "value": d["fluidRestrictionMl"],
                    "unit": "mL",
                    "system": UCUM,
                    "code": "mL",
                },
            }
        ]
    resource: JSON = {**base, "oralDiet": oral}
    supplements = d.get("supplements") or []
    if supplements:
        resource["supplement"] = [{"productName": name} for name in supplements]
    return resource


def order_code_of(resource: Mapping[str, Any]) -> JSON | None:
    types = (resource.get("oralDiet") or {}).get("type") or []
    return first_coding(types[0]) if types else None


def detail_of(resource: Mapping[str, Any]) -> JSON:
    """NutritionOrder → legacy dietDetail."""
    oral: Mapping[str, Any] = resource.get("oralDiet") or {}
    out: JSON = {}
    types = oral.get("type") or []
    if types and isinstance(types[0], dict) and types[0].get("text"):
        out["dietType"] = types[0]["text"]
    textures = oral.get("texture") or []
    if textures and isinstance(textures[0], dict):
        texture = text_of(textures[0].get("modifier"))
        if texture is not None:
            out["texture"] = texture
    for nutrient in oral.get("nutrient") or ():
        modifier = text_of((nutrient or {}).get("modifier")) or ""
        amount = (nutrient or {}).get("amount") or {}
        if modifier.lower() == FLUID and amount.get("code", amount.get("unit")) == "mL":
            out["fluidRestrictionMl"] = amount.get("value")
            break
    names = [
        s["productName"]
        for s in resource.get("supplement") or ()
        if isinstance(s, dict) and s.get("productName")
    ]
    if names:
        out["supplements"] = names
    return out
