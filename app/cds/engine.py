"""The CDS engine: run every rule on an order context, and speak CDS Hooks 2.0.

`CdsEngine.evaluate(ctx)` runs each rule (pure functions, see app/cds/rules), drops alerts
whose cause was already reported (the most urgent one of a cause wins) and returns them
most urgent first: hard-stop, warning, info — within a level, in rule order. A rule that
raises is not swallowed: silence would look like "no alerts".

`card()` renders an alert as a CDS Hooks 2.0 card; `SERVICES` is the discovery list.
See: https://cds-hooks.hl7.org/2.0/#cds-service-response
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from app.cds.alerts import (
    ALGY,
    CODE_DISPLAY,
    DRG,
    DUPTHPY,
    LEVELS,
    Alert,
    indicator,
)
from app.cds.context import OrderContext
from app.cds.kb.base import KnowledgeBase
from app.cds.lookup import IngredientLookup
from app.cds.rules import DEFAULT_RULES, Rule

SUMMARY_MAX: Final = 139
"""CDS Hooks 2.0: summary is a "one-sentence, <140-character" message."""

RULE_TOPIC_SYSTEM: Final = "urn:orders-service:cds-rule"
OVERRIDE_REASON_SYSTEM: Final = "urn:orders-service:cds:override-reason"
SOURCE_LABEL: Final = "Orders service CDS"

# A small local list (CDS Hooks 2.0 prescribes no vocabulary; overrideReasons need a
# display, cds-resp-4). Offered on warnings only: hard-stops cannot be overridden and info
# cards need no reason.
_REASONS: Final[dict[str, str]] = {
    "benefit-outweighs-risk": "Benefit outweighs the risk for this patient",
    "will-monitor": "Will monitor the patient",
    "tolerated-before": "Patient has tolerated this drug before",
    "intended-duplicate": "Both orders are intended",
    "code-verified": "Code checked: the code is right, the display is wrong",
    "not-applicable": "Alert does not apply to this patient",
}
_REASONS_BY_CATEGORY: Final[dict[str, tuple[str, ...]]] = {
    ALGY: ("tolerated-before", "benefit-outweighs-risk", "not-applicable"),
    DRG: ("will-monitor", "benefit-outweighs-risk", "not-applicable"),
    DUPTHPY: ("intended-duplicate", "not-applicable"),
    CODE_DISPLAY: ("code-verified", "not-applicable"),
}
_DEFAULT_REASONS: Final = ("benefit-outweighs-risk", "not-applicable")

_PREFETCH: Final[dict[str, str]] = {
    "patient": "Patient/{{context.patientId}}",
    "allergies": "AllergyIntolerance?patient={{context.patientId}}",
    "medications": (
        "MedicationRequest?patient={{context.patientId}}&status=draft,active,on-hold"
        "&_include=MedicationRequest:medication"
    ),
    "services": "ServiceRequest?patient={{context.patientId}}&status=draft,active,on-hold",
    "diets": "NutritionOrder?patient={{context.patientId}}&status=draft,active,on-hold",
}
_CHECKS: Final = (
    "drug-allergy (with drug-class cross-reactivity, severe reactions, text-only allergies), "
    "drug-drug interaction (ONC high-priority pairs and common pairs), duplicate order and "
    "duplicate therapy, maximum daily dose, dosing frequency, age (paediatric and Beers), "
    "drugs or allergies that cannot be checked, and medication codes whose display names a "
    "different drug"
)

SERVICES: Final[list[dict[str, Any]]] = [
    {
        "hook": "order-select",
        "id": "order-select-checks",
        "title": "Order checks on selection",
        "description": (
            f"Checks a selected draft order before it is stored: {_CHECKS}. The patient's "
            "draft, active and on-hold orders count."
        ),
        "prefetch": dict(_PREFETCH),
    },
    {
        "hook": "order-sign",
        "id": "order-sign-checks",
        "title": "Order checks on signing",
        "description": (
            f"Checks draft orders at signing against the current record: {_CHECKS}. Only the "
            "patient's active and on-hold orders count."
        ),
        "prefetch": dict(_PREFETCH),
    },
]


def service(service_id: str) -> dict[str, Any] | None:
    """The discovery entry of a service id, or None."""
    return next((dict(s) for s in SERVICES if s["id"] == service_id), None)


def truncate(text: str, limit: int = SUMMARY_MAX) -> str:
    """At most `limit` characters, cut at a word boundary where sensible, ending in "…"."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.") + "…"


def override_reasons(alert: Alert) -> list[dict[str, str]]:
    """Codings (with display) a clinician may pick to override a warning; none otherwise."""
    if alert.level != "warning":
        return []
    codes = _REASONS_BY_CATEGORY.get(alert.code, _DEFAULT_REASONS)
    return [{"system": OVERRIDE_REASON_SYSTEM, "code": c, "display": _REASONS[c]} for c in codes]


def card(alert: Alert, *, uuid: str, source_label: str = SOURCE_LABEL) -> dict[str, Any]:
    """A CDS Hooks 2.0 card for one alert. The caller decides the `uuid` (the service layer
    derives it from the stored alert, so feedback finds it again). No suggestions, no links.
    """
    detail = alert.detail or alert.message
    if alert.source:
        detail = f"{detail}\n\nSource: {alert.source}"
    body: dict[str, Any] = {
        "uuid": uuid,
        "summary": truncate(alert.message),
        "detail": detail,
        "indicator": indicator(alert.level),
        "source": {
            "label": source_label,
            "topic": {"system": RULE_TOPIC_SYSTEM, "code": alert.rule_id, "display": alert.rule_id},
        },
    }
    reasons = override_reasons(alert)
    if reasons:
        body["overrideReasons"] = reasons
    return body


def deduplicate(alerts: Iterable[Alert]) -> list[Alert]:
    """One alert per cause (the most urgent; the first among equals), most urgent first."""
    rank = {level: i for i, level in enumerate(LEVELS)}
    best: dict[str, Alert] = {}
    order: list[str] = []
    for alert in alerts:
        kept = best.get(alert.cause)
        if kept is None:
            order.append(alert.cause)
            best[alert.cause] = alert
        elif rank[alert.level] < rank[kept.level]:
            best[alert.cause] = alert
    return sorted((best[c] for c in order), key=lambda a: rank[a.level])


class CdsEngine:
    """Runs the rules against a knowledge base. Stateless apart from its inputs.

    `lookup` is the terminology service (or None): the engine never calls it — the service
    layer that builds the context does (app/services/cds_context.py), so rules stay pure.
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        rules: Sequence[Rule] = DEFAULT_RULES,
        lookup: IngredientLookup | None = None,
    ) -> None:
        self.kb = kb
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.lookup = lookup

    def evaluate(self, ctx: OrderContext) -> list[Alert]:
        found: list[Alert] = []
        for rule in self.rules:
            found.extend(rule(ctx, self.kb))
        return deduplicate(found)

    def card(self, alert: Alert, *, uuid: str, source_label: str = SOURCE_LABEL) -> dict[str, Any]:
        return card(alert, uuid=uuid, source_label=source_label)

    @property
    def services(self) -> list[dict[str, Any]]:
        return [dict(s) for s in SERVICES]
