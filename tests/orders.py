"""Put an order into any status the way a client must: create a draft, then drive the workflow.

Orders are only ever created as drafts (DESIGN §5); every other status is reached through
the lifecycle: `$activate` (with decision support, acknowledging its warnings), PUT with a
changed status (hold, resume, cancel, correction), and completion of the fulfilment Task.
`order_with_status` does exactly that and asserts every step on the way.
"""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.domain.order_types import ORDER_RESOURCE_TYPES

BASE = "/fhir/R4"
ACK_REASON = "reviewed by the ordering clinician; proceeding"
ERROR_CODE_SYSTEM = "urn:orders-service:error-code"

# The statuses a draft of each type can be driven to, and how: a list of steps, each
# "activate" or the FHIR status a PUT changes to ("completed" goes through the Task).
PATHS: dict[str, dict[str, list[str]]] = {
    "ServiceRequest": {
        "draft": [],
        "active": ["activate"],
        "on-hold": ["activate", "on-hold"],
        "completed": ["activate", "completed"],
        "revoked": ["revoked"],
        "entered-in-error": ["entered-in-error"],
    },
    "NutritionOrder": {
        "draft": [],
        "active": ["activate"],
        "on-hold": ["activate", "on-hold"],
        "completed": ["activate", "completed"],
        "revoked": ["revoked"],
        "entered-in-error": ["entered-in-error"],
    },
    "MedicationRequest": {
        "draft": [],
        "active": ["activate"],
        "on-hold": ["activate", "on-hold"],
        "completed": ["activate", "completed"],
        "cancelled": ["cancelled"],  # cancelled as a draft
        "stopped": ["activate", "stopped"],  # discontinued after activation
        "entered-in-error": ["entered-in-error"],
    },
}


def _json(resp: TestResponse) -> Any:
    return resp.get_json(silent=True)


def _error_codes(outcome: Any) -> list[str]:
    if not isinstance(outcome, dict):
        return []
    return [
        c["code"]
        for i in outcome.get("issue", [])
        for c in i.get("details", {}).get("coding", [])
        if c.get("system") == ERROR_CODE_SYSTEM
    ]


def _if_match(resource: dict[str, Any]) -> dict[str, str]:
    return {"If-Match": f'W/"{resource["meta"]["versionId"]}"'}


def _read(client: FlaskClient, headers: dict[str, str], rtype: str, rid: str) -> dict[str, Any]:
    r = client.get(f"{BASE}/{rtype}/{rid}", headers=headers)
    assert r.status_code == 200, (rtype, rid, r.status_code, _json(r))
    body: dict[str, Any] = r.get_json()
    return body


def _blocking_warnings(outcome: dict[str, Any]) -> list[str]:
    """DetectedIssue ids of the warnings a CDS_WARNING_UNACKNOWLEDGED outcome lists."""
    return [
        e.removeprefix("DetectedIssue/")
        for i in outcome.get("issue", [])
        if i.get("severity") == "warning"
        for e in i.get("expression", [])
        if e.startswith("DetectedIssue/")
    ]


def _acknowledge(
    client: FlaskClient, headers: dict[str, str], order: dict[str, Any], alert_id: str
) -> dict[str, Any]:
    rtype, rid = order["resourceType"], order["id"]
    current = _read(client, headers, rtype, rid)
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "alert", "valueReference": {"reference": f"DetectedIssue/{alert_id}"}},
            {"name": "reason", "valueString": ACK_REASON},
        ],
    }
    r = client.post(
        f"{BASE}/{rtype}/{rid}/$acknowledge",
        json=params,
        headers={**headers, **_if_match(current)},
    )
    assert r.status_code == 200, ("acknowledge", alert_id, r.status_code, _json(r))
    return _read(client, headers, rtype, rid)


def activate(client: FlaskClient, headers: dict[str, str], order: dict[str, Any]) -> dict[str, Any]:
    """`$activate`; if decision support answers with unacknowledged warnings, acknowledge
    each (with a reason) and activate again. Returns the active order as read back."""
    rtype, rid = order["resourceType"], order["id"]
    acknowledged: set[str] = set()
    for _ in range(3):
        current = _read(client, headers, rtype, rid)
        r = client.post(
            f"{BASE}/{rtype}/{rid}/$activate", headers={**headers, **_if_match(current)}
        )
        if r.status_code == 200:
            activated = _read(client, headers, rtype, rid)
            assert activated["status"] == "active", activated
            assert int(activated["meta"]["versionId"]) > int(current["meta"]["versionId"])
            return activated
        outcome = _json(r)
        assert r.status_code == 422, ("activate", r.status_code, outcome)
        assert "CDS_WARNING_UNACKNOWLEDGED" in _error_codes(outcome), outcome
        pending = [a for a in _blocking_warnings(outcome) if a not in acknowledged]
        assert pending, ("activation blocked, but no warning left to acknowledge", outcome)
        # the alerts named in the outcome are the order's stored DetectedIssues
        found = client.get(f"{BASE}/DetectedIssue?implicated={rtype}/{rid}", headers=headers)
        assert found.status_code == 200, _json(found)
        stored = {e["resource"]["id"] for e in found.get_json().get("entry", [])}
        assert set(pending) <= stored, (pending, stored)
        for alert_id in pending:
            _acknowledge(client, headers, order, alert_id)
            acknowledged.add(alert_id)
    raise AssertionError(f"{rtype}/{rid} could not be activated")


def put_status(
    client: FlaskClient, headers: dict[str, str], order: dict[str, Any], status: str
) -> dict[str, Any]:
    """PUT the current order with a changed status (hold, resume, cancel, correction)."""
    rtype, rid = order["resourceType"], order["id"]
    current = _read(client, headers, rtype, rid)
    body = {k: v for k, v in current.items() if k != "meta"}
    r = client.put(
        f"{BASE}/{rtype}/{rid}",
        json={**body, "status": status},
        headers={**headers, **_if_match(current)},
    )
    assert r.status_code == 200, ("PUT status", status, r.status_code, _json(r))
    changed = _read(client, headers, rtype, rid)
    assert changed["status"] == status, changed
    assert int(changed["meta"]["versionId"]) > int(current["meta"]["versionId"])
    return changed


def complete(client: FlaskClient, headers: dict[str, str], order: dict[str, Any]) -> dict[str, Any]:
    """Complete an active order the way a performer does: complete its fulfilment Task."""
    rtype, rid = order["resourceType"], order["id"]
    r = client.get(f"{BASE}/Task?focus={rtype}/{rid}", headers=headers)
    assert r.status_code == 200, _json(r)
    tasks = [e["resource"] for e in r.get_json().get("entry", [])]
    assert len(tasks) == 1, ("one fulfilment Task per activated order", tasks)
    task = tasks[0]
    done = client.put(
        f"{BASE}/Task/{task['id']}",
        json={**{k: v for k, v in task.items() if k != "meta"}, "status": "completed"},
        headers={**headers, **_if_match(task)},
    )
    assert done.status_code == 200, ("complete Task", done.status_code, _json(done))
    completed = _read(client, headers, rtype, rid)
    assert completed["status"] == "completed", completed
    return completed


def order_with_status(
    client: FlaskClient, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """Create `body` as a draft, then drive it through the workflow to `body["status"]`.

    Returns the order as read back (its status is the one asked for). `headers` must carry
    the roles every step needs (e.g. CLINICIAN for order writes, holds and Task updates).
    """
    rtype = body["resourceType"]
    assert rtype in ORDER_RESOURCE_TYPES, rtype
    target = body.get("status", "draft")
    steps = PATHS[rtype].get(target)
    assert steps is not None, f"no workflow path to {rtype}.status={target!r}"
    r = client.post(f"{BASE}/{rtype}", json={**body, "status": "draft"}, headers=headers)
    assert r.status_code == 201, ("create draft", r.status_code, _json(r))
    order = _read(client, headers, rtype, r.get_json()["id"])
    assert order["status"] == "draft", order
    for step in steps:
        if step == "activate":
            order = activate(client, headers, order)
        elif step == "completed":
            order = complete(client, headers, order)
        else:
            order = put_status(client, headers, order, step)
    assert order["status"] == target, order
    return order


#: Task elements that tie it to its order and patient: set by activation, never changed.
TASK_TIES = ("focus", "for", "basedOn")


def task_for(client: FlaskClient, headers: dict[str, str], body: dict[str, Any]) -> str:
    """A Task the way one comes to exist: activate an order, then let its performer update
    the Task the activation created with `body`'s other elements (status, owner, …).

    The order is `body["focus"]` (or its `basedOn`), activated if still a draft; without
    either, a new laboratory order for `body["for"]`'s patient. Returns the Task's id.
    """
    ref = (body.get("focus") or next(iter(body.get("basedOn") or []), None) or {}).get("reference")
    if ref:
        rtype, rid = ref.split("/")[-2:]
        order = _read(client, headers, rtype, rid)
    else:
        pid = body["for"]["reference"].split("/")[-1]
        draft = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "order",
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "subject": {"reference": f"Patient/{pid}"},
        }
        r = client.post(f"{BASE}/ServiceRequest", json=draft, headers=headers)
        assert r.status_code == 201, ("create draft", r.status_code, _json(r))
        order = r.get_json()
    if order["status"] == "draft":
        order = activate(client, headers, order)
    r = client.get(f"{BASE}/Task?focus={order['resourceType']}/{order['id']}", headers=headers)
    assert r.status_code == 200, _json(r)
    task = r.get_json()["entry"][0]["resource"]
    changes = {k: v for k, v in body.items() if k not in (*TASK_TIES, "resourceType", "id")}
    if changes:
        updated = {**{k: v for k, v in task.items() if k != "meta"}, **changes}
        r = client.put(
            f"{BASE}/Task/{task['id']}", json=updated, headers={**headers, **_if_match(task)}
        )
        assert r.status_code == 200, ("update Task", r.status_code, _json(r))
    return str(task["id"])
