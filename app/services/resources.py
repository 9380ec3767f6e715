"""Generic FHIR resource use cases: create, conditional create, update, read, history, search.

Every write validates the resource, checks the caller's role, checks that its references
resolve within the tenant (so a reference to another tenant's resource fails exactly like a
reference to nothing), stores it through the repository and records Provenance, all inside
the caller's unit of work.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from app.domain import access
from app.domain.fhir_models import validate_resource
from app.domain.ids import new_id
from app.domain.numbers import parse_count
from app.domain.order_types import ORDER_RESOURCE_TYPES
from app.errors import (
    Issue,
    MultipleMatches,
    ResourceNotFound,
    ValidationFailed,
    VersionConflict,
)
from app.services import provenance
from app.services.unit_of_work import UnitOfWork
from app.store import IdTaken, SearchPage, StoredResource
from app.store.search.definitions import load_definitions
from app.store.search.extract import compartment_patient, parse_reference
from app.store.search.query import SearchQuery, parse_search


@dataclass(frozen=True)
class WriteResult:
    resource: StoredResource
    created: bool
    #: A conditional create found this existing resource: the caller may see it only with
    #: read rights (issue 11, item 8), which the face checks (roles and SMART scopes).
    matched: bool = False


def references(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every (path, reference string) in a resource."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield path, value
            else:
                yield from references(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from references(item, f"{path}[{i}]")


def check_references(
    uow: UnitOfWork,
    resource_type: str,
    body: dict[str, Any],
    *,
    known: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
) -> None:
    """Relative references to types this server stores must exist in the caller's tenant.

    Resources a transaction is about to create (`uow.pending`) count as present, and so do
    those the caller has just read in this unit of work (`known`).
    """
    pending = uow.pending | known
    stored = load_definitions()
    wanted: dict[tuple[str, str], str] = {}
    dangling = [
        Issue(
            f"Reference {ref} does not resolve to any resource",
            f"{resource_type}.{path}",
            code="not-found",
        )
        for path, ref in references(body)
        if ref.startswith(("urn:uuid:", "urn:oid:"))
    ]
    if dangling:  # a transaction rewrites the ones it can resolve before we get here
        raise ValidationFailed("Unresolvable reference(s)", issues=dangling)
    for path, ref in references(body):
        parsed = parse_reference(ref)
        if parsed and parsed[0] in stored and "://" not in ref and parsed not in pending:
            wanted.setdefault(parsed, f"{resource_type}.{path}")
    if not wanted:
        return
    found = uow.repo.existing(wanted)
    missing = [
        Issue(f"Reference {t}/{i} not found", wanted[(t, i)], code="not-found")
        for (t, i) in wanted
        if (t, i) not in found
    ]
    if missing:
        raise ValidationFailed("Unresolvable reference(s)", issues=missing)


def _not_an_order(resource_type: str) -> None:
    """Orders are written only through OrderService (state machine, CDS): a caller that
    reaches the generic path with one is a bug, and must not silently bypass the checks."""
    if resource_type in ORDER_RESOURCE_TYPES:
        raise TypeError(f"{resource_type} is written through OrderService, not ResourceService")


def find_all(
    uow: UnitOfWork, resource_type: str, params: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Every resource matching `params` (all pages), as JSON."""
    query = parse_search(resource_type, params, strict=True)
    return [r.content for r in uow.repo.search_all(query)]


def conditional_key(resource_type: str, query: SearchQuery) -> str:
    """A stable hash of the match URL, so the same condition always claims the same key."""
    canonical = "&".join(f"{k}={v}" for k, v in sorted(query.echo))
    return hashlib.sha256(f"{resource_type}?{canonical}".encode()).hexdigest()


class ResourceService:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.principal = uow.principal

    # ------------------------------------------------------------------ reads
    def read(self, resource_type: str, rid: str) -> StoredResource:
        access.require_read(self.principal, resource_type)
        found = self.uow.repo.read(resource_type, rid)
        if found is None:
            raise ResourceNotFound(f"{resource_type}/{rid} not found")
        return found

    def vread(self, resource_type: str, rid: str, version: str) -> StoredResource:
        access.require_read(self.principal, resource_type)
        number = parse_count(version)
        found = None if number is None else self.uow.repo.vread(resource_type, rid, number)
        if found is None:
            raise ResourceNotFound(f"{resource_type}/{rid}/_history/{version} not found")
        return found

    def history(
        self, resource_type: str, rid: str, *, count: int, before: int | None
    ) -> tuple[list[StoredResource], int]:
        access.require_read(self.principal, resource_type)
        found = self.uow.repo.history(resource_type, rid, count=count, before_version=before)
        if found is None:
            raise ResourceNotFound(f"{resource_type}/{rid} not found")
        return found

    def search_params(
        self, resource_type: str, params: list[tuple[str, str]]
    ) -> list[StoredResource]:
        """A search from parameter pairs (strict: an unknown parameter is a bug here)."""
        query = parse_search(resource_type, params, strict=True)
        query.with_total = False
        return self.search(query).resources

    def search(self, query: SearchQuery) -> SearchPage:
        access.require_read(self.principal, query.resource_type)
        return self.uow.repo.search(query)

    # ------------------------------------------------------------------ writes
    def _prepare(self, resource_type: str, body: Any) -> dict[str, Any]:
        access.require(self.principal, access.write_action(resource_type))
        validated = validate_resource(resource_type, body)
        check_references(self.uow, resource_type, validated)
        return validated

    def create(
        self, resource_type: str, body: Any, *, rid: str | None = None, reason: str | None = None
    ) -> StoredResource:
        _not_an_order(resource_type)
        doc = self._prepare(resource_type, body)
        stored = self.uow.repo.create(resource_type, rid or new_id(resource_type), doc)
        provenance.record(self.uow.repo, self.principal, stored, activity="CREATE", reason=reason)
        return stored

    def find_match(self, resource_type: str, if_none_exist: str) -> StoredResource | None:
        """The resource an If-None-Exist condition names. Only a caller who may write the type
        learns anything (even "more than one match"), so the role check comes first."""
        access.require(self.principal, access.write_action(resource_type))
        return self._single_match(_condition(resource_type, if_none_exist))

    def conditional_create(
        self,
        resource_type: str,
        body: Any,
        if_none_exist: str,
        *,
        rid: str | None = None,
        reason: str | None = None,
        create_fn: Callable[[str, Any, str | None], StoredResource] | None = None,
    ) -> WriteResult:
        """If-None-Exist: 0 matches → create, 1 → return it (200), more → 412.

        A unique key row per condition makes racing identical requests create exactly one
        resource (see Repository.claim_conditional_key).
        See: https://hl7.org/fhir/R4/http.html#ccreate
        """
        doc = self._prepare(resource_type, body)
        query = _condition(resource_type, if_none_exist)
        match = self._single_match(query)
        if match is not None:
            return WriteResult(match, created=False, matched=True)
        rid = rid or new_id(resource_type)
        key = conditional_key(resource_type, query)
        if not self.uow.repo.claim_conditional_key(resource_type, key, rid):
            match = self._single_match(query)
            if match is not None:
                return WriteResult(match, created=False, matched=True)
            # The earlier holder no longer matches (its identifier changed): take the key over.
            self.uow.repo.reassign_conditional_key(resource_type, key, rid)
        if create_fn is not None:  # orders: the order workflow creates (and CDS-checks) it
            return WriteResult(create_fn(resource_type, doc, rid), created=True)
        stored = self.uow.repo.create(resource_type, rid, doc)
        provenance.record(self.uow.repo, self.principal, stored, activity="CREATE", reason=reason)
        return WriteResult(stored, created=True)

    def _single_match(self, query: SearchQuery) -> StoredResource | None:
        """0 or 1 match (2 fetched to tell "more than one"); the caller's query is untouched."""
        page = self.uow.repo.search(dataclasses.replace(query, count=2, with_total=False))
        if len(page.resources) > 1:
            raise MultipleMatches("The condition matches more than one resource")
        return page.resources[0] if page.resources else None

    def update(
        self,
        resource_type: str,
        rid: str,
        body: Any,
        *,
        if_match: int | None,
        reason: str | None = None,
    ) -> WriteResult:
        """PUT: version-aware with If-Match; update-as-create for a new client id. The URL id
        is checked against the body by the caller (app/services/writes.py, every type).

        See: https://hl7.org/fhir/R4/http.html#update and #concurrency
        """
        _not_an_order(resource_type)
        doc = self._prepare(resource_type, body)
        current = self.uow.repo.read(resource_type, rid, for_update=if_match is None)
        if current is None:
            if if_match is not None:
                raise VersionConflict(f"{resource_type}/{rid} does not exist at any version")
            try:
                stored = self.uow.repo.create(resource_type, rid, doc, may_exist=True)
            except IdTaken as taken:
                # Another PUT created it first and has committed: without If-Match the client
                # asked for "this content now", so apply it as an update on top (last writer wins).
                current = self.uow.repo.read(resource_type, rid, for_update=True)
                if current is None:  # the winner is not visible to us: report, don't guess
                    msg = f"{resource_type}/{rid} was created concurrently"
                    raise VersionConflict(msg) from taken
            else:
                provenance.record(
                    self.uow.repo, self.principal, stored, activity="CREATE", reason=reason
                )
                return WriteResult(stored, created=True)
        check_same_patient(resource_type, current, doc)
        expected = if_match if if_match is not None else current.version_id
        stored = self.uow.repo.update(resource_type, rid, doc, expected)
        provenance.record(self.uow.repo, self.principal, stored, activity="UPDATE", reason=reason)
        return WriteResult(stored, created=False)


def check_same_patient(resource_type: str, current: StoredResource, doc: dict[str, Any]) -> None:
    """The patient a resource is about (an order's or Encounter's `subject`, a Task's `for`,
    an allergy's `patient`) cannot change once written: every version of a resource must
    belong to one patient's compartment (issue 11, item 4). 400 otherwise."""
    definition = load_definitions().get(resource_type)
    if definition is None or definition.compartment in (None, "_self", "_target"):
        return
    before = compartment_patient(definition, current.content)
    after = compartment_patient(definition, doc)
    if before != after:
        path = f"{resource_type}.{definition.compartment}"
        msg = f"{path} cannot change once written (it is Patient/{before}); enter a new one"
        raise ValidationFailed(msg, issues=[Issue(msg, path)])


def _condition(resource_type: str, if_none_exist: str) -> SearchQuery:
    text = if_none_exist.split("?", 1)[-1]
    pairs = parse_qsl(text, keep_blank_values=True)
    if not pairs:
        raise ValidationFailed("If-None-Exist is empty", issues=[Issue("empty", "If-None-Exist")])
    query = parse_search(resource_type, pairs, strict=True)
    if not query.criteria:
        raise ValidationFailed(
            "If-None-Exist has no search criteria", issues=[Issue("no criteria", "If-None-Exist")]
        )
    return query
