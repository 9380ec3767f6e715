"""The built-in CDS rules, one module each, every one `check(ctx, kb) -> list[Alert]`.

Rules are pure functions of the order context and the knowledge base. `DEFAULT_RULES` is
the order the engine runs them in (within one alert level, alerts keep this order).
"""

from __future__ import annotations

from collections.abc import Callable

from app.cds.alerts import Alert
from app.cds.context import OrderContext
from app.cds.knowledge_base import KnowledgeBase
from app.cds.rules import (
    code_display,
    drug_allergy,
    drug_interaction,
    duplicate_order,
    unknown_drug,
)

Rule = Callable[[OrderContext, KnowledgeBase], list[Alert]]

DEFAULT_RULES: tuple[Rule, ...] = (
    drug_allergy.check,
    drug_interaction.check,
    duplicate_order.check,
    unknown_drug.check,
    code_display.check,
)

__all__ = ["DEFAULT_RULES", "Rule"]
