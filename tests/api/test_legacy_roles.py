"""Roles on the legacy face: every role and every endpoint of seeds/api-contracts.txt.

The table below is written from the seed, not imported from the app. One reading the seed
leaves to us: `GET /v1/orders` lists "CLINICIAN, NURSE, PATIENT (own)" but also says
"patientId (required for non-admin)", so an ADMIN may list (DESIGN §3 lets ADMIN read and
search too). Everywhere else the seed's list is taken literally (e.g. no ADMIN on
`GET /v1/orders/:id`, no NURSE on referrals).

An allowed role gets a 2xx for a well-formed request; a refused role gets 403 FORBIDDEN
in the legacy error shape and the store is unchanged. A PATIENT acts on their own
records; another patient's are 404, exactly as if they did not exist (DESIGN §3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import TokenFactory
from tests.legacy_data import (
    WARFARIN,
    LegacyApi,
    error_of,
    lab,
    lab_template,
    medication,
    order_set,
    referral,
)

ROLES = ("CLINICIAN", "PRESCRIBER", "NURSE", "PATIENT", "ADMIN")

#: The seed's roles per endpoint (api-contracts.txt §2-§5).
SEED_ROLES: dict[str, frozenset[str]] = {
    "POST /orders": frozenset({"CLINICIAN", "PRESCRIBER"}),
    "POST /orders/:id/activate": frozenset({"CLINICIAN", "PRESCRIBER"}),
    "POST /orders/:id/cds-alerts/:alertId/acknowledge": frozenset({"CLINICIAN", "PRESCRIBER"}),
    "GET /orders/:id": frozenset({"CLINICIAN", "NURSE", "PATIENT"}),
    "GET /orders": frozenset({"CLINICIAN", "NURSE", "PATIENT", "ADMIN"}),
    "PUT /orders/:id/cancel": frozenset({"CLINICIAN", "PRESCRIBER"}),
    "PUT /orders/:id/hold": frozenset({"CLINICIAN"}),
    "PUT /orders/:id/resume": frozenset({"CLINICIAN"}),
    "PUT /orders/:id/correction": frozenset({"CLINICIAN", "ADMIN"}),
    "POST /order-sets": frozenset({"CLINICIAN", "ADMIN"}),
    "GET /order-sets": frozenset({"CLINICIAN", "ADMIN"}),
    "POST /order-sets/:setId/instantiate": frozenset({"CLINICIAN", "PRESCRIBER"}),
    "GET /orders/referrals/:id": frozenset({"CLINICIAN", "PATIENT"}),
    "GET /orders/referrals": frozenset({"CLINICIAN", "ADMIN"}),
    "POST /orders/batch": frozenset({"CLINICIAN", "PRESCRIBER"}),
}


@pytest.fixture
def api(client: FlaskClient, headers: TokenFactory) -> LegacyApi:
    return LegacyApi(client, headers)


@dataclass
class Scene:
    """What a request needs: a patient with an encounter and, per endpoint, an order."""

    pid: str
    eid: str
    oid: str = ""
    version: int = 1
    alert_id: str = ""
    set_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _draft(api: LegacyApi, s: Scene) -> None:
    created = api.created(lab(s.pid, s.eid))
    s.oid, s.version = created["orderId"], 1


def _active(api: LegacyApi, s: Scene) -> None:
    _draft(api, s)
    s.version = api.activated(s.oid)["version"]


def _on_hold(api: LegacyApi, s: Scene) -> None:
    _active(api, s)
    s.version = api.ok(api.change(s.oid, "hold", s.version, "NBM"))["version"]


def _warned(api: LegacyApi, s: Scene) -> None:
    detail = {"medicationCode": dict(WARFARIN), "dose": 5, "doseUnit": "mg"}
    warfarin = api.created(medication(s.pid, s.eid, WARFARIN, medicationDetail=detail))
    api.activated(warfarin["orderId"])
    created = api.created(medication(s.pid, s.eid))
    s.oid, s.version = created["orderId"], 1
    s.alert_id = created["cdsAlerts"][0]["alertId"]


def _referral(api: LegacyApi, s: Scene) -> None:
    s.oid = api.created(referral(s.pid, s.eid))["orderId"]
    s.version = api.activated(s.oid)["version"]


def _order_set(api: LegacyApi, s: Scene) -> None:
    s.set_id = api.ok(api.post("/order-sets", order_set("Role set", lab_template())), 201)[
        "orderSetId"
    ]


def _nothing(api: LegacyApi, s: Scene) -> None:
    return None


Call = Callable[[LegacyApi, Scene, dict[str, str]], TestResponse]

#: endpoint → (setup, the request as `who`)
REQUESTS: dict[str, tuple[Callable[[LegacyApi, Scene], None], Call]] = {
    "POST /orders": (_nothing, lambda a, s, w: a.create(lab(s.pid, s.eid), w)),
    "POST /orders/:id/activate": (_draft, lambda a, s, w: a.activate(s.oid, s.version, w)),
    "POST /orders/:id/cds-alerts/:alertId/acknowledge": (
        _warned,
        lambda a, s, w: a.acknowledge(s.oid, s.alert_id, s.version, who=w),
    ),
    "GET /orders/:id": (_draft, lambda a, s, w: a.get(f"/orders/{s.oid}", w)),
    "GET /orders": (_draft, lambda a, s, w: a.get("/orders", w, patientId=s.pid)),
    "PUT /orders/:id/cancel": (
        _active,
        lambda a, s, w: a.change(s.oid, "cancel", s.version, who=w),
    ),
    "PUT /orders/:id/hold": (_active, lambda a, s, w: a.change(s.oid, "hold", s.version, who=w)),
    "PUT /orders/:id/resume": (
        _on_hold,
        lambda a, s, w: a.change(s.oid, "resume", s.version, who=w),
    ),
    "PUT /orders/:id/correction": (
        _active,
        lambda a, s, w: a.change(s.oid, "correction", s.version, who=w),
    ),
    "POST /order-sets": (_nothing, lambda a, s, w: a.post("/order-sets", order_set(), w)),
    "GET /order-sets": (_order_set, lambda a, s, w: a.get("/order-sets", w)),
    "POST /order-sets/:setId/instantiate": (
        _order_set,
        lambda a, s, w: a.post(
            f"/order-sets/{s.set_id}/instantiate", {"patientId": s.pid, "encounterId": s.eid}, w
        ),
    ),
    "GET /orders/referrals/:id": (
        _referral,
        lambda a, s, w: a.get(f"/orders/referrals/{s.oid}", w),
    ),
    "GET /orders/referrals": (_referral, lambda a, s, w: a.get("/orders/referrals", w)),
    "POST /orders/batch": (
        _nothing,
        lambda a, s, w: a.post("/orders/batch", {"orders": [lab(s.pid, s.eid)]}, w),
    ),
}
assert set(REQUESTS) == set(SEED_ROLES)


def _who(api: LegacyApi, role: str, scene: Scene) -> dict[str, str]:
    """A token with just this role; a PATIENT token is the scene's own patient."""
    return api.as_patient(scene.pid) if role == "PATIENT" else api.as_role(role)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", list(SEED_ROLES))
def test_every_role_on_every_endpoint(api: LegacyApi, endpoint: str, role: str) -> None:
    setup, call = REQUESTS[endpoint]
    scene = Scene(*api.admitted())
    setup(api, scene)
    order_before = api.order(scene.oid) if scene.oid else None
    before = api.counts()
    r = call(api, scene, _who(api, role, scene))
    if role in SEED_ROLES[endpoint]:
        assert r.status_code != 403, (endpoint, role, r.get_json())
        assert 200 <= r.status_code < 300, (endpoint, role, r.status_code, r.get_json())
    else:
        error_of(r, 403, "FORBIDDEN")
        assert api.counts() == before
        if order_before is not None:
            assert api.order(scene.oid) == order_before


# ---------------------------------------------------------------------- PATIENT (own)
@pytest.fixture
def two_patients(api: LegacyApi) -> dict[str, Any]:
    mine, my_enc = api.admitted()
    theirs, their_enc = api.admitted()
    return {
        "mine": mine,
        "theirs": theirs,
        "my_order": api.created(lab(mine, my_enc))["orderId"],
        "my_med": api.created(medication(mine, my_enc))["orderId"],
        "their_order": api.created(lab(theirs, their_enc))["orderId"],
        "my_referral": api.created(referral(mine, my_enc))["orderId"],
        "their_referral": api.created(referral(theirs, their_enc))["orderId"],
    }


def test_patient_reads_own_order_and_not_anothers(
    api: LegacyApi, two_patients: dict[str, Any]
) -> None:
    me = api.as_patient(two_patients["mine"])
    own = api.ok(api.get(f"/orders/{two_patients['my_order']}", me))
    assert own == api.order(two_patients["my_order"])
    error_of(api.get(f"/orders/{two_patients['their_order']}", me), 404, "ORDER_NOT_FOUND")


def test_patient_list_returns_only_own_orders(api: LegacyApi, two_patients: dict[str, Any]) -> None:
    me = api.as_patient(two_patients["mine"])
    own = api.listing(me, patientId=two_patients["mine"])
    assert {i["orderId"] for i in own["items"]} == {
        two_patients["my_order"],
        two_patients["my_med"],
        two_patients["my_referral"],
    }
    assert own["total"] == 3
    assert {i["patientId"] for i in own["items"]} == {two_patients["mine"]}
    other = api.listing(me, patientId=two_patients["theirs"])
    assert (other["items"], other["total"]) == ([], 0)
    error_of(api.get("/orders", me), 400, "VALIDATION_ERROR")


def test_patient_reads_own_referral_and_not_anothers(
    api: LegacyApi, two_patients: dict[str, Any]
) -> None:
    me = api.as_patient(two_patients["mine"])
    own = api.ok(api.get(f"/orders/referrals/{two_patients['my_referral']}", me))
    assert own["orderId"] == two_patients["my_referral"]
    assert own["referralDetail"]["referToSpecialty"] == "Cardiology"
    r = api.get(f"/orders/referrals/{two_patients['their_referral']}", me)
    error_of(r, 404, "ORDER_NOT_FOUND")


def test_patient_cannot_change_even_own_orders(
    api: LegacyApi, two_patients: dict[str, Any]
) -> None:
    me = api.as_patient(two_patients["mine"])
    oid = two_patients["my_order"]
    before = api.order(oid)
    error_of(api.change(oid, "cancel", 1, "I changed my mind", who=me), 403, "FORBIDDEN")
    error_of(api.activate(oid, 1, me), 403, "FORBIDDEN")
    assert api.order(oid) == before


# ---------------------------------------------------------------------- auth errors
def _without(hdrs: dict[str, str], key: str) -> dict[str, str]:
    return {k: v for k, v in hdrs.items() if k != key}


AUTH_CASES: dict[str, tuple[Callable[[LegacyApi, TokenFactory], dict[str, str]], int, str]] = {
    "no-token": (lambda a, h: _without(a.doc, "Authorization"), 401, "UNAUTHENTICATED"),
    "garbage-token": (
        lambda a, h: {**a.doc, "Authorization": "Bearer not.a.jwt"},
        401,
        "UNAUTHENTICATED",
    ),
    "no-tenant-header": (lambda a, h: _without(a.doc, "X-Tenant-ID"), 400, "TENANT_REQUIRED"),
    "foreign-tenant": (
        lambda a, h: {**a.doc, "X-Tenant-ID": "t-not-mine"},
        403,
        "TENANT_FORBIDDEN",
    ),
    "no-entitlement": (
        lambda a, h: {**h("CLINICIAN", entitlements=()), "Content-Type": "application/json"},
        403,
        "MODULE_NOT_ENTITLED",
    ),
}


@pytest.mark.parametrize("case", list(AUTH_CASES))
def test_auth_errors_in_the_legacy_shape(api: LegacyApi, headers: TokenFactory, case: str) -> None:
    make, status, code = AUTH_CASES[case]
    pid, eid = api.admitted()
    oid = api.created(lab(pid, eid))["orderId"]
    order_before = api.order(oid)
    before = api.counts()
    who = make(api, headers)
    for response in (
        api.get("/orders", who, patientId=pid),
        api.get(f"/orders/{oid}", who),
        api.create(lab(pid, eid), who),
        api.change(oid, "cancel", 1, who=who),
        api.client.get(f"/v1/orders/{oid}", headers=who),
    ):
        err = error_of(response, status, code)
        assert set(err) <= {"code", "message", "details"}
    assert api.counts() == before
    assert api.order(oid) == order_before
