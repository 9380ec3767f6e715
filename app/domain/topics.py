"""Subscription topics: which write is which event, and which subscriptions it matches.

The topics are data (capability/subscription-topics.json). A topic fires when a resource of
one of its types goes from a status in `trigger.previous` to one in `trigger.current`
("*" = any status; null = the resource did not exist before). A subscription narrows its
topic with filter criteria (`ServiceRequest?category=laboratory&patient=Patient/p1`), each
parameter one the topic's `canFilterBy` lists; filters are ANDed, comma-separated values ORed.

See: http://hl7.org/fhir/uv/subscriptions-backport/components.html (topics, filters).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

import orjson

from app.conformance import CAPABILITY_DIR

ANY = "*"


@dataclass(frozen=True)
class Topic:
    id: str
    url: str
    title: str
    description: str
    resources: frozenset[str]
    previous: frozenset[str | None] | None  # None = any
    current: frozenset[str] | None  # None = any
    filters: Mapping[str, frozenset[str]]  # resource type → filter parameters
    definition: dict[str, Any] = field(compare=False, hash=False)

    def fires(self, resource_type: str, before: str | None, after: str | None) -> bool:
        if resource_type not in self.resources or after is None or before == after:
            return False
        if self.current is not None and after not in self.current:
            return False
        return self.previous is None or before in self.previous


@dataclass(frozen=True)
class Filter:
    """One filterCriteria: an optional resource type and parameter → accepted values."""

    resource: str | None
    params: tuple[tuple[str, tuple[str, ...]], ...]

    def as_json(self) -> dict[str, Any]:
        return {"resource": self.resource, "params": [[k, list(v)] for k, v in self.params]}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Filter:
        return cls(doc.get("resource"), tuple((k, tuple(v)) for k, v in doc["params"]))


def _statuses(value: Any) -> frozenset[Any] | None:
    return None if value == ANY else frozenset(value)


@cache
def load_topics() -> dict[str, Topic]:
    """Topics by canonical URL, checked as they load (a bad file stops start-up)."""
    doc = orjson.loads((CAPABILITY_DIR / "subscription-topics.json").read_bytes())
    topics: dict[str, Topic] = {}
    for t in doc["topics"]:
        filters: dict[str, set[str]] = {}
        for f in t["canFilterBy"]:
            filters.setdefault(f["resource"], set()).add(f["filterParameter"])
        topic = Topic(
            id=t["id"],
            url=t["url"],
            title=t["title"],
            description=t["description"],
            resources=frozenset(t["resource"]),
            previous=_statuses(t["trigger"]["previous"]),
            current=_statuses(t["trigger"]["current"]),
            filters={k: frozenset(v) for k, v in filters.items()},
            definition=t,
        )
        if not set(topic.filters) <= topic.resources:
            raise ValueError(f"topic {topic.id}: canFilterBy names a resource it does not cover")
        topics[topic.url] = topic
    return topics


def topics_fired(resource_type: str, before: str | None, after: str | None) -> list[Topic]:
    return [t for t in load_topics().values() if t.fires(resource_type, before, after)]


def parse_filter(topic: Topic, criteria: str) -> Filter:
    """`[Type]?name=value&…` (the type is optional) → Filter; ValueError says what is wrong."""
    head, _, query = criteria.partition("?") if "?" in criteria else ("", "", criteria)
    rtype = head.strip() or None
    if rtype is not None and rtype not in topic.resources:
        raise ValueError(f"{rtype} is not a resource of topic {topic.id}")
    allowed = (
        topic.filters.get(rtype, frozenset())
        if rtype
        else frozenset().union(*topic.filters.values())
    )
    params: list[tuple[str, tuple[str, ...]]] = []
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        raise ValueError(f"filter {criteria!r} has no parameter")
    for name, value in pairs:
        if name not in allowed:
            raise ValueError(
                f"{name!r} is not a filter of topic {topic.id} (allowed: "
                f"{', '.join(sorted(allowed))})"
            )
        values = tuple(_normal(name, v) for v in value.split(",") if v.strip())
        if not values:
            raise ValueError(f"filter {name!r} has no value")
        params.append((name, values))
    return Filter(rtype, tuple(params))


def _normal(name: str, value: str) -> str:
    value = value.strip()
    if name == "patient" and "/" not in value:
        return f"Patient/{value}"
    return value


def _refs(value: Any) -> set[str]:
    items = value if isinstance(value, list) else [value]
    return {
        str(i["reference"])
        for i in items
        if isinstance(i, dict) and isinstance(i.get("reference"), str)
    }


def facts(resource_type: str, content: Mapping[str, Any]) -> dict[str, list[str]]:
    """The values an event can be filtered on, taken from the resource as written."""
    out: dict[str, set[str]] = {}
    if resource_type == "Task":
        out["patient"] = _refs(content.get("for"))
        out["owner"] = _refs(content.get("owner"))
        out["requester"] = _refs(content.get("requester"))
        out["focus"] = _refs(content.get("focus"))
    else:
        out["patient"] = _refs(content.get("subject") or content.get("patient"))
        out["performer"] = _refs(content.get("performer"))
        out["requester"] = _refs(content.get("requester") or content.get("orderer"))
        codes: set[str] = set()
        for concept in content.get("category") or []:
            for coding in (concept or {}).get("coding") or []:
                code = coding.get("code")
                if code:
                    codes.add(str(code))
                    if coding.get("system"):
                        codes.add(f"{coding['system']}|{code}")
        out["category"] = codes
    return {k: sorted(v) for k, v in out.items()}


def matches(filters: list[Filter], resource_type: str, known: Mapping[str, list[str]]) -> bool:
    """Every filter holds (logical AND, as the IG says); within one, every parameter."""
    for f in filters:
        if f.resource is not None and f.resource != resource_type:
            return False
        for name, values in f.params:
            if not set(values) & set(known.get(name, ())):
                return False
    return True
