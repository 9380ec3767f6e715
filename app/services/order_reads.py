"""Read-side order use cases: one order with its history, alerts and Task; pages of orders.

No writes here. Shared by the legacy face (and anything else that shows orders).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.domain import access
from app.domain.clock import format_instant
from app.domain.order_types import ORDER_RESOURCE_TYPES, REFERRAL_STATUS_SYSTEM
from app.errors import OrderNotFound
from app.services.resources import find_all
from app.services.unit_of_work import UnitOfWork
from app.store import StoredResource
from app.store.search.query import SearchQuery, TokenValue, parse_search, reverse_token


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
    """One numbered page of orders (snapshots without history) and the total match count."""

    items: list[OrderSnapshot]
    total: int


class OrderReader:
    """Read-side order use cases (no writes), shared by the legacy face and others."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.repo = uow.repo

    def find(self, rid: str, types: tuple[str, ...] = ORDER_RESOURCE_TYPES) -> StoredResource:
        access.require(self.uow.principal, access.Permission.READ)
        found = self.repo.read_any(types, rid)
        if found is None:
            raise OrderNotFound(f"Order {rid} not found")
        return found

    def snapshot(self, rid: str, types: tuple[str, ...] = ORDER_RESOURCE_TYPES) -> OrderSnapshot:
        """One order with its versions, their Provenance, its alerts and its Task."""
        order = self.find(rid, types)
        found = self.repo.history(order.resource_type, order.id, count=None)
        versions = [v.content for v in reversed(found[0])] if found else []
        provenance = self._search("Provenance", [("target", order.reference)])
        first = versions[0] if versions else order.content
        [summary] = self.summaries([order])
        return OrderSnapshot(
            order,
            versions,
            provenance,
            summary.alerts,
            summary.task,
            str((first.get("meta") or {}).get("lastUpdated")),
        )

    def summaries(self, orders: list[StoredResource]) -> list[OrderSnapshot]:
        """Snapshots without history for a page of orders, in a fixed number of queries
        (alerts, Tasks, creation times) whatever the page size."""
        refs = [(o.resource_type, o.id) for o in orders]
        alerts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for issue in self.repo.referencing("DetectedIssue", "implicated", refs):
            primary = (issue.content.get("implicated") or [{}])[0].get("reference")
            alerts[str(primary)].append(issue.content)
        tasks: dict[str, dict[str, Any]] = {}
        for task in self.repo.referencing("Task", "focus", refs):
            tasks.setdefault(str(task.content.get("focus", {}).get("reference")), task.content)
        created: dict[str, datetime] = {}
        for rtype in {o.resource_type for o in orders}:
            ids = [o.id for o in orders if o.resource_type == rtype]
            created.update(self.repo.created_at(rtype, ids))
        return [
            OrderSnapshot(
                o,
                [],
                [],
                alerts.get(o.reference, []),
                tasks.get(o.reference),
                format_instant(created.get(o.id, o.last_updated)),
            )
            for o in orders
        ]

    def page(
        self, searches: list[tuple[str, list[tuple[str, str]]]], *, page: int, page_size: int
    ) -> OrderPage:
        """Page `page` (from 1) of orders matching `searches` ((resource type, FHIR search
        parameters) per order type), newest first across types (ids are ULIDs), with the
        total: paged in the database (app/store/listing.py), so no page and no total is
        capped."""
        queries = [parse_search(rtype, params, strict=True) for rtype, params in searches]
        return self._numbered(queries, page, page_size)

    def referrals(
        self,
        params: list[tuple[str, str]],
        *,
        referral_status: str | None,
        page: int,
        page_size: int,
    ) -> OrderPage:
        """Referral ServiceRequests matching `params` and, with `referral_status`, whose
        fulfilment Task has that business status (DESIGN §1: the status lives on the Task):
        a reverse-chained search the database answers, so the total counts every match."""
        query = parse_search("ServiceRequest", params, strict=True)
        if referral_status is not None:
            wanted = (TokenValue(REFERRAL_STATUS_SYSTEM, referral_status),)
            query.criteria.append(reverse_token("Task", "focus", "business-status", wanted))
        return self._numbered([query], page, page_size)

    def _numbered(self, queries: list[SearchQuery], page: int, page_size: int) -> OrderPage:
        access.require(self.uow.principal, access.Permission.READ)
        found, total = self.repo.newest_first(
            queries, offset=(page - 1) * page_size, limit=page_size
        )
        return OrderPage(self.summaries(found), total)

    def _search(self, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return find_all(self.uow, rtype, params)
