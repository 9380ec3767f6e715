"""Age checks from Patient.birthDate (issue 12 item 6).

`under_years` rules are paediatric contraindications (codeine or tramadol under 12: hard-stop,
FDA 2017); `from_years` rules are the AGS Beers Criteria at 65 and over (warning). No birth
date, or no evaluation time: no age check (the other checks still run).

Cause: `age:<rule>:<ingredients>`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from app.cds.alerts import DACT, Alert, Level
from app.cds.context import OrderContext
from app.cds.kb.base import KnowledgeBase
from app.cds.resolve import resolve


def age_years(patient: dict[str, Any] | None, now: datetime | None) -> int | None:
    """Completed years at `now`, from a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)."""
    if not patient or now is None or not isinstance(patient.get("birthDate"), str):
        return None
    parts = patient["birthDate"].split("-")
    try:
        born = date(
            int(parts[0]),
            int(parts[1]) if len(parts) > 1 else 1,
            int(parts[2]) if len(parts) > 2 else 1,  # a FHIR date has no time part
        )
    except (ValueError, IndexError):
        return None
    today = now.date()
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def check(ctx: OrderContext, kb: KnowledgeBase) -> list[Alert]:
    if ctx.order_type != "MedicationRequest":
        return []
    age = age_years(ctx.patient, ctx.now)
    if age is None:
        return []
    resolved = resolve(ctx.order, ctx, kb)
    if not resolved.ok:
        return []
    alerts: list[Alert] = []
    for rule in kb.dosing.age_rules:
        shared = resolved.ingredients & rule.ingredients
        if not shared:
            continue
        too_young = rule.under_years is not None and age < rule.under_years
        too_old = rule.from_years is not None and age >= rule.from_years
        if not (too_young or too_old):
            continue
        names = ", ".join(sorted(kb.ingredient_name(i) for i in shared))
        level: Level = rule.level  # type: ignore[assignment]  # schema enum
        message = f"{names.capitalize()} for a patient aged {age}: {rule.message}"
        alerts.append(
            Alert(
                rule.id,
                level,
                message,
                DACT,
                f"age:{rule.id}:{','.join(sorted(shared))}",
                source=rule.source,
                detail=f"{message} Ordered: {resolved.name}.",
            )
        )
    return alerts
