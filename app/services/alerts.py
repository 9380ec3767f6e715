"""CDS alerts stored as DetectedIssue resources (DESIGN §1, §6).

An alert is open (`preliminary`), acknowledged (`final`, with a `mitigation` carrying who,
when and why) or resolved (`cancelled`, with the time its cause disappeared). Its rule and
its cause key are kept as extensions so a later check can recognise the same cause.
See: https://hl7.org/fhir/R4/detectedissue.html
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.auth import Principal
from app.cds.alerts import Alert, category_coding, severity
from app.domain.clock import format_instant
from app.domain.ids import new_id

RULE_SYSTEM = "urn:orders-service:cds-rule"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
EXT_LEVEL = "urn:orders-service:cds-level"
EXT_CAUSE = "urn:orders-service:cds-cause"
EXT_RESOLVED = "urn:orders-service:cds-resolved"
#: The knowledge the rule relies on (a citation), kept with the alert (issue 12).
EXT_SOURCE = "urn:orders-service:cds-source"
OPEN, ACKNOWLEDGED, RESOLVED = "preliminary", "final", "cancelled"


@dataclass(frozen=True)
class AlertView:
    """What the faces need to know about a stored alert."""

    id: str
    rule_id: str
    level: str
    message: str
    cause: str
    acknowledged: bool
    resolved: bool
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    reason: str | None = None


def _ext(resource: dict[str, Any], url: str) -> Any:
    for ext in resource.get("extension", []):
        if ext.get("url") == url:
            return next((v for k, v in ext.items() if k.startswith("value")), None)
    return None


def build(alert: Alert, *, patient_id: str, order_ref: str, now: datetime) -> dict[str, Any]:
    codings = [category_coding(alert.code), {"system": RULE_SYSTEM, "code": alert.rule_id}]
    implicated = [order_ref, *(r for r in alert.implicated if r != order_ref)]
    return {
        "resourceType": "DetectedIssue",
        "id": new_id("DetectedIssue"),
        "extension": [
            {"url": EXT_LEVEL, "valueCode": alert.level},
            {"url": EXT_CAUSE, "valueString": alert.cause},
            *([{"url": EXT_SOURCE, "valueString": alert.source}] if alert.source else []),
        ],
        "status": OPEN,
        "code": {"coding": codings, "text": alert.rule_id},
        "severity": severity(alert.level),
        "patient": {"reference": f"Patient/{patient_id}"},
        "identifiedDateTime": format_instant(now),
        "implicated": [{"reference": r} for r in implicated],
        "detail": alert.message,
        **({"reference": alert.source} if alert.source.startswith(("http", "urn:")) else {}),
    }


def view(issue: dict[str, Any]) -> AlertView:
    mitigation = (issue.get("mitigation") or [None])[-1]
    rule = next(
        (
            c["code"]
            for c in issue.get("code", {}).get("coding", [])
            if c.get("system") == RULE_SYSTEM
        ),
        "",
    )
    return AlertView(
        id=issue["id"],
        rule_id=rule,
        level=_ext(issue, EXT_LEVEL) or "info",
        message=issue.get("detail", ""),
        cause=_ext(issue, EXT_CAUSE) or "",
        acknowledged=mitigation is not None,
        resolved=issue.get("status") == RESOLVED,
        acknowledged_by=(mitigation or {}).get("author", {}).get("display"),
        acknowledged_at=(mitigation or {}).get("date"),
        reason=(mitigation or {}).get("action", {}).get("text"),
    )


def acknowledged(
    issue: dict[str, Any], principal: Principal, reason: str, now: datetime
) -> dict[str, Any]:
    """The issue with a mitigation recording the acknowledgement (v3 ActCode 1 = therapy
    appropriate), who gave it and when."""
    mitigation = {
        "action": {
            "coding": [{"system": ACT_CODE, "code": "1", "display": "Therapy Appropriate"}],
            "text": reason,
        },
        "date": format_instant(now),
        "author": {
            "display": principal.sub,
            "identifier": {
                "system": principal.issuer or "urn:orders-service:token-sub",
                "value": principal.sub,
            },
        },
    }
    return {
        **issue,
        "status": ACKNOWLEDGED,
        "mitigation": [*issue.get("mitigation", []), mitigation],
    }


def resolved(issue: dict[str, Any], now: datetime) -> dict[str, Any]:
    ext = [e for e in issue.get("extension", []) if e.get("url") != EXT_RESOLVED]
    ext.append({"url": EXT_RESOLVED, "valueDateTime": format_instant(now)})
    return {**issue, "status": RESOLVED, "extension": ext}
