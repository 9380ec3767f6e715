"""Legacy lists past 1,000 rows, the Task lookup past 100 and history past 1,000 versions.

Each of these once stopped silently at a fixed size (issue 10, point 7): the order-set and
referral lists fetched at most 1,000 rows and filtered and paged them in Python (the total
said 1,000 and later pages were empty), the order list asked each type for
`page * pageSize` rows under the search's 1,000-row cap, closing an order closed only the
first 100 Tasks, and an order's history stopped at 1,000 versions. The data is written
through the repository and the services in one unit of work, which is what keeps
thousands of rows cheap; the reads go through the legacy face.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.auth import Principal
from app.domain.clock import utcnow
from app.domain.ids import new_id
from app.domain.order_types import business_status
from app.legacy_api import mapping, schemas
from app.runtime import get_runtime
from app.services import provenance
from app.services.fulfilment import Fulfilment
from app.services.resources import ResourceService
from app.services.unit_of_work import UnitOfWork
from app.store import StoredResource
from app.store.search.query import parse_search
from tests.conftest import TokenFactory
from tests.legacy_data import (
    LIST_KEYS,
    LegacyApi,
    fhir_id,
    lab,
    lab_template,
    legacy_id,
    medication,
    order_set,
    referral,
)

PAGE = 100


@contextmanager
def admin_uow(app: Flask, tenant: str) -> Iterator[UnitOfWork]:
    who = Principal("bulk-loader", tenant, frozenset({"ADMIN"}), frozenset({tenant}))
    with app.app_context(), UnitOfWork(get_runtime().database, who) as uow:
        yield uow


def store_order(uow: UnitOfWork, body: dict[str, Any]) -> StoredResource:
    """A draft order exactly as the legacy create maps it, written with its Provenance (no
    decision support: these tests are about how many rows a list sees)."""
    doc = mapping.order_to_fhir(schemas.load(schemas.CreateOrderSchema, body), now=utcnow())
    rtype = doc["resourceType"]
    return provenance.write_new(uow.repo, uow.principal, rtype, new_id(rtype), doc, "bulk")


def listing(api: LegacyApi, path: str, **params: Any) -> dict[str, Any]:
    body = api.ok(api.get(path, api.admin, **params))
    assert set(body) == LIST_KEYS
    return dict(body)


def newest_first(ids: list[str]) -> list[str]:
    return [legacy_id(i) for i in sorted(ids, reverse=True)]


def test_order_set_list_totals_pages_and_filters_past_1000(
    app: Flask, client: FlaskClient, headers: TokenFactory, tenant: str
) -> None:
    medication_template = order_set()["orderTemplates"][0]
    kinds: dict[str, list[str]] = {"medication": [], "laboratory": []}
    with admin_uow(app, tenant) as uow:
        service = ResourceService(uow)
        for i in range(1003):
            template = medication_template if i < 3 else lab_template()
            if i >= 3 and i % 2:
                template = {**template, "orderType": "lab"}  # the same type (DESIGN §5)
            payload = schemas.load(
                schemas.OrderSetCreateSchema, order_set(f"Set {i:04d}", template)
            )
            plan = mapping.order_set_to_fhir(payload)
            stored = service.create("PlanDefinition", plan)
            kinds["medication" if i < 3 else "laboratory"].append(stored.id)
    api = LegacyApi(client, headers)
    everything = newest_first(kinds["medication"] + kinds["laboratory"])

    page = listing(api, "/order-sets", page=11, pageSize=PAGE)
    assert page["total"] == 1003
    assert [s["orderSetId"] for s in page["items"]] == everything[1000:]

    labs = newest_first(kinds["laboratory"])
    for spelling in ("laboratory", "lab"):
        page = listing(api, "/order-sets", orderType=spelling, page=10, pageSize=PAGE)
        assert page["total"] == 1000
        assert [s["orderSetId"] for s in page["items"]] == labs[900:]
    past = listing(api, "/order-sets", orderType="lab", page=11, pageSize=PAGE)
    assert past == {"items": [], "page": 11, "pageSize": PAGE, "total": 1000}

    page = listing(api, "/order-sets", orderType="medication", pageSize=PAGE)
    assert page["total"] == 3
    assert [s["orderSetId"] for s in page["items"]] == newest_first(kinds["medication"])
    assert listing(api, "/order-sets", orderType="diet")["total"] == 0
    both = listing(api, "/order-sets", orderType="lab", search="set 09", pageSize=PAGE)
    assert both["total"] == 100 and {s["name"][:6] for s in both["items"]} == {"Set 09"}


def test_referral_list_totals_pages_and_status_filter_past_1000(
    app: Flask, client: FlaskClient, headers: TokenFactory, tenant: str
) -> None:
    api = LegacyApi(client, headers)
    pid, eid = api.admitted()
    status: dict[str | None, list[str]] = {None: [], "pending_scheduling": [], "scheduled": []}
    with admin_uow(app, tenant) as uow:
        fulfilment = Fulfilment(uow)
        for i in range(1010):
            order = store_order(uow, referral(pid, eid))
            if i < 3:  # drafts: no Task yet, so no referral status
                status[None].append(order.id)
                continue
            task = fulfilment.create_task(order, fhir_id(pid), utcnow())
            if i < 6:
                doc = {**task.content, "businessStatus": business_status("scheduled")}
                uow.repo.update("Task", task.id, doc, task.version_id)
                status["scheduled"].append(order.id)
            else:
                status["pending_scheduling"].append(order.id)

    every = newest_first([i for ids in status.values() for i in ids])
    page = listing(api, "/orders/referrals", page=11, pageSize=PAGE)
    assert page["total"] == 1010
    assert [r["orderId"] for r in page["items"]] == every[1000:]

    pending = newest_first(status["pending_scheduling"])
    page = listing(api, "/orders/referrals", referralStatus="pending_scheduling", page=11)
    assert page["total"] == 1004 and page["pageSize"] == 20
    page = listing(
        api, "/orders/referrals", referralStatus="pending_scheduling", page=11, pageSize=PAGE
    )
    assert page["total"] == 1004
    assert [r["orderId"] for r in page["items"]] == pending[1000:]
    assert {r["referralDetail"]["referralStatus"] for r in page["items"]} == {"pending_scheduling"}
    page = listing(api, "/orders/referrals", referralStatus="scheduled", patientId=pid)
    assert page["total"] == 3
    assert [r["orderId"] for r in page["items"]] == newest_first(status["scheduled"])
    assert {r["referralDetail"]["referralStatus"] for r in page["items"]} == {"scheduled"}


def test_order_list_pages_past_1000_across_order_types(
    app: Flask, client: FlaskClient, headers: TokenFactory, tenant: str
) -> None:
    """More than 1,000 of one type: the per-type search once stopped at 1,000 rows."""
    api = LegacyApi(client, headers)
    pid, eid = api.admitted()
    labs: list[str] = []
    meds: list[str] = []
    with admin_uow(app, tenant) as uow:
        for i in range(1005):
            if i % 300 == 0:
                meds.append(store_order(uow, medication(pid, eid)).id)
            else:
                labs.append(store_order(uow, lab(pid, eid)).id)
    every = newest_first(labs + meds)
    page = listing(api, "/orders", patientId=pid, page=11, pageSize=PAGE)
    assert page["total"] == 1005
    assert [o["orderId"] for o in page["items"]] == every[1000:]
    page = listing(api, "/orders", patientId=pid, page=6, pageSize=PAGE)
    assert [o["orderId"] for o in page["items"]] == every[500:600]
    found = listing(api, "/orders", patientId=pid, orderType="medication")
    assert found["total"] == 4
    assert [o["orderId"] for o in found["items"]] == newest_first(meds)
    found = listing(api, "/orders", patientId=pid, orderType="lab", page=11, pageSize=PAGE)
    assert found["total"] == 1001
    assert [o["orderId"] for o in found["items"]] == newest_first(labs)[1000:]


def test_closing_an_order_closes_every_task_not_the_first_100(
    app: Flask, client: FlaskClient, headers: TokenFactory, tenant: str
) -> None:
    api = LegacyApi(client, headers)
    pid, eid = api.admitted()
    oid = api.created(lab(pid, eid))["orderId"]
    api.activated(oid)
    with admin_uow(app, tenant) as uow:
        order = uow.repo.read("ServiceRequest", fhir_id(oid))
        assert order is not None
        fulfilment = Fulfilment(uow)
        for _ in range(101):
            fulfilment.create_task(order, fhir_id(pid), utcnow())
        assert len(fulfilment.tasks_of(order)) == 102
    api.ok(api.change(oid, "cancel", api.order(oid)["version"]))
    with admin_uow(app, tenant) as uow:
        query = parse_search("Task", [("focus", f"ServiceRequest/{fhir_id(oid)}")])
        tasks = uow.repo.search_all(query)
    assert len(tasks) == 102
    assert {t.content["status"] for t in tasks} == {"cancelled"}


def test_order_history_shows_every_version_past_1000(
    app: Flask, client: FlaskClient, headers: TokenFactory, tenant: str
) -> None:
    api = LegacyApi(client, headers)
    pid, eid = api.admitted()
    oid = api.created(lab(pid, eid))["orderId"]
    with admin_uow(app, tenant) as uow:
        current = uow.repo.read("ServiceRequest", fhir_id(oid))
        assert current is not None
        for n in range(1001):
            doc = {**current.content, "note": [{"text": f"edit {n}"}]}
            current = uow.repo.update("ServiceRequest", current.id, doc, current.version_id)
    order = api.order(oid)
    assert order["version"] == 1002
    history = order["history"]
    assert [h["version"] for h in history] == list(range(1, 1003))
    assert history[0]["action"] == "create"
