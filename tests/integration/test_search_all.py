"""Decision support must see every open order, not the first page of them (both backends)."""

from __future__ import annotations

from dataclasses import asdict

from flask import Flask

from app.auth import Principal
from app.domain.ids import new_id
from app.runtime import get_runtime
from app.services.resources import ResourceService
from app.services.unit_of_work import UnitOfWork
from app.store import Repository, StoredResource
from app.store.search.query import parse_search


def _active_request(repo: Repository, pid: str) -> StoredResource:
    body = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
    }
    return repo.create("ServiceRequest", new_id("ServiceRequest"), body)


def test_search_all_follows_every_page(app: Flask, tenant: str) -> None:
    with app.app_context(), get_runtime().engine.connect() as conn, conn.begin():
        repo = Repository(conn, tenant)
        made = {_active_request(repo, "p-many").id for _ in range(23)}
        found = repo.search_all(
            parse_search("ServiceRequest", [("patient", "p-many")]), page_size=5
        )
    assert {r.id for r in found} == made
    assert len(found) == 23


def test_search_all_and_the_conditional_match_leave_the_callers_query_as_it_was(
    app: Flask, tenant: str
) -> None:
    """Both page on a copy: a caller that reuses its query (e.g. to render links or to
    search again after claiming a conditional key) sees what it built."""
    with app.app_context(), get_runtime().engine.connect() as conn, conn.begin():
        repo = Repository(conn, tenant)
        for _ in range(3):
            _active_request(repo, "p-q")
        query = parse_search("ServiceRequest", [("patient", "p-q"), ("_count", "7")])
        before = asdict(query)
        assert len(repo.search_all(query, page_size=2)) == 3
        assert asdict(query) == before
    principal = Principal("admin", tenant, frozenset({"ADMIN"}), frozenset({tenant}))
    with app.app_context(), UnitOfWork(get_runtime().database, principal) as uow:
        query = parse_search("Patient", [("identifier", "urn:mrn|nobody")], strict=True)
        before = asdict(query)
        assert ResourceService(uow)._single_match(query) is None
        assert asdict(query) == before
