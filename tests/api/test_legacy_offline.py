"""Offline sync (seeds/sync-contract.txt §3, DESIGN §7): one test named for each scenario.

A request replayed from a device queue carries `X-Offline-Queued-At: <RFC 3339 time>`.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.conftest import TokenFactory
from tests.legacy_data import (
    CBC,
    OFFLINE,
    LegacyApi,
    error_of,
    fields_of,
    lab,
    lab_template,
    medication,
    order_set,
    radiology,
    referral,
)


@pytest.fixture
def api(client: FlaskClient, headers: TokenFactory) -> LegacyApi:
    return LegacyApi(client, headers)


def test_clinician_creates_medication_order_offline_is_rejected(api: LegacyApi) -> None:
    pid, eid = api.admitted()
    sid = api.ok(api.post("/order-sets", order_set("Ward round", lab_template())), 201)[
        "orderSetId"
    ]
    before = api.counts()
    queued = medication(pid, eid, clientMutationId="offline-med-1")
    error_of(api.create(queued, extra=OFFLINE), 422, "OFFLINE_CREATE_NOT_ALLOWED")
    error_of(
        api.create(referral(pid, eid, clientMutationId="offline-ref-1"), extra=OFFLINE),
        422,
        "OFFLINE_CREATE_NOT_ALLOWED",
    )
    error_of(
        api.post(
            f"/order-sets/{sid}/instantiate", {"patientId": pid, "encounterId": eid}, extra=OFFLINE
        ),
        422,
        "OFFLINE_CREATE_NOT_ALLOWED",
    )
    # The same rule holds at /v1 and per batch item (a lab item beside it still goes in).
    error_of(
        api.client.post("/v1/orders", json=queued, headers={**api.doc, **OFFLINE}),
        422,
        "OFFLINE_CREATE_NOT_ALLOWED",
    )
    batch = api.ok(
        api.post("/orders/batch", {"orders": [queued, lab(pid, eid)]}, extra=OFFLINE), 207
    )
    assert [x["success"] for x in batch["results"]] == [False, True]
    assert batch["results"][0]["error"]["code"] == "OFFLINE_CREATE_NOT_ALLOWED"
    after = api.counts()
    assert after["ServiceRequest"] == before["ServiceRequest"] + 1  # only the batch's lab
    assert {k: v for k, v in after.items() if k not in ("ServiceRequest", "Provenance")} == {
        k: v for k, v in before.items() if k not in ("ServiceRequest", "Provenance")
    }
    assert api.listing(patientId=pid, orderType="medication")["total"] == 0
    # Nothing was remembered under the rejected key: once connected, it is a fresh order.
    connected = api.create(queued)
    assert connected.status_code == 201, connected.get_json()
    assert connected.headers.get("Idempotent-Replayed") != "true"


def test_clinician_creates_lab_requisition_offline_is_accepted_with_cds_at_submission(
    api: LegacyApi,
) -> None:
    pid, eid = api.admitted()
    # While the device was offline, a colleague (connected) ordered a CBC for the patient.
    meanwhile = api.created(lab(pid, eid))
    queued = lab(pid, eid, CBC, clientMutationId="queued-cbc-7f3a", notes="queued on ward 4")
    r = api.create(queued, extra=OFFLINE)
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["status"] == "draft"
    duplicates = [a for a in body["cdsAlerts"] if a["ruleId"] == "DUPLICATE-ORDER"]
    assert len(duplicates) == 1, body["cdsAlerts"]
    assert duplicates[0]["level"] == "warning"
    assert duplicates[0]["acknowledged"] is False
    assert api.order(body["orderId"])["cdsAlerts"] == body["cdsAlerts"]
    assert meanwhile["orderId"] != body["orderId"]

    # The queue resubmits (the device never saw the 201): nothing new is created.
    before = api.counts()
    again = api.create(queued, extra=OFFLINE)
    assert again.status_code == 201, again.get_json()
    assert again.data == r.data
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert api.counts() == before
    assert api.listing(patientId=pid)["total"] == 2

    # Radiology requisitions may be queued too.
    xray = api.create(radiology(pid, eid, clientMutationId="queued-xray-1"), extra=OFFLINE)
    assert xray.status_code == 201, xray.get_json()


def test_patient_allergy_added_while_order_created_offline_is_caught_at_activation(
    api: LegacyApi,
) -> None:
    pid, eid = api.admitted()
    created = api.created(medication(pid, eid, clientMutationId="amox-before-allergy"))
    assert created["cdsAlerts"] == []
    oid = created["orderId"]
    api.allergy(pid, criticality="high")  # recorded while the order sat as a draft

    err = error_of(api.activate(oid, 1), 422, "CDS_HARD_STOP")
    blocking = [d for d in err.get("details") or [] if d.get("level") == "hard-stop"]
    assert len(blocking) == 1, err
    assert blocking[0]["ruleId"].startswith("ALLERGY"), blocking

    order = api.order(oid)
    assert order["status"] == "draft"
    assert [(a["alertId"], a["level"]) for a in order["cdsAlerts"]] == [
        (blocking[0]["alertId"], "hard-stop")
    ]
    assert order["cdsAlerts"][0]["acknowledged"] is False
    # Still blocked on a second try: the alert is neither lost nor duplicated.
    error_of(api.activate(oid, order["version"]), 422, "CDS_HARD_STOP")
    assert len(api.order(oid)["cdsAlerts"]) == 1


def test_order_cancelled_offline_after_completion_gets_order_terminal_state(
    api: LegacyApi,
) -> None:
    pid, eid = api.admitted()
    oid = api.created(lab(pid, eid))["orderId"]
    queued_version = api.activated(oid)["version"]  # what the device saw
    api.complete({"orderId": oid, "orderType": "laboratory"})  # the lab resulted meanwhile
    done = api.order(oid)
    assert done["status"] == "completed"
    assert done["version"] > queued_version

    r = api.change(oid, "cancel", queued_version, "Patient refused", extra=OFFLINE)
    error_of(r, 409, "ORDER_TERMINAL_STATE")
    error_of(api.change(oid, "cancel", done["version"], extra=OFFLINE), 409, "ORDER_TERMINAL_STATE")
    assert api.order(oid) == done


@pytest.mark.parametrize(
    "value",
    ["yesterday", "2026-11-21", "2026-11-21 06:15:00", "2026-11-21T06:15:00", "", "1700000000"],
)
def test_malformed_offline_queued_at_is_400(api: LegacyApi, value: str) -> None:
    pid, eid = api.admitted()
    before = api.counts()
    r = api.create(lab(pid, eid), extra={"X-Offline-Queued-At": value})
    err = error_of(r, 400, "VALIDATION_ERROR")
    assert "X-Offline-Queued-At" in fields_of(err)
    assert api.counts() == before
