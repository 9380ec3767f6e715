"""FHIR REST interactions, free of any web framework (medplum fhir-router style).

A `FhirRequest` comes in, a `FhirResponse` goes out; each interaction is a short handler
that calls one service inside one unit of work. What is allowed per type comes from the
CapabilityStatement (app/fhir/capability.py). Scopes (SMART) are checked here, on top of
the role rules the services apply.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from urllib.parse import urlencode

from app.auth.scopes import scope_allows
from app.cds.engine import CdsEngine
from app.db import Database
from app.domain.clock import format_instant, utcnow
from app.domain.lifecycle import Action
from app.domain.order_types import ORDER_RESOURCE_TYPES
from app.errors import (
    Forbidden,
    Issue,
    MethodNotAllowed,
    ResourceNotFound,
    RouteNotFound,
    ValidationFailed,
)
from app.fhir import capability
from app.fhir.http import (
    FhirRequest,
    FhirResponse,
    apply_elements,
    if_match,
    negotiate,
    parse_json,
    prefer,
    resource_headers,
)
from app.fhir.outcomes import informational
from app.services.fulfilment import Fulfilment
from app.services.orders import OrderService
from app.services.resources import ResourceService, WriteResult
from app.services.unit_of_work import UnitOfWork
from app.store import SearchPage, StoredResource
from app.store.search.query import MAX_COUNT, SearchQuery, parse_search

Handler = Callable[[FhirRequest], FhirResponse]


class FhirRouter:
    def __init__(self, database: Database, engine: CdsEngine) -> None:
        self.database = database
        self.engine = engine

    def uow(self, req: FhirRequest) -> AbstractContextManager[UnitOfWork]:
        """A new unit of work, or the enclosing transaction's for a Bundle's GET entry."""
        if req.uow is not None:
            return nullcontext(req.uow)
        assert req.principal is not None
        return UnitOfWork(self.database, req.principal, read_only=req.method == "GET")

    # ------------------------------------------------------------------ dispatch
    def handle(self, req: FhirRequest) -> FhirResponse:
        negotiate(req)
        seg, method = req.segments, req.method
        if seg == ["metadata"]:
            if method != "GET":
                raise MethodNotAllowed("metadata is read-only")
            return FhirResponse(200, capability.load().statement)
        if not seg:
            if method == "POST":
                from app.fhir.bundles import process_bundle

                return process_bundle(self, req)
            raise MethodNotAllowed("Only batch/transaction (POST) is supported at the base")
        rtype = seg[0]
        if rtype == "OperationDefinition":
            return self.operation_definition(req)
        if rtype in ("_history", "_search"):
            raise MethodNotAllowed(f"System-level {rtype} is not supported; search by type")
        cap = capability.load().types.get(rtype)
        if cap is None:
            raise RouteNotFound(f"Resource type {rtype!r} is not supported by this server")
        if len(seg) == 3 and seg[2].startswith("$"):
            return self._operation(req, cap.operations)
        interaction, handler = self._route(req)
        if interaction not in cap.interactions:
            raise MethodNotAllowed(self._not_allowed(rtype, interaction))
        self._check_scope(req, rtype, interaction)
        return handler(req)

    def _operation(self, req: FhirRequest, advertised: frozenset[str]) -> FhirResponse:
        rtype, name = req.segments[0], req.segments[2][1:]
        handlers: dict[str, Handler] = {
            "activate": self.activate,
            "acknowledge": self.acknowledge,
            "apply": self.apply,
        }
        if name not in advertised or name not in handlers:
            raise RouteNotFound(f"Operation ${name} is not supported on {rtype}")
        if req.method != "POST":
            raise MethodNotAllowed(f"${name} takes POST")
        self._check_scope(req, rtype, "update")
        return handlers[name](req)

    def operation_definition(self, req: FhirRequest) -> FhirResponse:
        """The OperationDefinitions in capability/ (readable without a token, like metadata)."""
        if req.method != "GET" or len(req.segments) != 2:
            raise MethodNotAllowed("OperationDefinitions are read-only; read them by id")
        found = capability.load().operation_definitions.get(req.segments[1])
        if found is None:
            raise ResourceNotFound(f"OperationDefinition/{req.segments[1]} not found")
        return FhirResponse(200, found)

    def _route(self, req: FhirRequest) -> tuple[str, Handler]:
        seg, method = req.segments, req.method
        n = len(seg)
        table: dict[tuple[int, str], tuple[str, Handler]] = {
            (1, "GET"): ("search-type", self.search),
            (1, "POST"): ("create", self.create),
            (2, "GET"): ("read", self.read),
            (2, "PUT"): ("update", self.update),
            (2, "DELETE"): ("delete", self._refuse),
            (2, "PATCH"): ("patch", self._refuse),
            (3, "GET"): ("history-instance", self.history),
            (4, "GET"): ("vread", self.vread),
        }
        if n == 2 and seg[1] == "_search":
            if method == "POST":
                return "search-type", self.search
            raise MethodNotAllowed("_search takes POST")
        if n == 2 and seg[1] == "_history":
            return "history-type", self._refuse
        if n >= 2 and (seg[1].startswith("$") or seg[-1].startswith("$")):
            raise RouteNotFound(f"Operation {seg[-1]} is not supported by this server")
        if n >= 3 and seg[2] != "_history":
            raise RouteNotFound("Unknown path")
        route = table.get((n, method))
        if route is None:
            raise MethodNotAllowed(f"{method} is not supported on this path")
        return route

    def _refuse(self, req: FhirRequest) -> FhirResponse:
        """Interactions this server never implements (delete, patch, type history): they are
        refused even if a CapabilityStatement edit were to advertise them."""
        raise MethodNotAllowed(f"{req.method} is not implemented on this path")

    @staticmethod
    def _not_allowed(rtype: str, interaction: str) -> str:
        if interaction == "delete":
            return (
                f"Resources are never deleted. To withdraw a {rtype}, update its status to "
                "entered-in-error (or cancel it)."
            )
        return f"{interaction} is not supported for {rtype}"

    @staticmethod
    def _check_scope(req: FhirRequest, rtype: str, interaction: str) -> None:
        action = {"search-type": "search", "create": "create", "update": "update"}.get(
            interaction, "read"
        )
        assert req.principal is not None
        if not scope_allows(
            req.principal.scopes, rtype, action, req.principal.patient_id is not None
        ):
            raise Forbidden(f"The token's scopes do not allow {action} on {rtype}")

    # ------------------------------------------------------------------ reads
    def read(self, req: FhirRequest) -> FhirResponse:
        rtype, rid = req.segments[0], req.segments[1]
        with self.uow(req) as uow:
            found = ResourceService(uow).read(rtype, rid)
        return self._resource(req, found, 200)

    def vread(self, req: FhirRequest) -> FhirResponse:
        rtype, rid, _h, vid = req.segments
        with self.uow(req) as uow:
            found = ResourceService(uow).vread(rtype, rid, vid)
        return self._resource(req, found, 200)

    def history(self, req: FhirRequest) -> FhirResponse:
        rtype, rid = req.segments[0], req.segments[1]
        count = _int_param(req, "_count", 20, MAX_COUNT)
        before_raw = req.param("_before")
        before = _int_param(req, "_before", 0, 2**31) if before_raw else None
        with self.uow(req) as uow:
            versions, total = ResourceService(uow).history(rtype, rid, count=count, before=before)
        base = f"{req.base_url}/{rtype}/{rid}/_history"
        links = [
            {"relation": "self", "url": f"{base}?{urlencode(req.params)}" if req.params else base}
        ]
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
        return FhirResponse(200, _bundle("history", total, links, entries))

    def search(self, req: FhirRequest) -> FhirResponse:
        rtype = req.segments[0]
        params = list(req.params)
        if req.method == "POST" and req.body:
            from urllib.parse import parse_qsl

            params += parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        strict = prefer(req).get("handling") == "strict"
        query = parse_search(rtype, params, strict=strict)
        self._check_includes(req, query)
        with self.uow(req) as uow:
            page = ResourceService(uow).search(query)
        return FhirResponse(200, self._searchset(req, query, page))

    def _check_includes(self, req: FhirRequest, query: SearchQuery) -> None:
        cap = capability.load().types[query.resource_type]
        for inc in query.includes:
            if f"{inc.source_type}:{inc.param}" not in cap.includes:
                raise ValidationFailed(
                    f"_include={inc.source_type}:{inc.param} not supported",
                    issues=[Issue("unsupported _include", "_include")],
                )
        for inc in query.revincludes:
            if f"{inc.source_type}:{inc.param}" not in cap.revincludes:
                raise ValidationFailed(
                    f"_revinclude={inc.source_type}:{inc.param} not supported",
                    issues=[Issue("unsupported _revinclude", "_revinclude")],
                )
            self._check_scope(req, inc.source_type, "search-type")

    def _searchset(self, req: FhirRequest, query: SearchQuery, page: SearchPage) -> dict[str, Any]:
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
        scopes = req.principal.scopes
        entries += [
            {
                "fullUrl": f"{req.base_url}/{r.resource_type}/{r.id}",
                "resource": r.json,
                "search": {"mode": "include"},
            }
            for r in page.included
            # SMART scopes narrow includes too: a type the token may not read is left out.
            if scope_allows(scopes, r.resource_type, "read", req.principal.patient_id is not None)
        ]
        if query.warnings:
            entries.append(
                {
                    "resource": informational("Search completed with warnings", query.warnings),
                    "search": {"mode": "outcome"},
                }
            )
        return _bundle("searchset", page.total, links, entries)

    # ------------------------------------------------------------------ writes
    def create(self, req: FhirRequest) -> FhirResponse:
        rtype = req.segments[0]
        body = parse_json(req.body)
        condition = req.header("if-none-exist")
        reason = _provenance_reason(req)
        with self.uow(req) as uow:
            result = self.create_in(uow, rtype, body, condition=condition, reason=reason)
        return self._written(req, result)

    def update(self, req: FhirRequest) -> FhirResponse:
        rtype, rid = req.segments[0], req.segments[1]
        body = parse_json(req.body)
        version = if_match(req)
        reason = _provenance_reason(req)
        with self.uow(req) as uow:
            result = self.put_in(uow, rtype, rid, body, version, reason)
        return self._written(req, result)

    def create_in(
        self,
        uow: UnitOfWork,
        rtype: str,
        body: Any,
        *,
        condition: str | None = None,
        reason: str | None = None,
        rid: str | None = None,
    ) -> WriteResult:
        """Create (optionally conditional); orders go through the order workflow (CDS gate).

        Shared by single requests and Bundle entries, so a Bundle cannot bypass the checks.
        """
        service = ResourceService(uow)
        create_fn = self._order_creator(uow, reason) if rtype in ORDER_RESOURCE_TYPES else None
        if condition:
            return service.conditional_create(
                rtype, body, condition, rid=rid, reason=reason, create_fn=create_fn
            )
        if create_fn is not None:
            return WriteResult(create_fn(rtype, body, rid), created=True)
        return WriteResult(service.create(rtype, body, rid=rid, reason=reason), created=True)

    def _order_creator(
        self, uow: UnitOfWork, reason: str | None
    ) -> Callable[[str, Any, str | None], StoredResource]:
        orders = OrderService(uow, self.engine)

        def create(rtype: str, doc: Any, rid: str | None) -> StoredResource:
            return orders.create(rtype, doc, rid=rid, reason=reason).order

        return create

    def put_in(
        self,
        uow: UnitOfWork,
        rtype: str,
        rid: str,
        body: Any,
        version: int | None,
        reason: str | None,
    ) -> WriteResult:
        """Orders and Tasks go through the order workflow; everything else is a plain update."""
        if rtype in ORDER_RESOURCE_TYPES:
            result, created = OrderService(uow, self.engine).put_order(
                rtype, rid, body, if_match=version, reason=reason
            )
            return WriteResult(result.order, created=created)
        if rtype == "Task" and uow.repo.read("Task", rid) is not None:
            task = Fulfilment(uow).update_task(rid, body, if_match=version, reason=reason)
            return WriteResult(task, created=False)
        return ResourceService(uow).update(rtype, rid, body, if_match=version, reason=reason)

    # ------------------------------------------------------------------ operations
    def activate(self, req: FhirRequest) -> FhirResponse:
        """`POST [type]/[id]/$activate` with If-Match (OperationDefinition order-activate)."""
        rtype, rid = req.segments[0], req.segments[1]
        version = if_match(req)
        with self.uow(req) as uow:
            result = OrderService(uow, self.engine).transition(
                rtype,
                rid,
                Action.ACTIVATE,
                expected_version=version,
                reason=_provenance_reason(req),
            )
        return self._resource(req, result.order, 200)

    def acknowledge(self, req: FhirRequest) -> FhirResponse:
        """`POST [type]/[id]/$acknowledge` with Parameters(alert, reason) and If-Match."""
        rtype, rid = req.segments[0], req.segments[1]
        alert_id, reason = _acknowledge_params(parse_json(req.body))
        version = if_match(req)
        with self.uow(req) as uow:
            result = OrderService(uow, self.engine).acknowledge(
                rtype, rid, alert_id, reason, expected_version=version
            )
        return self._resource(req, result.order, 200)

    def apply(self, req: FhirRequest) -> FhirResponse:
        """`POST PlanDefinition/[id]/$apply` with Parameters(subject, encounter): stores the
        draft orders and a RequestGroup, returns the CarePlan (app/services/order_sets.py)."""
        from app.fhir.plan_apply import apply_parameters, check_written_scopes
        from app.services.order_sets import OrderSetService

        params = apply_parameters(parse_json(req.body))
        assert req.principal is not None
        with self.uow(req) as uow:
            result = OrderSetService(uow, self.engine).apply(
                req.segments[1],
                patient_id=params.patient_id,
                encounter_id=params.encounter_id,
                practitioner=params.practitioner,
                reason=_provenance_reason(req),
            )
            check_written_scopes(req.principal, result)
        return FhirResponse(200, result.care_plan)

    def _written(self, req: FhirRequest, result: WriteResult) -> FhirResponse:
        return self._resource(
            req, result.resource, 201 if result.created else 200, location=result.created
        )

    def _resource(
        self, req: FhirRequest, res: StoredResource, status: int, *, location: bool = False
    ) -> FhirResponse:
        loc = (
            f"{req.base_url}/{res.resource_type}/{res.id}/_history/{res.version_id}"
            if location
            else None
        )
        headers = resource_headers(res, loc)
        if req.method == "GET":
            elements = req.param("_elements")
            if not elements:
                return FhirResponse(status, res.json, headers)
            return FhirResponse(status, apply_elements(res.content, elements.split(",")), headers)
        wanted = prefer(req).get("return", "representation")
        if wanted == "minimal":
            return FhirResponse(status, None, headers)
        if wanted == "operationoutcome":
            verb = "Created" if status == 201 else "Updated" if req.method == "PUT" else "Found"
            return FhirResponse(status, informational(f"{verb} {res.versioned_reference}"), headers)
        return FhirResponse(status, res.content, headers)


def _bundle(
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


def _int_param(req: FhirRequest, name: str, default: int, maximum: int) -> int:
    raw = req.param(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise ValidationFailed(
            f"{name} must be a non-negative integer", issues=[Issue("not an integer", name)]
        )
    return min(int(raw), maximum)


def _acknowledge_params(body: Any) -> tuple[str, str]:
    """Read `alert` (Reference or id) and `reason` from a Parameters resource."""
    params = body.get("parameter") if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or body.get("resourceType") != "Parameters"
        or not isinstance(params, list)
    ):
        raise ValidationFailed(
            "Expected a Parameters resource",
            issues=[Issue("Expected a Parameters resource", "Parameters")],
        )
    values: dict[str, str] = {}
    for p in params:
        if not isinstance(p, dict):
            continue
        name = p.get("name")
        ref = (
            (p.get("valueReference") or {}).get("reference")
            if isinstance(p.get("valueReference"), dict)
            else None
        )
        value = ref or p.get("valueString") or p.get("valueId")
        if isinstance(name, str) and isinstance(value, str):
            values[name] = value
    problems = [
        Issue(f"{n} is required", f"Parameters.parameter[{n}]")
        for n in ("alert", "reason")
        if not values.get(n, "").strip()
    ]
    if problems:
        raise ValidationFailed("alert and reason are required", issues=problems)
    return values["alert"].removeprefix("DetectedIssue/"), values["reason"]


def _provenance_reason(req: FhirRequest) -> str | None:
    """The reason from an `X-Provenance` header, if the client sent one.

    See: https://hl7.org/fhir/R4/provenance.html#header
    """
    raw = req.header("x-provenance")
    if not raw:
        return None
    prov = parse_json(raw.encode())
    if not isinstance(prov, dict):
        return None
    reasons = prov.get("reason") or []
    texts = [
        r.get("text")
        or next((c.get("display") or c.get("code") for c in r.get("coding", [])), None)
        for r in reasons
        if isinstance(r, dict)
    ]
    text = "; ".join(t for t in texts if t)
    return text or None


__all__ = ["FhirRouter", "ResourceNotFound"]
