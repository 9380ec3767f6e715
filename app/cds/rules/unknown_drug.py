"""A medication decision support cannot identify: say so, never stay silent (issue 12).

The ordered MedicationRequest resolves to nothing (unknown code, a code the terminology
service could not look up in time, text only, a Medication outside the order):

* `warning` when there is something it should have been checked against — another medication
  order of the patient, or an active medication allergy — so activation waits for an
  acknowledgement that names what was not checked;
* `info` when there is nothing to check it against (DESIGN §6);
* always `warning` when the order's `medicationReference` names a Medication that cannot be
  read (not contained, not sent by the CDS Hooks caller, not stored in the tenant): unlike an
  unknown code, which a person reading the order still understands, such an order names no
  drug at all, so it must not be signed without someone acknowledging that.

Cause: `unknown:<level>:<codes | reference | text>`. The level is part of the cause: when an
allergy or another order appears later, the info alert's cause is gone and the warning is new,
so an old info alert never stands in for a warning.
"""

from __future__ import annotations

from app.cds.alerts import KNOWLEDGE_GAP, Alert, Level
from app.cds.context import OrderContext, codings
from app.cds.kb.base import KnowledgeBase
from app.cds.resolve import UNREADABLE, describe, resolve
from app.cds.rules.allergy_facts import medication_allergies

RULE_ID = "DRUG-UNKNOWN"
SOURCE = (
    "Orders service CDS policy: a drug that cannot be checked is reported, never skipped "
    "(DESIGN §6, issue 12)"
)


def _cause_key(ctx: OrderContext) -> str:
    order = ctx.order
    concept = order.get("medicationCodeableConcept")
    codes = codings(concept)
    if codes:
        return ",".join(sorted(f"{c.get('system', '')}|{c['code']}" for c in codes))
    ref = order.get("medicationReference")
    if isinstance(ref, dict) and (ref.get("reference") or ref.get("display")):
        return f"reference:{ref.get('reference') or ref.get('display')}"
    text = concept.get("text") if isinstance(concept, dict) else None
    return f"text:{text}" if text else "none"


def check(ctx: OrderContext, kb: KnowledgeBase) -> list[Alert]:
    if ctx.order_type != "MedicationRequest":
        return []
    resolution = resolve(ctx.order, ctx, kb)
    if resolution.ok:
        return []
    what = describe(resolution)
    others = sum(1 for _ in ctx.others_of_type("MedicationRequest"))
    allergies = len(medication_allergies(ctx))
    against = []
    if others:
        against.append(f"{others} other medication order(s)")
    if allergies:
        against.append(f"{allergies} medication allergy record(s)")
    level: Level = "warning" if against or resolution.problem == UNREADABLE else "info"
    checked = " and ".join(against) if against else "allergies and interactions"
    message = (
        f"{what} could not be identified ({resolution.problem}): it was not checked "
        f"against {checked}."
    )
    return [
        Alert(
            rule_id=RULE_ID,
            level=level,
            message=message,
            code=KNOWLEDGE_GAP,
            cause=f"unknown:{level}:{_cause_key(ctx)}",
            source=SOURCE,
            detail=(
                f"{message} Check allergies and interactions by other means, or order the drug "
                "by its RxNorm code. The allergy and interaction checks were not performed."
            ),
        )
    ]
