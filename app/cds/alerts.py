"""What a CDS rule says: an `Alert`, pure data, plus the vocabularies it maps onto.

An alert has three identities:

* `rule_id` — which rule fired (`ALLERGY-DRUG`, `DDI-AMOX-WARFARIN`, `DUPLICATE-ORDER`, …);
* `code` — the DetectedIssue category (`DetectedIssue.code`), see `CATEGORIES`;
* `cause` — a STABLE key naming the clinical fact behind it (which allergy, which other
  order, which code). Two evaluations of the same facts give the same causes, so a re-run
  at activation can tell which stored alerts still hold (same cause: no new alert) and
  which are gone (cause absent: resolved). Causes never contain displays or free text.

Categories. `DRG` (Drug Interaction Alert), `DUPTHPY` (Duplicate Therapy Alert) and `ALGY`
(Allergy Alert) are codes of the HL7 v3 ActCode system
(http://terminology.hl7.org/CodeSystem/v3-ActCode, `_ActSuppliedItemDetectedIssueCode`
hierarchy; `DRG`/`DUPTHPY` are the codes used by the R4 DetectedIssue examples). The two
others are local to this service, because v3 has no code for them: `KNOWLEDGE-GAP` (the
knowledge base does not know the ordered drug, so checks were not done) and `CODE-DISPLAY`
(a coding's display names a different drug than its code). `category_coding()` gives the
Coding to store for each, with the right system.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Level = Literal["info", "warning", "hard-stop"]
Indicator = Literal["info", "warning", "critical"]
Severity = Literal["high", "moderate", "low"]

LEVELS: Final[tuple[Level, ...]] = ("hard-stop", "warning", "info")
"""Most to least urgent; the engine sorts alerts in this order."""

# DetectedIssue categories (Alert.code).
DRG: Final = "DRG"
DUPTHPY: Final = "DUPTHPY"
ALGY: Final = "ALGY"
KNOWLEDGE_GAP: Final = "KNOWLEDGE-GAP"
CODE_DISPLAY: Final = "CODE-DISPLAY"
DACT: Final = "DACT"

V3_ACT_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LOCAL_CATEGORY_SYSTEM: Final = "urn:orders-service:cds:detected-issue-category"

CATEGORIES: Final[dict[str, tuple[str, str]]] = {
    DRG: (V3_ACT_CODE, "Drug Interaction Alert"),
    DUPTHPY: (V3_ACT_CODE, "Duplicate Therapy Alert"),
    ALGY: (V3_ACT_CODE, "Allergy Alert"),
    DACT: (V3_ACT_CODE, "drug action detected issue"),
    KNOWLEDGE_GAP: (LOCAL_CATEGORY_SYSTEM, "Drug not in the knowledge base; checks not done"),
    CODE_DISPLAY: (LOCAL_CATEGORY_SYSTEM, "Coding display names a different drug"),
}

_INDICATOR: Final[dict[str, Indicator]] = {
    "hard-stop": "critical",
    "warning": "warning",
    "info": "info",
}
_SEVERITY: Final[dict[str, Severity]] = {
    "hard-stop": "high",
    "warning": "moderate",
    "info": "low",
}
_LEVEL_OF_INDICATOR: Final[dict[str, Level]] = {
    "critical": "hard-stop",
    "warning": "warning",
    "info": "info",
}


@dataclass(frozen=True, slots=True)
class Alert:
    """One finding of one rule about one order.

    `implicated` lists FHIR references (`AllergyIntolerance/a1`, `MedicationRequest/o2`) of
    the other resources involved (→ `DetectedIssue.implicated`, next to the order itself).
    `source` names the knowledge the rule relies on (a citation), `detail` is longer
    Markdown text for the card and `DetectedIssue.detail`.
    """

    rule_id: str
    level: Level
    message: str
    code: str
    cause: str
    implicated: tuple[str, ...] = ()
    source: str = ""
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.level not in _INDICATOR:
            raise ValueError(f"unknown alert level {self.level!r}")
        if not self.cause:
            raise ValueError("an alert needs a cause")

    @property
    def indicator(self) -> Indicator:
        return indicator(self.level)

    @property
    def severity(self) -> Severity:
        return severity(self.level)


def indicator(level: Level | str) -> Indicator:
    """CDS Hooks card indicator: hard-stop → critical; info and warning unchanged."""
    try:
        return _INDICATOR[level]
    except KeyError:
        raise ValueError(f"unknown alert level {level!r}") from None


def severity(level: Level | str) -> Severity:
    """DetectedIssue.severity: hard-stop → high, warning → moderate, info → low."""
    try:
        return _SEVERITY[level]
    except KeyError:
        raise ValueError(f"unknown alert level {level!r}") from None


def level_of_indicator(value: str) -> Level:
    """The inverse of `indicator` (critical → hard-stop)."""
    try:
        return _LEVEL_OF_INDICATOR[value]
    except KeyError:
        raise ValueError(f"unknown card indicator {value!r}") from None


def category_coding(code: str) -> dict[str, str]:
    """The Coding for `DetectedIssue.code` of an alert category (see module docstring)."""
    system, display = CATEGORIES.get(code, (LOCAL_CATEGORY_SYSTEM, code))
    return {"system": system, "code": code, "display": display}
