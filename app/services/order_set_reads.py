"""Read-side order-set use case: a numbered page of order sets (PlanDefinitions)."""

from __future__ import annotations

from dataclasses import dataclass

from app.domain import access
from app.domain.order_types import ORDER_TYPES
from app.services.unit_of_work import UnitOfWork
from app.store import StoredResource
from app.store.search.query import parse_search


@dataclass
class OrderSetPage:
    items: list[StoredResource]
    total: int


class OrderSetReader:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def page(
        self, *, order_type: str | None, title: str | None, page: int, page_size: int
    ) -> OrderSetPage:
        """Page `page` (from 1) of order sets, newest first, with the total. `order_type`
        keeps sets holding a template of that type (`lab` is `laboratory`), through the
        indexed `order-type` parameter; `title` matches anywhere in the name, case- and
        accent-insensitively. Filtered and paged in the database: nothing is capped."""
        access.require(self.uow.principal, access.Permission.READ)
        params: list[tuple[str, str]] = []
        if order_type is not None:
            params.append(("order-type", ORDER_TYPES[order_type].name))
        if title:
            params.append(("title:contains", title))
        query = parse_search("PlanDefinition", params, strict=True)
        found, total = self.uow.repo.newest_first(
            [query], offset=(page - 1) * page_size, limit=page_size
        )
        return OrderSetPage(found, total)
