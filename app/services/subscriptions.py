"""Subscription use cases: create, update, `$status`, `$events` (R4 Subscriptions Backport IG).

A Subscription is stored as a FHIR resource (versions, history, search come with it) and
its delivery configuration in the outbox tables (app/store/outbox.py). The channel headers
(an integrator's `Authorization`, say) are kept in full only there: the resource shows
`Name: ***`, so no read, search or history ever returns a secret. Sending a masked header
back on update keeps the stored value.

Status is the server's: a new or changed subscription is `requested` until the delivery
worker's handshake succeeds (`active`); repeated failures make it `error`; a client may set
`off` (stop) or `requested` (try again).
See: http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition-backport-subscription.html
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.auth import Principal
from app.db import Database
from app.domain import access
from app.domain.clock import utcnow
from app.domain.endpoints import EndpointPolicy
from app.domain.fhir_models import validate_resource
from app.domain.ids import new_id
from app.domain.topics import Filter, load_topics, parse_filter
from app.errors import (
    Issue,
    ResourceNotFound,
    ServiceUnavailable,
    ValidationFailed,
    VersionConflict,
)
from app.services import provenance
from app.services.outbox import number_events
from app.services.resources import WriteResult
from app.services.unit_of_work import UnitOfWork
from app.store import StoredResource

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
PROFILE = BACKPORT + "backport-subscription"
FILTER_EXT = BACKPORT + "backport-filter-criteria"
CONTENT_EXT = BACKPORT + "backport-payload-content"
HEARTBEAT_EXT = BACKPORT + "backport-heartbeat-period"
TIMEOUT_EXT = BACKPORT + "backport-timeout"
MAX_COUNT_EXT = BACKPORT + "backport-max-count"
CONTENTS = ("empty", "id-only", "full-resource")
MASK = "***"
DEFAULT_TIMEOUT, MAX_TIMEOUT = 10, 30
DEFAULT_MAX_COUNT, MAX_MAX_COUNT = 20, 100
MIN_HEARTBEAT = 10


@dataclass(frozen=True)
class SubscriptionView:
    """A subscription as `$status` and `$events` report it."""

    resource: StoredResource
    status: str
    topic: str
    events_count: int
    delivered_through: int
    content: str
    last_error: str | None


def _ext(exts: Any, url: str) -> Any:
    for e in exts or []:
        if isinstance(e, dict) and e.get("url") == url:
            return next((v for k, v in e.items() if k.startswith("value")), None)
    return None


class SubscriptionService:
    def __init__(self, uow: UnitOfWork, policy: EndpointPolicy) -> None:
        self.uow = uow
        self.repo = uow.repo
        self.principal = uow.principal
        self.policy = policy
        self.store = uow.outbox.store
        tenant, index = self.principal.tenant_id, uow.outbox.index
        # Order writes in this process see the change at once (others within INDEX_SECONDS).
        self._forget = lambda: index.invalidate(tenant)

    # ------------------------------------------------------------------ writes
    def create(
        self, body: Any, *, rid: str | None = None, reason: str | None = None
    ) -> StoredResource:
        # the role table's write rule for the type, as every other write path reads it
        access.require(self.principal, access.write_action("Subscription"))
        doc = validate_resource("Subscription", body)
        config, headers = self._config(doc, stored_headers=[])
        config["status"] = "requested"
        doc = self._shown(doc, headers, "requested")
        rid = rid or new_id("Subscription")
        stored = provenance.write_new(self.repo, self.principal, "Subscription", rid, doc, reason)
        self.store.create_subscription(rid, {**config, "headers": headers}, utcnow())
        self.uow.after_commit.append(self._forget)
        return stored

    def update(
        self, rid: str, body: Any, *, if_match: int | None, reason: str | None
    ) -> WriteResult:
        """PUT. A new id is a create; the topic of an existing subscription cannot change
        (its event numbers count that topic's events); `active`/`error` are the server's."""
        access.require(self.principal, access.write_action("Subscription"))
        current = self.repo.read("Subscription", rid, for_update=True)
        if current is None:
            if if_match is not None:
                raise VersionConflict(f"Subscription/{rid} does not exist at any version")
            return WriteResult(self.create(body, rid=rid, reason=reason), created=True)
        state = self.store.subscription(rid, for_update=True)
        assert state is not None, "a Subscription resource always has its outbox row"
        doc = validate_resource("Subscription", body)
        config, headers = self._config(doc, stored_headers=list(state.headers))
        if config["topic"] != state.topic:
            msg = "A subscription's topic (criteria) cannot change; create a new Subscription"
            raise ValidationFailed(msg, issues=[Issue(msg, "Subscription.criteria")])
        wanted = doc["status"]
        if wanted not in ("requested", "off", state.status):
            msg = f"status {wanted!r} is set by the server; send 'requested' or 'off'"
            raise ValidationFailed(msg, issues=[Issue(msg, "Subscription.status")])
        changed_channel = (config["endpoint"], headers) != (state.endpoint, list(state.headers))
        status = wanted
        if status != "off" and (changed_channel or state.status == "off"):
            status = "requested"  # a new channel (or a restart) needs a new handshake
        expected = if_match if if_match is not None else current.version_id
        doc = self._shown(doc, headers, status)
        stored = provenance.write(
            self.repo, self.principal, "Subscription", rid, doc, expected, reason
        )
        self.store.update_subscription(rid, {**config, "headers": headers, "status": status})
        self.uow.after_commit.append(self._forget)
        return WriteResult(stored, created=False)

    def _config(
        self, doc: dict[str, Any], *, stored_headers: list[str]
    ) -> tuple[dict[str, Any], list[str]]:
        """The delivery configuration the resource asks for, or 400 with every problem."""
        issues: list[Issue] = []
        topic = load_topics().get(str(doc.get("criteria")))
        if topic is None:
            issues.append(
                Issue(
                    "criteria must be the canonical URL of a topic listed at "
                    "GET /fhir/R4/SubscriptionTopic",
                    "Subscription.criteria",
                )
            )
        filters: list[Filter] = []
        for value in _exts_all((doc.get("_criteria") or {}).get("extension"), FILTER_EXT):
            if topic is None:
                break
            try:
                filters.append(parse_filter(topic, str(value)))
            except ValueError as exc:
                issues.append(Issue(str(exc), "Subscription.criteria.extension"))
        channel = doc.get("channel") or {}
        if channel.get("type") != "rest-hook":
            issues.append(
                Issue("only channel type rest-hook is supported", "Subscription.channel.type")
            )
        endpoint = str(channel.get("endpoint") or "")
        problem = self.policy.problem(self.principal.tenant_id, endpoint)
        if problem:
            issues.append(Issue(problem, "Subscription.channel.endpoint"))
        if channel.get("payload", "application/fhir+json") != "application/fhir+json":
            issues.append(
                Issue("payload must be application/fhir+json", "Subscription.channel.payload")
            )
        content = _ext((channel.get("_payload") or {}).get("extension"), CONTENT_EXT) or "id-only"
        if content not in CONTENTS:
            issues.append(
                Issue(
                    f"payload content must be one of {', '.join(CONTENTS)}",
                    "Subscription.channel.payload.extension",
                )
            )
        exts = channel.get("extension")
        heartbeat = _ext(exts, HEARTBEAT_EXT)
        timeout = _ext(exts, TIMEOUT_EXT) or DEFAULT_TIMEOUT
        max_count = _ext(exts, MAX_COUNT_EXT) or DEFAULT_MAX_COUNT
        numbers = {"heartbeat": heartbeat, "timeout": timeout, "max count": max_count}
        for name, value in numbers.items():
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                issues.append(
                    Issue(f"{name} must be a positive integer", "Subscription.channel.extension")
                )
        headers = self._headers(channel.get("header") or [], stored_headers, issues)
        if issues:
            raise ValidationFailed("Invalid Subscription", issues=issues)
        assert topic is not None
        config = {
            "topic": topic.url,
            "filters": [f.as_json() for f in filters],
            "endpoint": endpoint,
            "content": content,
            "heartbeat_seconds": max(int(heartbeat), MIN_HEARTBEAT) if heartbeat else None,
            "timeout_seconds": min(int(timeout), MAX_TIMEOUT),
            "max_count": min(int(max_count), MAX_MAX_COUNT),
        }
        return config, headers

    @staticmethod
    def _headers(sent: list[Any], stored: list[str], issues: list[Issue]) -> list[str]:
        """Full header values: a masked one sent back keeps the stored value of that name."""
        by_name = {h.split(":", 1)[0].strip().lower(): h for h in stored}
        out: list[str] = []
        for h in sent:
            name, sep, value = str(h).partition(":")
            if not sep or not name.strip() or "\n" in str(h) or "\r" in str(h):
                issues.append(
                    Issue("a header is 'Name: value' on one line", "Subscription.channel.header")
                )
                continue
            if value.strip() == MASK:
                kept = by_name.get(name.strip().lower())
                if kept is None:
                    issues.append(
                        Issue(
                            f"header {name.strip()} has no stored value to keep",
                            "Subscription.channel.header",
                        )
                    )
                    continue
                out.append(kept)
            else:
                out.append(f"{name.strip()}: {value.strip()}")
        return out

    @staticmethod
    def _shown(doc: dict[str, Any], headers: list[str], status: str) -> dict[str, Any]:
        """The resource as stored and served: masked headers, server status, profile."""
        channel = dict(doc["channel"])
        if headers:
            channel["header"] = [f"{h.split(':', 1)[0]}: {MASK}" for h in headers]
        else:
            channel.pop("header", None)
        meta = dict(doc.get("meta") or {})
        profiles = list(meta.get("profile") or [])
        if PROFILE not in profiles:
            profiles.append(PROFILE)
        meta["profile"] = profiles
        return {**doc, "meta": meta, "status": status, "channel": channel}

    # ------------------------------------------------------------------ operations
    def view(self, rid: str) -> SubscriptionView:
        access.require(self.principal, access.Permission.SUBSCRIPTION_MANAGE)
        found = self.repo.read("Subscription", rid)
        state = self.store.subscription(rid) if found else None
        if found is None or state is None:
            raise ResourceNotFound(f"Subscription/{rid} not found")
        delivery = self.store.delivery(rid)
        return SubscriptionView(
            found,
            state.status,
            state.topic,
            int(state.events_count),
            int(delivery.delivered_through) if delivery else 0,
            state.content,
            delivery.last_error if delivery else None,
        )

    def events(
        self, rid: str, since: int | None, until: int | None, limit: int
    ) -> tuple[SubscriptionView, list[Any], dict[tuple[str, str, int], StoredResource]]:
        """`$events`: stored events by number (oldest first), and the focus versions."""
        view = self.view(rid)
        start = since - 1 if since is not None else max(view.events_count - limit, 0)
        rows = self.store.events(rid, max(start, 0), until, limit)
        focus: dict[tuple[str, str, int], StoredResource] = {}
        if view.content == "full-resource":
            for r in rows:
                key = (r.focus_type, r.focus_id, int(r.focus_version))
                if key not in focus:
                    found = self.repo.vread(r.focus_type, r.focus_id, int(r.focus_version))
                    if found is not None:
                        focus[key] = found
        return view, rows, focus


def number_committed(database: Database, principal: Principal, rid: str) -> None:
    """Before `$status`/`$events`: number this subscription's committed staged events (in
    their own short transaction), so the answer counts every committed change even when no
    worker runs. Order writes stage events un-numbered (app/services/outbox.py). Someone
    who may not manage subscriptions is refused by the operation itself, in its unit of
    work (so the refusal is audited like any other)."""
    if not access.may(principal, access.Permission.SUBSCRIPTION_MANAGE):
        return
    try:
        number_events(database, (principal.tenant_id, rid))
    except (DBAPIError, PoolTimeout) as exc:
        raise ServiceUnavailable() from exc


def _exts_all(exts: Any, url: str) -> list[Any]:
    return [
        next((v for k, v in e.items() if k.startswith("value")), None)
        for e in exts or []
        if isinstance(e, dict) and e.get("url") == url
    ]
