"""Decision support must see every open order, not the first page of them (both backends)."""

from __future__ import annotations

from flask import Flask

from app.domain.ids import new_id
from app.runtime import get_runtime
from app.store import Repository
from app.store.search.query import parse_search


def test_search_all_follows_every_page(app: Flask, tenant: str) -> None:
    with app.app_context(), get_runtime().engine.connect() as conn, conn.begin():
        repo = Repository(conn, tenant)
        made = {
            repo.create(
                "ServiceRequest",
                new_id("ServiceRequest"),
                {
                    "resourceType": "ServiceRequest",
                    "status": "active",
                    "intent": "order",
                    "subject": {"reference": "Patient/p-many"},
                },
            ).id
            for _ in range(23)
        }
        found = repo.search_all(
            parse_search("ServiceRequest", [("patient", "p-many")]), page_size=5
        )
    assert {r.id for r in found} == made
    assert len(found) == 23
