"""docs/security.md's role tables are generated from the tables the code enforces, and this
test fails when they drift: `access.ROLES` (every face's permission check),
`access.WRITE_ACTION` (FHIR create/update per type), `orders.ACTION_ROLE` (lifecycle actions)
and the legacy face's `ENDPOINT_ROLES`. Each table is also checked against `require`, so it
shows what a call with that single role actually gets.

Regenerate after a deliberate change: `.venv/bin/python -m tests.unit.test_security_doc`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.auth import ROLES, Principal
from app.domain import access
from app.errors import Forbidden
from app.legacy_api import roles as legacy_roles
from app.services.orders import ACTION_ROLE

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
BEGIN, END = (
    "<!-- roles:begin (generated: tests/unit/test_security_doc.py) -->",
    "<!-- roles:end -->",
)

#: What each permission is used for, in words (a new Permission needs a line here).
USES: dict[access.Permission, str] = {
    access.Permission.READ: "read, vread, history, search, `_include` (all faces)",
    access.Permission.ORDER_WRITE: "create/edit draft orders, `$activate`, cancel, `$apply`",
    access.Permission.HOLD_RESUME: "hold and resume an order",
    access.Permission.CORRECTION: "mark an order entered-in-error",
    access.Permission.TASK_WRITE: "update a fulfilment Task (completion completes its order)",
    access.Permission.CLINICAL_DATA_WRITE: "write Patient, Encounter, AllergyIntolerance",
    access.Permission.DEFINITION_WRITE: "write PlanDefinition, ActivityDefinition",
    access.Permission.FORMULARY_WRITE: (
        "write Medication (the formulary orders name by `medicationReference`)"
    ),
    access.Permission.CDS_CALL: "call `/cds-services` hooks",
    access.Permission.SUBSCRIPTION_MANAGE: (
        "create, update, read and search Subscriptions, `$status`, `$events` (docs/events.md)"
    ),
}


def _principal(role: str) -> Principal:
    extra = {"patient_id": "pat-1"} if role == "PATIENT" else {}
    return Principal("sub", "t", frozenset({role}), frozenset({"t"}), **extra)  # type: ignore[arg-type]


def _allowed(permission: access.Permission, role: str) -> bool:
    try:
        access.require(_principal(role), permission)
    except Forbidden:
        return False
    return True


def _legacy_allowed(endpoint: str, role: str) -> bool:
    try:
        legacy_roles.require(_principal(role), endpoint)
    except Forbidden:
        return False
    return True


def _cell(allowed: bool, role: str, reads: bool) -> str:
    if not allowed:
        return "-"
    return "own" if role == "PATIENT" and reads else "✓"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render() -> str:
    header = _row(["", *ROLES])
    rule = _row(["---"] * (len(ROLES) + 1))
    lines = ["**Permissions** (`app/domain/access.py`; FHIR, legacy and CDS Hooks faces):", ""]
    lines += [_row(["permission — used for", *ROLES]), rule]
    for perm in access.Permission:
        cells = [_cell(_allowed(perm, r), r, perm is access.Permission.READ) for r in ROLES]
        lines.append(_row([f"`{perm.value}` — {USES[perm]}", *cells]))
    lines += [
        "",
        "**FHIR create/update by type** (`access.WRITE_ACTION`; Task: update only, "
        "created by `$activate`):",
        "",
        header,
        rule,
    ]
    for rtype, perm in sorted(access.WRITE_ACTION.items()):
        cells = [_cell(_allowed(perm, r), r, False) for r in ROLES]
        lines.append(_row([f"{rtype} (`{perm.value}`)", *cells]))
    lines += ["", "**Order lifecycle actions** (`services/orders.ACTION_ROLE`):", "", header, rule]
    for action, perm in ACTION_ROLE.items():
        cells = [_cell(_allowed(perm, r), r, False) for r in ROLES]
        lines.append(_row([f"{action.value} (`{perm.value}`)", *cells]))
    lines += ["", "**Legacy endpoints** (`app/legacy_api/roles.py`, the seed's lists):", ""]
    lines += [header, rule]
    for endpoint in legacy_roles.ENDPOINT_ROLES:
        reads = endpoint.endswith((".get", ".list"))
        cells = [_cell(_legacy_allowed(endpoint, r), r, reads) for r in ROLES]
        lines.append(_row([f"`{endpoint}`", *cells]))
    return "\n".join(lines)


def _documented() -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, re.DOTALL)
    assert match, f"{DOC} lacks the generated role tables between {BEGIN!r} and {END!r}"
    return match.group(1)


def test_every_permission_is_described() -> None:
    assert set(USES) == set(access.Permission)


def test_security_doc_role_tables_match_the_code() -> None:
    assert _documented() == render(), (
        "docs/security.md's role tables drifted from the code; regenerate with "
        "`.venv/bin/python -m tests.unit.test_security_doc` and review the change"
    )


@pytest.mark.parametrize("role", ROLES)
def test_a_single_role_gets_what_the_table_says(role: str) -> None:
    """The table is read back from the code paths themselves, so this is the contract:
    e.g. PRESCRIBER writes orders but reads nothing, NURSE updates Tasks."""
    expected = {
        "CLINICIAN": {"read", "order-write", "hold-resume", "correction", "task-write"}
        | {"definition-write", "cds-call"},
        "PRESCRIBER": {"order-write", "cds-call"},
        "NURSE": {"read", "task-write", "cds-call"},
        "PATIENT": {"read"},
        "ADMIN": {"read", "correction", "task-write", "clinical-data-write"}
        | {"definition-write", "formulary-write", "cds-call", "subscription-manage"},
    }[role]
    assert {p.value for p in access.Permission if _allowed(p, role)} == expected


def _write_doc() -> None:
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + render() + "\n" + text[end:], encoding="utf-8")


if __name__ == "__main__":
    _write_doc()
    print(f"wrote the role tables into {DOC}")
