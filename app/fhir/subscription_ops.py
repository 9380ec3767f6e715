"""The FHIR shapes of topic-based subscriptions (R4 Subscriptions Backport IG):

- `GET /fhir/R4/SubscriptionTopic[/id]`: R4 has no SubscriptionTopic resource, so the topics
  (capability/subscription-topics.json) are rendered the way the IG represents them in R4:
  `Basic` resources with `code` = fhir-types#SubscriptionTopic and the R5 cross-version
  extensions (`extension-SubscriptionTopic.url`, `.title`, `.resourceTrigger`, …);
- `Subscription/[id]/$status` (a searchset of one status Parameters, type `query-status`)
  and `$events` (a notification Bundle of type `query-event`, by event number).

See: http://hl7.org/fhir/uv/subscriptions-backport/components.html#subscriptiontopic
"""

from __future__ import annotations

from typing import Any

from app.domain.topics import Topic, load_topics
from app.errors import Issue, ResourceNotFound, ValidationFailed
from app.fhir.http import FhirRequest, FhirResponse
from app.services.notifications import notification_bundle, status_parameters
from app.services.subscriptions import SubscriptionService

X5 = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
FHIR_TYPES = "http://hl7.org/fhir/fhir-types"
MAX_EVENTS = 100


def _criteria(statuses: Any) -> str | None:
    if statuses == "*":
        return None
    wanted = [s for s in statuses if s is not None]
    return f"status={','.join(wanted)}" if wanted else None


def topic_as_basic(topic: Topic) -> dict[str, Any]:
    t = topic.definition
    ext: list[dict[str, Any]] = [
        {"url": X5 + "url", "valueUri": topic.url},
        {"url": X5 + "title", "valueString": topic.title},
        {"url": X5 + "status", "valueCode": "active"},
        {"url": X5 + "description", "valueMarkdown": topic.description},
    ]
    for rtype in t["resource"]:
        query: list[dict[str, Any]] = []
        for part, key in (("previous", "previous"), ("current", "current")):
            crit = _criteria(t["trigger"][key])
            if crit:
                query.append({"url": part, "valueString": crit})
        if query:
            query.append({"url": "requireBoth", "valueBoolean": True})
        trigger: list[dict[str, Any]] = [
            {"url": "resource", "valueUri": f"http://hl7.org/fhir/StructureDefinition/{rtype}"},
            {"url": "supportedInteraction", "valueCode": "create"},
            {"url": "supportedInteraction", "valueCode": "update"},
        ]
        if query:
            trigger.append({"url": "queryCriteria", "extension": query})
        ext.append({"url": X5 + "resourceTrigger", "extension": trigger})
    for f in t["canFilterBy"]:
        ext.append(
            {
                "url": X5 + "canFilterBy",
                "extension": [
                    {"url": "description", "valueMarkdown": f["description"]},
                    {
                        "url": "resource",
                        "valueUri": f"http://hl7.org/fhir/StructureDefinition/{f['resource']}",
                    },
                    {"url": "filterParameter", "valueString": f["filterParameter"]},
                ],
            }
        )
    return {
        "resourceType": "Basic",
        "id": topic.id,
        "code": {"coding": [{"system": FHIR_TYPES, "code": "SubscriptionTopic"}]},
        "extension": ext,
    }


def topics(req: FhirRequest) -> FhirResponse:
    """`GET SubscriptionTopic` (all, as a searchset) or `GET SubscriptionTopic/[id]`."""
    by_id = {t.id: t for t in load_topics().values()}
    if len(req.segments) == 2:
        found = by_id.get(req.segments[1])
        if found is None:
            raise ResourceNotFound(f"SubscriptionTopic/{req.segments[1]} not found")
        return FhirResponse(200, topic_as_basic(found))
    entries = [
        {
            "fullUrl": f"{req.base_url}/SubscriptionTopic/{t.id}",
            "resource": topic_as_basic(t),
            "search": {"mode": "match"},
        }
        for t in by_id.values()
    ]
    return FhirResponse(
        200,
        {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries},
    )


def _number(req: FhirRequest, name: str) -> int | None:
    raw = req.param(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise ValidationFailed(f"{name} must be a non-negative integer", issues=[Issue("", name)])
    return int(raw)


def status(req: FhirRequest, service: SubscriptionService) -> FhirResponse:
    view = service.view(req.segments[1])
    params = status_parameters(
        req.base_url,
        view.resource.id,
        topic=view.topic,
        status=view.status,
        kind="query-status",
        events_count=view.events_count,
        content=view.content,
        error=view.last_error,
    )
    entry = {"fullUrl": f"urn:uuid:{params['id']}", "resource": params, "search": {"mode": "match"}}
    return FhirResponse(
        200, {"resourceType": "Bundle", "type": "searchset", "total": 1, "entry": [entry]}
    )


def events(req: FhirRequest, service: SubscriptionService) -> FhirResponse:
    """`$events?eventsSinceNumber=n&eventsUntilNumber=m&content=…` (numbers inclusive;
    without a start, the latest events). At most 100 events per call: page by number."""
    since, until = _number(req, "eventsSinceNumber"), _number(req, "eventsUntilNumber")
    view, rows, focus = service.events(req.segments[1], since, until, MAX_EVENTS)
    content = req.param("content") or view.content
    if content not in ("empty", "id-only", "full-resource") or (
        content == "full-resource" and view.content != "full-resource"
    ):
        msg = "content must be empty, id-only, or the subscription's full-resource"
        raise ValidationFailed(msg, issues=[Issue(msg, "content")])
    params = status_parameters(
        req.base_url,
        view.resource.id,
        topic=view.topic,
        status=view.status,
        kind="query-event",
        events_count=view.events_count,
        events=rows,
        content=content,
    )
    return FhirResponse(
        200, notification_bundle(req.base_url, params, events=rows, content=content, focus=focus)
    )
