"""Searches on the resource table's own columns (`_id`, patient, `status`) run a statement
cached per shape with bind parameters (`Repository._column_page`); every other search
composes its statement per request (`Repository._page`). Both must return the same pages,
totals and cursors for every query — this compares them, paging forwards and back, on both
backends.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from app.auth import Principal
from app.domain.ids import new_id
from app.runtime import get_runtime
from app.services.unit_of_work import UnitOfWork
from app.store import SearchPage, searching
from app.store.search.query import parse_search
from tests.fhir_data import service_request

SR = "ServiceRequest"
STATUSES = ("draft", "active", "active", "on-hold", "completed")


def _uow(tenant: str) -> UnitOfWork:
    who = Principal("paths-test", tenant, frozenset({"CLINICIAN", "ADMIN"}), frozenset({tenant}))
    return UnitOfWork(get_runtime().database, who)


def _walk(app: Flask, tenant: str, params: list[tuple[str, str]]) -> list[Any]:
    """Every page forwards to the end, then backwards to the start: ids, totals, cursors."""
    seen: list[Any] = []
    with app.app_context(), _uow(tenant) as uow:
        query = parse_search(SR, params)
        page: SearchPage = uow.repo.search(query)
        seen.append(_summary(page))
        while page.next_cursor is not None:
            query = parse_search(SR, [*params, ("_cursor", page.next_cursor.encode())])
            page = uow.repo.search(query)
            seen.append(_summary(page))
        while page.prev_cursor is not None:
            query = parse_search(SR, [*params, ("_cursor", page.prev_cursor.encode())])
            page = uow.repo.search(query)
            seen.append(_summary(page))
    return seen


def _summary(page: SearchPage) -> tuple[Any, ...]:
    return (
        [r.id for r in page.resources],
        page.total,
        page.next_cursor.encode() if page.next_cursor else None,
        page.prev_cursor.encode() if page.prev_cursor else None,
    )


QUERIES = [
    [("patient", "{p}")],
    [("patient", "Patient/{p}"), ("status", "active")],
    [("patient", "{p}"), ("status", "active,draft"), ("_count", "3")],
    [("patient", "{p}"), ("_sort", "-_lastUpdated"), ("_count", "4")],
    [("patient", "{p}"), ("status", "active"), ("_sort", "_lastUpdated"), ("_count", "2")],
    [("patient", "{p}"), ("_sort", "-_id"), ("_count", "5"), ("_total", "none")],
    [("patient", "{p},{q}"), ("_count", "7")],
    [("patient", "{p}"), ("status", "entered-in-error")],
    [("status", "completed"), ("_count", "2")],
    [("_id", "{a},{b},{c}")],
    [("patient", "{p}"), ("_id", "{a},{b}"), ("_count", "1")],
]


@pytest.mark.parametrize("template", QUERIES, ids=[str(i) for i in range(len(QUERIES))])
def test_cached_column_searches_page_exactly_like_composed_ones(
    app: Flask, tenant: str, template: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    p, q = new_id("Patient"), new_id("Patient")
    ids = []
    with app.app_context(), _uow(tenant) as uow:
        for n in range(17):
            rid = new_id(SR)
            body = service_request(p if n % 4 else q, status=STATUSES[n % len(STATUSES)])
            uow.repo.create(SR, rid, body)
            ids.append(rid)
    names = {"p": p, "q": q, "a": ids[1], "b": ids[5], "c": ids[6]}
    params = [(k, v.format(**names)) for k, v in template]
    assert searching._column_shape(parse_search(SR, params)) is not None
    cached = _walk(app, tenant, params)
    monkeypatch.setattr(searching, "_column_shape", lambda _query: None)
    composed = _walk(app, tenant, params)
    assert cached == composed
    if ("status", "entered-in-error") not in template:
        assert any(page[0] for page in cached), "the query should match something"
