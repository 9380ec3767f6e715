"""FHIR REST interactions, free of any web framework (medplum fhir-router style).

A `FhirRequest` comes in, a `FhirResponse` goes out; each interaction is a short handler
that calls one service inside one unit of work. What is allowed per type comes from the
CapabilityStatement (app/fhir/capability.py). Scopes (SMART) are checked here, on top of
the role rules the services apply.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from urllib.parse import parse_qsl

from app.auth import Principal
from app.cds.engine import CdsEngine
from app.db import Database
from app.domain.endpoints import EndpointPolicy
from app.domain.lifecycle import Action
from app.domain.offline import is_offline, refuse_offline_order_set
from app.errors import (
    Issue,
    MethodNotAllowed,
    ResourceNotFound,
    RouteNotFound,
    ValidationFailed,
)
from app.fhir import capability, subscription_ops
from app.fhir.bundles import BundleServices, process_bundle
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
from app.fhir.interactions import check_scope, may_see_match, not_allowed_message
from app.fhir.outcomes import informational
from app.fhir.params import acknowledge_params, int_param, provenance_reason
from app.fhir.plan_apply import apply_parameters, check_written_scopes
from app.fhir.searchset import history_bundle, searchset
from app.services import audit
from app.services.order_sets import OrderSetService
from app.services.orders import OrderService
from app.services.resources import ResourceService, WriteResult
from app.services.subscriptions import SubscriptionService, number_committed
from app.services.unit_of_work import UnitOfWork
from app.services.writes import ResourceWrites
from app.store import StoredResource
from app.store.search.query import MAX_COUNT, SearchQuery, parse_search

Handler = Callable[[FhirRequest], FhirResponse]
#: Operations that change nothing (backport IG `$status`, `$events`).
READ_OPERATIONS = frozenset({"status", "events"})


@dataclass(frozen=True)
class FhirServices:
    """The service layer as the router uses it, one factory per use case. The FHIR routes
    pass the real ones (`FhirServices.over`); unit tests pass fakes, so the router's own
    rules (routing, advertised interactions, scopes, rendering) are tested without storage.
    """

    open_uow: Callable[[Principal, bool], AbstractContextManager[UnitOfWork]]
    resources: Callable[[UnitOfWork], ResourceService]
    writes: Callable[[UnitOfWork], ResourceWrites]
    orders: Callable[[UnitOfWork], OrderService]
    order_sets: Callable[[UnitOfWork], OrderSetService]
    subscriptions: Callable[[UnitOfWork], SubscriptionService] | None = None
    #: Number a subscription's committed staged events before `$status`/`$events` read.
    number_events: Callable[[Principal, str], None] | None = None

    @classmethod
    def over(
        cls, database: Database, engine: CdsEngine, endpoints: EndpointPolicy | None = None
    ) -> FhirServices:
        policy = endpoints or EndpointPolicy(dev_mode=False)
        return cls(
            open_uow=lambda principal, read_only: UnitOfWork(
                database, principal, read_only=read_only
            ),
            resources=ResourceService,
            writes=lambda uow: ResourceWrites(uow, engine, policy),
            orders=lambda uow: OrderService(uow, engine),
            order_sets=lambda uow: OrderSetService(uow, engine),
            subscriptions=lambda uow: SubscriptionService(uow, policy),
            number_events=lambda principal, rid: number_committed(database, principal, rid),
        )


class FhirRouter:
    def __init__(self, services: FhirServices) -> None:
        self.services = services

    def uow(self, req: FhirRequest) -> AbstractContextManager[UnitOfWork]:
        """A new unit of work, or the enclosing transaction's for a Bundle's GET entry."""
        if req.uow is not None:
            return nullcontext(req.uow)
        assert req.principal is not None
        return self.services.open_uow(req.principal, req.method == "GET")

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
                bundle_services = BundleServices(self.uow, self.services.writes, self.handle)
                return process_bundle(bundle_services, req)
            raise MethodNotAllowed("Only batch/transaction (POST) is supported at the base")
        rtype = seg[0]
        if rtype == "OperationDefinition":
            return self.operation_definition(req)
        if rtype == "SubscriptionTopic":
            if method != "GET" or len(seg) > 2:
                raise MethodNotAllowed("Subscription topics are read-only")
            return subscription_ops.topics(req)
        if rtype in ("_history", "_search"):
            raise MethodNotAllowed(f"System-level {rtype} is not supported; search by type")
        cap = capability.load().types.get(rtype)
        if cap is None:
            raise RouteNotFound(f"Resource type {rtype!r} is not supported by this server")
        if len(seg) == 3 and seg[2].startswith("$"):
            if req.uow is None:
                audit.describe(interaction="operation", resource_type=rtype, endpoint=seg[2])
            return self._operation(req, cap.operations)
        interaction, handler = self._route(req)
        if interaction not in cap.interactions:
            raise MethodNotAllowed(not_allowed_message(rtype, interaction))
        check_scope(req.principal, rtype, interaction)
        if req.uow is None:  # a Bundle's GET entry is part of the Bundle's event
            audit.describe(interaction=interaction, resource_type=rtype)
        if rtype == "AuditEvent":
            audit.flush_pending()  # this process's buffered reads are findable at once
        return handler(req)

    def _operation(self, req: FhirRequest, advertised: frozenset[str]) -> FhirResponse:
        rtype, name = req.segments[0], req.segments[2][1:]
        handlers: dict[str, Handler] = {
            "activate": self.activate,
            "acknowledge": self.acknowledge,
            "apply": self.apply,
            "status": self.subscription_status,
            "events": self.subscription_events,
        }
        if name not in advertised or name not in handlers:
            raise RouteNotFound(f"Operation ${name} is not supported on {rtype}")
        if name in READ_OPERATIONS:  # affect nothing: GET (or POST) with read rights
            if req.method not in ("GET", "POST"):
                raise MethodNotAllowed(f"${name} takes GET or POST")
            check_scope(req.principal, rtype, "read")
            return handlers[name](req)
        if req.method != "POST":
            raise MethodNotAllowed(f"${name} takes POST")
        # $activate/$acknowledge change the order; $apply reads the PlanDefinition and
        # creates what it writes (checked on the result: check_written_scopes).
        check_scope(req.principal, rtype, "read" if name == "apply" else "update")
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

    # ------------------------------------------------------------------ reads
    def read(self, req: FhirRequest) -> FhirResponse:
        rtype, rid = req.segments[0], req.segments[1]
        with self.uow(req) as uow:
            found = self.services.resources(uow).read(rtype, rid)
        return self._resource(req, found, 200)

    def vread(self, req: FhirRequest) -> FhirResponse:
        rtype, rid, _h, vid = req.segments
        with self.uow(req) as uow:
            found = self.services.resources(uow).vread(rtype, rid, vid)
        return self._resource(req, found, 200)

    def history(self, req: FhirRequest) -> FhirResponse:
        rtype, rid = req.segments[0], req.segments[1]
        count = int_param(req, "_count", 20, MAX_COUNT)
        before_raw = req.param("_before")
        before = int_param(req, "_before", 0, 2**31) if before_raw else None
        with self.uow(req) as uow:
            versions, total = self.services.resources(uow).history(
                rtype, rid, count=count, before=before
            )
        return FhirResponse(200, history_bundle(req, rtype, rid, versions, total, count))

    def search(self, req: FhirRequest) -> FhirResponse:
        rtype = req.segments[0]
        params = list(req.params)
        if req.method == "POST" and req.body:
            form = req.body.decode("utf-8", "replace")
            params += parse_qsl(form, keep_blank_values=True)
            if req.uow is None:
                audit.describe(query=form[: audit.MAX_QUERY_CHARS])
        strict = prefer(req).get("handling") == "strict"
        query = parse_search(rtype, params, strict=strict)
        self._check_includes(req, query)
        with self.uow(req) as uow:
            page = self.services.resources(uow).search(query)
        return FhirResponse(200, searchset(req, query, page))

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
            check_scope(req.principal, inc.source_type, "search-type")

    # ------------------------------------------------------------------ writes
    def create(self, req: FhirRequest) -> FhirResponse:
        rtype = req.segments[0]
        body = parse_json(req.body)
        condition = req.header("if-none-exist")
        reason = provenance_reason(req)
        offline = is_offline(req.header("x-offline-queued-at"))
        with self.uow(req) as uow:
            result = self.services.writes(uow).create(
                rtype, body, condition=condition, reason=reason, offline=offline
            )
        return self._written(req, result)

    def update(self, req: FhirRequest) -> FhirResponse:
        rtype, rid = req.segments[0], req.segments[1]
        body = parse_json(req.body)
        version = if_match(req)
        reason = provenance_reason(req)
        offline = is_offline(req.header("x-offline-queued-at"))
        with self.uow(req) as uow:
            result = self.services.writes(uow).put(
                rtype, rid, body, if_match=version, reason=reason, offline=offline
            )
        return self._written(req, result)

    # ------------------------------------------------------------------ operations
    def activate(self, req: FhirRequest) -> FhirResponse:
        """`POST [type]/[id]/$activate` with If-Match (OperationDefinition order-activate)."""
        rtype, rid = req.segments[0], req.segments[1]
        version = if_match(req)
        with self.uow(req) as uow:
            result = self.services.orders(uow).transition(
                rtype,
                rid,
                Action.ACTIVATE,
                expected_version=version,
                reason=provenance_reason(req),
            )
        return self._resource(req, result.order, 200)

    def acknowledge(self, req: FhirRequest) -> FhirResponse:
        """`POST [type]/[id]/$acknowledge` with Parameters(alert, reason) and If-Match."""
        rtype, rid = req.segments[0], req.segments[1]
        alert_id, reason = acknowledge_params(parse_json(req.body))
        version = if_match(req)
        with self.uow(req) as uow:
            result = self.services.orders(uow).acknowledge(
                rtype, rid, alert_id, reason, expected_version=version
            )
        return self._resource(req, result.order, 200)

    def apply(self, req: FhirRequest) -> FhirResponse:
        """`POST PlanDefinition/[id]/$apply` with Parameters(subject, encounter): stores the
        draft orders and a RequestGroup, returns the CarePlan (app/services/order_sets.py)."""
        if is_offline(req.header("x-offline-queued-at")):
            refuse_offline_order_set()
        params = apply_parameters(parse_json(req.body))
        assert req.principal is not None
        with self.uow(req) as uow:
            result = self.services.order_sets(uow).apply(
                req.segments[1],
                patient_id=params.patient_id,
                encounter_id=params.encounter_id,
                practitioner=params.practitioner,
                reason=provenance_reason(req),
            )
            check_written_scopes(req.principal, result)
        return FhirResponse(200, result.care_plan)

    def subscription_status(self, req: FhirRequest) -> FhirResponse:
        """`Subscription/[id]/$status` (backport IG OperationDefinition of that name)."""
        self._number(req)
        with self.uow(req) as uow:
            return subscription_ops.status(req, self._subscriptions(uow))

    def subscription_events(self, req: FhirRequest) -> FhirResponse:
        """`Subscription/[id]/$events`: catch up by event number (backport IG)."""
        self._number(req)
        with self.uow(req) as uow:
            return subscription_ops.events(req, self._subscriptions(uow))

    def _number(self, req: FhirRequest) -> None:
        """Inside a transaction Bundle the enclosing transaction reads what it sees."""
        if req.uow is None and self.services.number_events is not None:
            assert req.principal is not None
            self.services.number_events(req.principal, req.segments[1])

    def _subscriptions(self, uow: UnitOfWork) -> SubscriptionService:
        assert self.services.subscriptions is not None, "FhirServices.over provides it"
        return self.services.subscriptions(uow)

    def _written(self, req: FhirRequest, result: WriteResult) -> FhirResponse:
        if result.matched and not may_see_match(req.principal, result.resource.resource_type):
            # A conditional create matched, but this caller may not read: where, not what.
            res = result.resource
            loc = f"{req.base_url}/{res.resource_type}/{res.id}/_history/{res.version_id}"
            return FhirResponse(200, None, {"Location": loc, "ETag": f'W/"{res.version_id}"'})
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
