"""What decision support needs from a terminology service, as an interface (no I/O here).

The service layer asks an `IngredientLookup` for the RxNorm codes the knowledge base does not
know, before the rules run, and puts the answers in the `OrderContext` (`resolved_codes`,
`unresolved_codes`). The implementation (HTTP, caches, timeouts) is `app.terminology`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Found:
    """A code's ingredients as (RxCUI, name) pairs; empty = the service does not know it."""

    ingredients: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Unavailable:
    """The service could not answer (timeout, error, switched off after a failure)."""

    reason: str


LookupResult = Found | Unavailable


class IngredientLookup(Protocol):
    def ingredients(self, codes: Sequence[str]) -> Mapping[str, LookupResult]:
        """An answer for every code asked, within the lookup's time bound."""
        ...
