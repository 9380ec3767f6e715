"""Search and history results as Bundles (searchset, history), with their links.

See: https://hl7.org/fhir/R4/search.html#conformance and https://hl7.org/fhir/R4/http.html#history
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from app.domain.clock import format_instant, utcnow
from app.fhir.http import FhirRequest, apply_elements
from app.fhir.interactions import may_read
from app.fhir.outcomes import informational
from app.store import SearchPage, StoredResource
from app.store.search.query import SearchQuery


def searchset(req: FhirRequest, query: SearchQuery, page: SearchPage) -> dict[str, Any]:
    """A searchset Bundle: matches, permitted includes, paging links that keep the query."""
    base = f"{req.base_url}/{query.resource_type}"
    shape = [
        (k, v)
        for k, v in req.params
        if k in ("_count", "_sort", "_include", "_revinclude", "_elements", "_total")
    ]
    if query.summary_count:
        shape.append(("_summary", "count"))
    keep = query.echo + shape

    def link(relation: str, extra: list[tuple[str, str]]) -> dict[str, str]:
        qs = urlencode(keep + extra)
        return {"relation": relation, "url": f"{base}?{qs}" if qs else base}

    links = [link("self", [("_cursor", query.cursor.encode())] if query.cursor else [])]
    if page.next_cursor:
        links.append(link("next", [("_cursor", page.next_cursor.encode())]))
    if page.prev_cursor:
        links.append(link("previous", [("_cursor", page.prev_cursor.encode())]))
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"{req.base_url}/{r.resource_type}/{r.id}",
            "resource": apply_elements(r.content, query.elements) if query.elements else r.json,
            "search": {"mode": "match"},
        }
        for r in page.resources
    ]
    assert req.principal is not None
    entries += [
        {
            "fullUrl": f"{req.base_url}/{r.resource_type}/{r.id}",
            "resource": r.json,
            "search": {"mode": "include"},
        }
        for r in page.included
        # SMART scopes narrow includes too: a type the token may not read is left out.
        if may_read(req.principal, r.resource_type)
    ]
    if query.warnings:
        entries.append(
            {
                "resource": informational("Search completed with warnings", query.warnings),
                "search": {"mode": "outcome"},
            }
        )
    return bundle("searchset", page.total, links, entries)


def history_bundle(
    req: FhirRequest,
    rtype: str,
    rid: str,
    versions: list[StoredResource],
    total: int,
    count: int,
) -> dict[str, Any]:
    """A history Bundle, newest first, with a `next` link by version number."""
    base = f"{req.base_url}/{rtype}/{rid}/_history"
    links = [{"relation": "self", "url": f"{base}?{urlencode(req.params)}" if req.params else base}]
    if versions and versions[-1].version_id > 1:
        nxt = urlencode({"_count": count, "_before": versions[-1].version_id})
        links.append({"relation": "next", "url": f"{base}?{nxt}"})
    entries = [
        {
            "fullUrl": f"{req.base_url}/{rtype}/{rid}",
            "resource": v.content,
            "request": {
                "method": "POST" if v.version_id == 1 else "PUT",
                "url": f"{rtype}/{rid}" if v.version_id > 1 else rtype,
            },
            "response": {
                "status": "201 Created" if v.version_id == 1 else "200 OK",
                "etag": f'W/"{v.version_id}"',
                "lastModified": format_instant(v.last_updated),
            },
        }
        for v in versions
    ]
    return bundle("history", total, links, entries)


def bundle(
    kind: str, total: int | None, links: list[dict[str, str]], entries: list[dict[str, Any]]
) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": format_instant(utcnow())},
        "type": kind,
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    if entries:
        bundle["entry"] = entries
    return bundle
