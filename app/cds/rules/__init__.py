"""The built-in CDS rules, one module each, every one `check(ctx, kb) -> list[Alert]`.

Rules are pure functions of the order context and the knowledge base. `DEFAULT_RULES` is
the order the engine runs them in (within one alert level, alerts keep this order).
"""

from __future__ import annotations

from collections.abc import Callable

from app.cds.alerts import Alert
from app.cds.context import OrderContext
from app.cds.kb.base import KnowledgeBase
from app.cds.rules import (
    allergy_unchecked,
    code_display,
    dose_check,
    drug_allergy,
    drug_interaction,
    duplicate_order,
    duplicate_therapy,
    patient_age,
    unknown_drug,
    unknown_other,
)

Rule = Callable[[OrderContext, KnowledgeBase], list[Alert]]

DEFAULT_RULES: tuple[Rule, ...] = (
    drug_allergy.check,
    drug_interaction.check,
    duplicate_order.check,
    duplicate_therapy.check,
    dose_check.check,
    patient_age.check,
    unknown_drug.check,
    unknown_other.check,
    allergy_unchecked.check,
    code_display.check,
)

__all__ = ["DEFAULT_RULES", "Rule"]
