"""The framework-free FHIR router (app/fhir/router.py) with fake services: its own rules
— routing, advertised interactions, SMART scopes, If-Match, Prefer, rendering — without
storage or Flask. The services behind it are tested end to end in tests/api/.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from app.auth import Principal
from app.domain.lifecycle import Action
from app.errors import Forbidden, MethodNotAllowed, ResourceNotFound, RouteNotFound
from app.fhir.http import FhirRequest
from app.fhir.router import FhirRouter, FhirServices
from app.services.resources import WriteResult
from app.store import SearchPage, StoredResource

BASE = "https://fhir.example/fhir/R4"
WHEN = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def _stored(rtype: str, rid: str, version: int = 1, **content: Any) -> StoredResource:
    doc = {"resourceType": rtype, "id": rid, "meta": {"versionId": str(version)}, **content}
    return StoredResource(rtype, rid, version, WHEN, doc)


@dataclass
class Calls:
    """What the router asked of the service layer."""

    log: list[tuple[Any, ...]] = field(default_factory=list)
    uows: list[bool] = field(default_factory=list)  # read_only of each unit of work opened


class FakeResources:
    def __init__(self, calls: Calls, store: dict[tuple[str, str], StoredResource]) -> None:
        self.calls, self.store = calls, store

    def read(self, rtype: str, rid: str) -> StoredResource:
        self.calls.log.append(("read", rtype, rid))
        if (rtype, rid) not in self.store:
            raise ResourceNotFound(f"{rtype}/{rid} not found")
        return self.store[(rtype, rid)]

    def search(self, query: Any) -> SearchPage:
        self.calls.log.append(("search", query.resource_type, tuple(query.echo), query.count))
        found = [r for (t, _i), r in self.store.items() if t == query.resource_type]
        return SearchPage(found, len(found), None, None)


class FakeWrites:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def create(self, rtype: str, body: Any, **kw: Any) -> WriteResult:
        self.calls.log.append(("create", rtype, kw.get("condition"), kw.get("reason")))
        return WriteResult(_stored(rtype, "new-1", 1, **{"status": body.get("status")}), True)

    def put(self, rtype: str, rid: str, body: Any, **kw: Any) -> WriteResult:
        self.calls.log.append(("put", rtype, rid, kw["if_match"]))
        return WriteResult(_stored(rtype, rid, (kw["if_match"] or 0) + 1), False)


class FakeOrders:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def transition(self, rtype: str, rid: str, action: Action, **kw: Any) -> Any:
        self.calls.log.append(("transition", rtype, rid, action, kw["expected_version"]))
        return SimpleNamespace(order=_stored(rtype, rid, kw["expected_version"] + 1))


def _router(store: dict[tuple[str, str], StoredResource] | None = None) -> tuple[FhirRouter, Calls]:
    calls = Calls()

    def open_uow(principal: Principal, read_only: bool) -> Any:
        calls.uows.append(read_only)
        return nullcontext(SimpleNamespace(principal=principal))

    services = FhirServices(
        open_uow=open_uow,
        resources=lambda _uow: FakeResources(calls, store or {}),  # type: ignore[arg-type,return-value]
        writes=lambda _uow: FakeWrites(calls),  # type: ignore[arg-type,return-value]
        orders=lambda _uow: FakeOrders(calls),  # type: ignore[arg-type,return-value]
        order_sets=lambda _uow: pytest.fail("no order set expected"),
    )
    return FhirRouter(services), calls


def _principal(*scopes: str) -> Principal:
    return Principal(
        "dr-1", "t1", frozenset({"CLINICIAN"}), frozenset({"t1"}), scopes=frozenset(scopes)
    )


def _req(
    method: str, path: str, body: Any = None, principal: Principal | None = None, **headers: str
) -> FhirRequest:
    path, _, qs = path.partition("?")
    params = [tuple(p.split("=", 1)) for p in qs.split("&") if p]
    raw = orjson.dumps(body) if body is not None else b""
    hdrs = {k.replace("_", "-").lower(): v for k, v in headers.items()}
    if raw:
        hdrs.setdefault("content-type", "application/fhir+json")
    return FhirRequest(
        method,
        [s for s in path.split("/") if s],
        params,
        hdrs,
        raw,
        BASE,
        principal or _principal(),
    )  # type: ignore[arg-type]


def test_read_renders_the_resource_with_its_version_headers_in_a_read_only_unit() -> None:
    router, calls = _router({("Patient", "p1"): _stored("Patient", "p1", 3)})
    resp = router.handle(_req("GET", "Patient/p1"))
    assert resp.status == 200
    assert resp.headers["ETag"] == 'W/"3"'
    assert resp.headers["Last-Modified"] == "Mon, 02 Nov 2026 09:30:00 GMT"
    assert calls.log == [("read", "Patient", "p1")]
    assert calls.uows == [True]


def test_create_is_201_with_a_versioned_location_and_the_provenance_reason() -> None:
    router, calls = _router()
    prov = orjson.dumps({"resourceType": "Provenance", "reason": [{"text": "ward round"}]}).decode()
    resp = router.handle(
        _req(
            "POST",
            "ServiceRequest",
            {"resourceType": "ServiceRequest", "status": "draft"},
            x_provenance=prov,
        )
    )
    assert resp.status == 201
    assert resp.headers["Location"] == f"{BASE}/ServiceRequest/new-1/_history/1"
    assert calls.log == [("create", "ServiceRequest", None, "ward round")]
    assert calls.uows == [False]


def test_conditional_create_passes_the_condition_through() -> None:
    router, calls = _router()
    router.handle(
        _req("POST", "Patient", {"resourceType": "Patient"}, if_none_exist="identifier=mrn|1")
    )
    assert calls.log == [("create", "Patient", "identifier=mrn|1", None)]


def test_update_reads_if_match_as_the_expected_version() -> None:
    router, calls = _router()
    resp = router.handle(
        _req("PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1"}, if_match='W/"2"')
    )
    assert resp.status == 200
    assert resp.headers["ETag"] == 'W/"3"'
    assert calls.log == [("put", "Patient", "p1", 2)]


def test_prefer_return_minimal_sends_no_body() -> None:
    router, _calls = _router()
    resp = router.handle(
        _req("POST", "Patient", {"resourceType": "Patient"}, prefer="return=minimal")
    )
    assert resp.status == 201 and resp.body is None


def test_delete_is_refused_with_advice_and_reaches_no_service() -> None:
    router, calls = _router({("ServiceRequest", "o1"): _stored("ServiceRequest", "o1")})
    with pytest.raises(MethodNotAllowed) as err:
        router.handle(_req("DELETE", "ServiceRequest/o1"))
    assert "entered-in-error" in err.value.message
    assert calls.log == [] and calls.uows == []


def test_an_unsupported_type_is_not_found() -> None:
    router, calls = _router()
    with pytest.raises(RouteNotFound):
        router.handle(_req("GET", "Observation/x"))
    assert calls.log == []


def test_scopes_refuse_a_write_before_any_service_runs() -> None:
    router, calls = _router()
    with pytest.raises(Forbidden):
        router.handle(
            _req(
                "POST",
                "ServiceRequest",
                {"resourceType": "ServiceRequest"},
                principal=_principal("user/ServiceRequest.read"),
            )
        )
    assert calls.log == [] and calls.uows == []


def test_activate_takes_post_with_if_match_and_runs_the_activate_transition() -> None:
    router, calls = _router()
    with pytest.raises(MethodNotAllowed):
        router.handle(_req("GET", "ServiceRequest/o1/$activate"))
    resp = router.handle(_req("POST", "ServiceRequest/o1/$activate", if_match='W/"4"'))
    assert resp.status == 200
    assert calls.log == [("transition", "ServiceRequest", "o1", Action.ACTIVATE, 4)]


def test_an_unknown_operation_is_not_found() -> None:
    router, _calls = _router()
    with pytest.raises(RouteNotFound):
        router.handle(_req("POST", "ServiceRequest/o1/$explode"))


def test_search_renders_a_searchset_whose_self_link_keeps_the_query() -> None:
    router, calls = _router({("ServiceRequest", "o1"): _stored("ServiceRequest", "o1")})
    resp = router.handle(_req("GET", "ServiceRequest?status=active&_count=2"))
    body = resp.body
    assert isinstance(body, dict)
    assert body["type"] == "searchset" and body["total"] == 1
    assert body["link"][0] == {
        "relation": "self",
        "url": f"{BASE}/ServiceRequest?status=active&_count=2",
    }
    assert body["entry"][0]["fullUrl"] == f"{BASE}/ServiceRequest/o1"
    assert calls.log == [("search", "ServiceRequest", (("status", "active"),), 2)]


def test_metadata_needs_no_principal_and_no_service() -> None:
    router, calls = _router()
    req = _req("GET", "metadata")
    req.principal = None
    resp = router.handle(req)
    assert isinstance(resp.body, dict) and resp.body["resourceType"] == "CapabilityStatement"
    assert calls.uows == []
