"""Notification Bundles (R4 Subscriptions Backport IG): one shape for the rest-hook POSTs
(handshake, heartbeat, event-notification), `$status` (query-status) and `$events`
(query-event).

A notification is a `history` Bundle whose first entry is a Parameters resource (profile
backport-subscription-status-r4) saying which subscription, topic, status, notification type
and `events-since-subscription-start`, with one `notification-event` part per event
(`event-number`, `timestamp`, and the `focus` unless the payload is `empty`). With
`id-only` each focus is an entry with a `fullUrl` and no resource; with `full-resource` the
entry carries the resource at the version the event was recorded for.
See: http://hl7.org/fhir/uv/subscriptions-backport/notifications.html
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ulid import ULID

from app.domain.clock import format_instant, utcnow
from app.store import StoredResource

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
NOTIFICATION_PROFILE = BACKPORT + "backport-subscription-notification-r4"
STATUS_PROFILE = BACKPORT + "backport-subscription-status-r4"


def _ref(base: str, rtype: str, rid: str) -> str:
    return f"{base}/{rtype}/{rid}" if base else f"{rtype}/{rid}"


def status_parameters(
    base: str,
    sid: str,
    *,
    topic: str,
    status: str,
    kind: str,
    events_count: int,
    events: Sequence[Any] = (),
    content: str = "id-only",
    error: str | None = None,
) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": _ref(base, "Subscription", sid)}},
        {"name": "topic", "valueCanonical": topic},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events_count)},
    ]
    for ev in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(ev.event_number)},
            {"name": "timestamp", "valueInstant": format_instant(ev.occurred_at)},
        ]
        if content != "empty":
            focus = _ref(base, ev.focus_type, ev.focus_id)
            parts.append({"name": "focus", "valueReference": {"reference": focus}})
        params.append({"name": "notification-event", "part": parts})
    if error:
        params.append({"name": "error", "valueCodeableConcept": {"text": error}})
    return {
        "resourceType": "Parameters",
        "id": str(ULID()).lower(),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": params,
    }


def notification_bundle(
    base: str,
    status: dict[str, Any],
    *,
    events: Sequence[Any] = (),
    content: str = "id-only",
    focus: Mapping[tuple[str, str, int], StoredResource] | None = None,
    bundle_type: str = "history",
    now: datetime | None = None,
) -> dict[str, Any]:
    sid = status["parameter"][0]["valueReference"]["reference"].rsplit("/", 1)[1]
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{ULID().to_uuid()}",
            "resource": status,
            "request": {"method": "GET", "url": f"Subscription/{sid}/$status"},
            "response": {"status": "200"},
        }
    ]
    if content != "empty":
        seen: set[tuple[str, str, int]] = set()
        for ev in events:
            key = (ev.focus_type, ev.focus_id, int(ev.focus_version))
            if key in seen:
                continue
            seen.add(key)
            entry: dict[str, Any] = {
                "fullUrl": _ref(base, ev.focus_type, ev.focus_id),
                "request": {"method": "PUT", "url": f"{ev.focus_type}/{ev.focus_id}"},
                "response": {"status": "200", "etag": f'W/"{ev.focus_version}"'},
            }
            found = (focus or {}).get(key)
            if content == "full-resource" and found is not None:
                entry["resource"] = found.content
            entries.append(entry)
    return {
        "resourceType": "Bundle",
        "id": str(ULID()).lower(),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": bundle_type,
        "timestamp": format_instant(now or utcnow()),
        "entry": entries,
    }
