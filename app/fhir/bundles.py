"""`POST [base]` with a batch or transaction Bundle.

A transaction is one unit of work: every entry commits or none does, `urn:uuid:` fullUrls
are replaced by the ids the server assigns, and entries run in the order the spec gives
(POST, PUT, then GET). A batch runs each entry in its own unit of work and reports each.
See: https://hl7.org/fhir/R4/http.html#transaction
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from app.domain.clock import format_instant
from app.domain.ids import new_id
from app.domain.numbers import parse_etag_version
from app.domain.offline import is_offline
from app.errors import AppError, Issue, MethodNotAllowed, RouteNotFound, ValidationFailed
from app.fhir import capability
from app.fhir.http import FhirRequest, FhirResponse, parse_json
from app.fhir.interactions import allow, may_see_match, not_allowed_message
from app.fhir.outcomes import operation_outcome, status_for
from app.services import audit
from app.services.resources import ResourceService, WriteResult
from app.services.resources import references as _refs
from app.services.unit_of_work import UnitOfWork
from app.services.writes import ResourceWrites

MAX_ENTRIES = 500
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created"}


@dataclass(frozen=True)
class BundleServices:
    """What processing a Bundle needs from the router, passed in so this module does not
    depend on it: units of work, the write path, and the handling of a GET entry exactly
    as the same request on its own."""

    open_uow: Callable[[FhirRequest], AbstractContextManager[UnitOfWork]]
    writes: Callable[[UnitOfWork], ResourceWrites]
    handle: Callable[[FhirRequest], FhirResponse]


@dataclass
class Entry:
    index: int
    method: str
    url: str
    resource: Any
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None


def _entries(bundle: dict[str, Any]) -> list[Entry]:
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise ValidationFailed(
            "Bundle.entry must be a list", issues=[Issue("not a list", "Bundle.entry")]
        )
    if len(raw) > MAX_ENTRIES:
        raise ValidationFailed(
            f"At most {MAX_ENTRIES} entries per Bundle",
            issues=[Issue("too many entries", "Bundle.entry")],
        )
    out, problems = [], []
    for i, e in enumerate(raw):
        request = e.get("request") if isinstance(e, dict) else None
        if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
            problems.append(
                Issue("request.method and request.url are required", f"Bundle.entry[{i}].request")
            )
            continue
        strings = ("method", "url", "ifNoneExist", "ifMatch")
        wrong = [k for k in strings if not isinstance(request.get(k, ""), str)]
        if wrong or not isinstance(e.get("fullUrl", ""), str):
            where = f"Bundle.entry[{i}]"
            problems.append(Issue("must be strings: " + ", ".join(wrong or ["fullUrl"]), where))
            continue
        out.append(
            Entry(
                i,
                request["method"].upper(),
                request["url"].lstrip("/"),
                e.get("resource"),
                e.get("fullUrl"),
                request.get("ifNoneExist"),
                request.get("ifMatch"),
            )
        )
    if problems:
        raise ValidationFailed("Invalid Bundle entries", issues=problems)
    return out


def process_bundle(services: BundleServices, req: FhirRequest) -> FhirResponse:
    bundle = parse_json(req.body)
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ValidationFailed("Expected a Bundle", issues=[Issue("not a Bundle", "Bundle")])
    kind = bundle.get("type")
    if (
        not isinstance(kind, str)  # `["batch"]` or `{}` must be 400, not an unhashable 500
        or kind not in capability.load().system_interactions
        or kind not in ("batch", "transaction")
    ):
        raise ValidationFailed(
            "Bundle.type must be batch or transaction",
            issues=[Issue("unsupported Bundle.type", "Bundle.type")],
        )
    entries = _entries(bundle)
    is_offline(req.header("x-offline-queued-at"))  # malformed: the whole Bundle is 400
    audit.describe(interaction=kind, resource_type=None)
    if kind == "transaction":
        return _transaction(services, req, entries)
    return _batch(services, req, entries)


def _transaction(services: BundleServices, req: FhirRequest, entries: list[Entry]) -> FhirResponse:
    results: dict[int, dict[str, Any]] = {}
    with services.open_uow(req) as uow:
        uow.all_or_nothing = True
        service = ResourceService(uow)
        ids = _assign_ids(req, entries, service)
        for entry in entries:
            if entry.resource is not None:
                entry.resource = _rewrite(entry.resource, ids)
        uow.pending = {_split_ref(v) for v in ids.values()}
        for entry in _processing_order(entries, ids):
            try:
                results[entry.index] = _run(services, req, uow, entry, ids)
            except AppError as err:
                err.issues = err.issues or [Issue(err.message)]
                err.issues = [
                    Issue(f"Bundle.entry[{entry.index}]: {i.message}", i.path, i.severity, i.code)
                    for i in err.issues
                ]
                raise
    return FhirResponse(
        200, _response_bundle("transaction-response", [results[e.index] for e in entries])
    )


def _batch(services: BundleServices, req: FhirRequest, entries: list[Entry]) -> FhirResponse:
    out = []
    for entry in entries:
        try:
            with services.open_uow(req) as uow:
                out.append(_run(services, req, uow, entry, {}))
        except AppError as err:
            out.append(
                {"response": {"status": str(status_for(err)), "outcome": operation_outcome(err)}}
            )
    return FhirResponse(200, _response_bundle("batch-response", out))


def _assign_ids(req: FhirRequest, entries: list[Entry], service: ResourceService) -> dict[str, str]:
    """urn:uuid fullUrl → `Type/id` for every POST entry, resolved before anything runs.

    A conditional create that matches an existing resource maps to that resource, so
    references to it point at what the server already has. The entry's interaction and
    scope are checked before its condition is (issue 11, item 8): a caller who may not
    create the type learns nothing about what matches.
    """
    ids: dict[str, str] = {}
    for entry in entries:
        if entry.method == "POST" and entry.full_url and entry.full_url.startswith("urn:uuid:"):
            rtype = entry.url.split("?")[0]
            match = None
            if entry.if_none_exist and rtype in capability.load().types:
                allow(req.principal, rtype, "create")
                match = service.find_match(rtype, entry.if_none_exist)
            ids[entry.full_url] = match.reference if match else f"{rtype}/{new_id(rtype)}"
    return ids


def _processing_order(entries: list[Entry], ids: dict[str, str]) -> list[Entry]:
    """DELETE, POST, PUT, GET (the spec's order); POSTs so that a resource is created after
    the ones it references in the same Bundle, whatever their order in the Bundle (the
    order checks read the patient and encounter from the store)."""
    by_ref = {
        ids[e.full_url]: e
        for e in entries
        if e.method == "POST" and e.full_url and e.full_url in ids
    }
    done: set[int] = set()
    posts: list[Entry] = []

    def visit(entry: Entry, path: frozenset[int]) -> None:
        if entry.index in done or entry.index in path:
            return  # a reference cycle keeps the Bundle's order
        for _p, ref in _refs(entry.resource):
            target = by_ref.get(ref)
            if target is not None and target is not entry:
                visit(target, path | {entry.index})
        done.add(entry.index)
        posts.append(entry)

    for entry in entries:
        if entry.method == "POST":
            visit(entry, frozenset())
    rank = {e.index: i for i, e in enumerate(posts)}
    return sorted(entries, key=lambda e: (ORDER.get(e.method, 9), rank.get(e.index, e.index)))


def _split_ref(reference: str) -> tuple[str, str]:
    rtype, _, rid = reference.partition("/")
    return rtype, rid


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, ids))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(v, ids) for v in node]
    return node


def _run(
    services: BundleServices,
    req: FhirRequest,
    uow: UnitOfWork,
    entry: Entry,
    ids: dict[str, str],
) -> dict[str, Any]:
    parts = urlsplit(entry.url)
    segments = [s for s in parts.path.split("/") if s]
    if not segments or segments[0] not in capability.load().types:
        raise RouteNotFound(f"Unsupported entry url {entry.url!r}")
    rtype = segments[0]
    # The Bundle's own X-Offline-Queued-At covers every entry (DESIGN §7, per entry).
    offline = is_offline(req.header("x-offline-queued-at"))
    if entry.method == "POST" and len(segments) == 1:
        allow(req.principal, rtype, "create")
        rid = ids.get(entry.full_url or "", "").partition("/")[2] or None
        result = services.writes(uow).create(
            rtype, entry.resource, condition=entry.if_none_exist, rid=rid, offline=offline
        )
        return _write_entry(req, result)
    if entry.method == "PUT" and len(segments) == 2:
        allow(req.principal, rtype, "update")
        version = None
        if entry.if_match:
            version = parse_etag_version(entry.if_match)
            if version is None:
                raise ValidationFailed("Malformed ifMatch", issues=[Issue("bad", "ifMatch")])
        result = services.writes(uow).put(
            rtype, segments[1], entry.resource, if_match=version, reason=None, offline=offline
        )
        return _write_entry(req, result)
    if entry.method == "GET":
        sub = FhirRequest(
            "GET",
            segments,
            parse_qsl(parts.query, keep_blank_values=True),
            {},
            b"",
            req.base_url,
            req.principal,
            uow=uow,
        )
        response = services.handle(sub)
        return {
            "resource": response.body,
            "response": {"status": STATUS_TEXT.get(response.status, str(response.status))},
        }
    if entry.method == "DELETE":
        raise MethodNotAllowed(not_allowed_message(rtype, "delete"))
    raise MethodNotAllowed(f"{entry.method} {entry.url} is not supported in a Bundle")


def _write_entry(req: FhirRequest, result: WriteResult) -> dict[str, Any]:
    res = result.resource
    visible = not result.matched or may_see_match(req.principal, res.resource_type)
    return {
        "fullUrl": f"{req.base_url}/{res.resource_type}/{res.id}",
        **({"resource": res.content} if visible else {}),
        "response": {
            "status": STATUS_TEXT[201 if result.created else 200],
            "location": f"{res.resource_type}/{res.id}/_history/{res.version_id}",
            "etag": f'W/"{res.version_id}"',
            "lastModified": format_instant(res.last_updated),
        },
    }


def _response_bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": kind, "entry": entries}
