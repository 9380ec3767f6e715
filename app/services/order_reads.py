"""Read-side order use cases: one order with its history, alerts and Task; pages of orders.

No writes here. Shared by the legacy face (and anything else that shows orders).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.domain import access
from app.domain.lifecycle import ORDER_TYPES
from app.errors import OrderNotFound
from app.fhir.repository import StoredResource
from app.fhir.search.query import parse_search
from app.services.unit_of_work import UnitOfWork


@dataclass
class OrderSnapshot:
    """Everything a face needs to show one order: the order, its versions (oldest first),
    their Provenance, its alerts and its fulfilment Task."""

    order: StoredResource
    versions: list[dict[str, Any]]
    provenance: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    task: dict[str, Any] | None
    #: When version 1 was written (`meta.lastUpdated` of the create), as an R4 instant.
    created_at: str


@dataclass
class OrderPage:
    items: list[StoredResource]
    total: int


class OrderReader:
    """Read-side order use cases (no writes), shared by the legacy face and others."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.repo = uow.repo

    def find(self, rid: str, types: tuple[str, ...] = ORDER_TYPES) -> StoredResource:
        access.require(self.uow.principal, access.Action.READ)
        found = self.repo.read_any(types, rid)
        if found is None:
            raise OrderNotFound(f"Order {rid} not found")
        return found

    def snapshot(
        self, rid: str, types: tuple[str, ...] = ORDER_TYPES, *, with_history: bool = True
    ) -> OrderSnapshot:
        order = self.find(rid, types)
        return self.snapshot_of(order, with_history=with_history)

    def snapshot_of(self, order: StoredResource, *, with_history: bool = True) -> OrderSnapshot:
        versions: list[dict[str, Any]] = []
        provenance: list[dict[str, Any]] = []
        if with_history:
            found = self.repo.history(order.resource_type, order.id, count=1000)
            versions = [v.content for v in reversed(found[0])] if found else []
            provenance = self._search("Provenance", [("target", order.reference)])
            first = versions[0] if versions else order.content
        else:
            v1 = self.repo.vread(order.resource_type, order.id, 1)
            first = v1.content if v1 else order.content
        created_at = str((first.get("meta") or {}).get("lastUpdated"))
        alerts = self._search("DetectedIssue", [("implicated", order.reference)])
        alerts = [
            a
            for a in alerts
            if (a.get("implicated") or [{}])[0].get("reference") == order.reference
        ]
        tasks = self._search("Task", [("focus", order.reference)])
        return OrderSnapshot(
            order, versions, provenance, alerts, tasks[0] if tasks else None, created_at
        )

    def page(
        self, searches: list[tuple[str, list[tuple[str, str]]]], *, page: int, page_size: int
    ) -> OrderPage:
        """Newest first across order types (ids are ULIDs, so `-_id` is creation order)."""
        access.require(self.uow.principal, access.Action.READ)
        wanted = page * page_size
        merged: list[StoredResource] = []
        total = 0
        for rtype, params in searches:
            query = parse_search(
                rtype, [*params, ("_sort", "-_id"), ("_count", str(wanted))], strict=True
            )
            result = self.repo.search(query)
            total += result.total or 0
            merged += result.resources
        merged.sort(key=lambda r: r.id, reverse=True)
        return OrderPage(merged[(page - 1) * page_size : wanted], total)

    def _search(self, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        query = parse_search(rtype, [*params, ("_count", "1000")])
        query.with_total = False
        return [r.content for r in self.repo.search(query).resources]
