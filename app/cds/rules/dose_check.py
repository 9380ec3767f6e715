"""Dose and frequency checks from what the order carries (issue 12 item 6).

* DOSE-MAX-DAILY — the daily dose (dose x doses a day from the R4 Timing) of an ingredient
  above its maximum in app/cds/knowledge/dosing.json (acetaminophen above 4 g a day);
* minimum-interval rules (DOSE-METHOTREXATE-WEEKLY) — doses closer together than the rule
  allows (oral methotrexate more often than weekly is a hard-stop; weekly is no alert);
* DOSE-UNCHECKED (info) — a rule applies but the dose unit cannot be converted to mg, or the
  frequency is not stated: said, never guessed.

Routes: a rule limited to routes (oral) applies when the order's route is one of them or the
order names no route. Causes: `dose:<rule>:<ingredient>:<level>`.
"""

from __future__ import annotations

from app.cds.alerts import DACT, Alert, Level
from app.cds.context import OrderContext
from app.cds.dosage import dosage, dose_mg, interval_days, routes
from app.cds.kb.base import KnowledgeBase
from app.cds.kb.model import Drug
from app.cds.resolve import resolve

MAX_RULE = "DOSE-MAX-DAILY"
UNCHECKED = "DOSE-UNCHECKED"


def _applies(rule_routes: frozenset[str], order_routes: frozenset[str]) -> bool:
    return not rule_routes or not order_routes or bool(rule_routes & order_routes)


def _days_text(days: float) -> str:
    if days >= 1:
        return f"every {days:g} day(s)"
    return f"{1 / days:g} times a day"


def _unchecked(what: str, why: str, source: str, cause: str) -> Alert:
    message = f"{what}: {why}, so the dose was not checked."
    return Alert(UNCHECKED, "info", message, DACT, cause, source=source, detail=message)


def check(ctx: OrderContext, kb: KnowledgeBase) -> list[Alert]:
    if ctx.order_type != "MedicationRequest":
        return []
    resolved = resolve(ctx.order, ctx, kb)
    if not resolved.ok:
        return []
    item = dosage(ctx.order) or {}
    days = interval_days(item.get("timing"))
    order_routes = routes(ctx.order)
    alerts: list[Alert] = []
    for drug in resolved.drugs:
        for ingredient in sorted(drug.ingredients):
            alerts += _max_daily(kb, drug, ingredient, ctx, days, order_routes, resolved.name)
    for rule in kb.dosing.min_intervals:
        shared = resolved.ingredients & rule.ingredients
        if not shared or not _applies(rule.routes, order_routes):
            continue
        names = ", ".join(sorted(kb.ingredient_name(i) for i in shared))
        cause = f"dose:{rule.id}:{','.join(sorted(shared))}"
        if days is None:
            why = "the frequency is not stated (or is as needed)"
            alerts.append(_unchecked(resolved.name, why, rule.source, f"{cause}:info"))
            continue
        if days + 1e-9 < rule.days:
            level: Level = rule.level  # type: ignore[assignment]  # schema enum
            message = f"{names.capitalize()} {_days_text(days)}: {rule.message}"
            alerts.append(
                Alert(
                    rule.id,
                    level,
                    message,
                    DACT,
                    f"{cause}:{level}",
                    source=rule.source,
                    detail=f"{message} Ordered: {resolved.name}.",
                )
            )
    return alerts


def _max_daily(
    kb: KnowledgeBase,
    drug: Drug,
    ingredient: str,
    ctx: OrderContext,
    days: float | None,
    order_routes: frozenset[str],
    label: str,
) -> list[Alert]:
    limit = kb.dosing.max_daily.get(ingredient)
    if limit is None or not _applies(limit.routes, order_routes):
        return []
    mg, unit = dose_mg(ctx.order, drug, ingredient)
    name = kb.ingredient_name(ingredient)
    cause = f"dose:{MAX_RULE}:{ingredient}"
    if mg is None:
        if not unit:
            return []  # no dose on the order: nothing to add up
        why = f"a dose in '{unit}' cannot be converted to mg of {name}"
        return [_unchecked(label, why, limit.source, f"{cause}:unit")]
    if days is None:
        return []  # a single or as-needed dose: no daily total to compare
    # Doses a day, at least one: a dose every few days still puts `mg` into that one day.
    daily = mg / min(days, 1.0)
    if daily <= limit.mg + 1e-9:
        return []
    level: Level = limit.level  # type: ignore[assignment]  # schema enum
    message = (
        f"{name.capitalize()} {daily:g} mg a day ({mg:g} mg {_days_text(days)}) is above the "
        f"maximum of {limit.mg:g} mg a day."
    )
    return [
        Alert(
            MAX_RULE,
            level,
            message,
            DACT,
            f"{cause}:{level}",
            source=limit.source,
            detail=f"{message} Ordered: {label}.",
        )
    ]
