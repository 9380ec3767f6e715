"""Legacy dosing frequencies ↔ FHIR Timing (DESIGN §6).

Each legacy form becomes a Timing with `repeat` always set, the R4 timing-abbreviation
code (v3 GTSAbbreviation) where one exists, and the client's own text in `code.text` so it
comes back unchanged. Digits are ASCII only (`Q²H` is not a frequency).

| legacy | Timing.repeat | code |
|---|---|---|
| OD, BD/BID, TDS/TID, QDS/QID | frequency 1-4 per 1 d | QD, BID, TID, QID |
| NOCTE | 1 per 1 d, when HS | BED |
| STAT | count 1 | - |
| QnMIN, QnH | 1 per n min / h | Q1H…Q8H where listed |
| QnD | 1 per n d | QD (n=1), QOD (n=2) |
| WEEKLY, QW, QnW | 1 per n wk | WK (n=1) |
| PRN (alone or after a form) | `asNeededBoolean` on the order | - |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]
GTS_ABBREVIATION = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"

FREQUENCY = re.compile(
    r"^(?:(?P<base>OD|BD|BID|TDS|TID|QDS|QID|NOCTE|STAT|WEEKLY|QW"
    r"|Q(?P<minutes>[0-9]{1,3})MIN|Q(?P<n>[0-9]{1,2})(?P<unit>H|D|W))"
    r"(?:\s+(?P<prn>PRN))?|(?P<only>PRN))$",
    re.IGNORECASE | re.ASCII,
)
WEEKLY_REPEAT: JSON = {"frequency": 1, "period": 1, "periodUnit": "wk"}
#: legacy base frequency → (R4 timing abbreviation code or None, Timing.repeat)
_FIXED: dict[str, tuple[str | None, JSON]] = {
    "OD": ("QD", {"frequency": 1, "period": 1, "periodUnit": "d"}),
    "BD": ("BID", {"frequency": 2, "period": 1, "periodUnit": "d"}),
    "BID": ("BID", {"frequency": 2, "period": 1, "periodUnit": "d"}),
    "TDS": ("TID", {"frequency": 3, "period": 1, "periodUnit": "d"}),
    "TID": ("TID", {"frequency": 3, "period": 1, "periodUnit": "d"}),
    "QDS": ("QID", {"frequency": 4, "period": 1, "periodUnit": "d"}),
    "QID": ("QID", {"frequency": 4, "period": 1, "periodUnit": "d"}),
    "NOCTE": ("BED", {"frequency": 1, "period": 1, "periodUnit": "d", "when": ["HS"]}),
    "STAT": (None, {"count": 1}),
    "WEEKLY": ("WK", WEEKLY_REPEAT),
    "QW": ("WK", WEEKLY_REPEAT),
}
#: QnH / QnD / QnW periods (n, FHIR periodUnit) that have a code in the R4
#: timing-abbreviation value set (v3 GTSAbbreviation).
_PERIOD_CODES: dict[tuple[int, str], str] = {
    **{(n, "h"): f"Q{n}H" for n in (1, 2, 3, 4, 6, 8)},
    (1, "d"): "QD",
    (2, "d"): "QOD",
    (1, "wk"): "WK",
}
_UNITS = {"H": "h", "D": "d", "W": "wk"}
#: R4 timing abbreviation → the legacy form shown for a Timing that has no client text.
_LEGACY_OF_CODE = {
    "QD": "OD",
    "BID": "BID",
    "TID": "TID",
    "QID": "QID",
    "BED": "NOCTE",
    "WK": "QW",
    "QOD": "Q2D",
    **{f"Q{n}H": f"Q{n}H" for n in (1, 2, 3, 4, 6, 8)},
}
_LEGACY_UNIT = {"min": "MIN", "h": "H", "d": "D", "wk": "W"}
_PER_DAY = {1: "OD", 2: "BID", 3: "TID", 4: "QID"}
ACCEPTED_FREQUENCIES = (
    "OD, BD/BID, TDS/TID, QDS/QID, NOCTE, STAT, WEEKLY/QW, QnMIN, QnH, QnD, QnW "
    "(e.g. Q2W), PRN, or one of them followed by PRN"
)


@dataclass(frozen=True)
class Frequency:
    """A parsed legacy frequency: the Timing to store, and whether it is as-needed."""

    timing: JSON
    as_needed: bool


def frequency_problem(text: str) -> str | None:
    """Why `text` is not a legacy frequency we can map, or None when it is."""
    m = FREQUENCY.match(text.strip())
    if m is None:
        return f"{text!r} is not a known frequency (accepted: {ACCEPTED_FREQUENCIES})"
    if m.group("minutes") is not None and int(m.group("minutes")) == 0:
        return "QnMIN needs n of at least 1"
    if m.group("n") is not None and int(m.group("n")) == 0:
        return f"Qn{m.group('unit').upper()} needs n of at least 1"
    if (m.group("base") or "").upper() == "STAT" and m.group("prn"):
        return "STAT PRN is contradictory: STAT is a single immediate dose"
    return None


def parse_frequency(text: str) -> Frequency:
    """Legacy frequency → FHIR Timing (DESIGN §6). `text` is kept in `Timing.code.text`.

    Weekly forms map to `repeat` {frequency 1, period n, periodUnit wk}, so a rule that
    reads the Timing (methotrexate once weekly) needs no knowledge of legacy text.
    Raises ValueError for a frequency `frequency_problem` rejects.
    """
    problem = frequency_problem(text)
    m = FREQUENCY.match(text.strip())
    if problem is not None or m is None:
        raise ValueError(problem)
    code: str | None = None
    repeat: JSON | None = None
    base = (m.group("base") or "").upper()
    if m.group("minutes") is not None:
        repeat = {"frequency": 1, "period": int(m.group("minutes")), "periodUnit": "min"}
    elif m.group("n") is not None:
        period, unit = int(m.group("n")), _UNITS[m.group("unit").upper()]
        code = _PERIOD_CODES.get((period, unit))
        repeat = {"frequency": 1, "period": period, "periodUnit": unit}
    elif base:
        code, fixed = _FIXED[base]
        repeat = dict(fixed)
    concept: JSON = {"text": text}
    if code is not None:
        concept["coding"] = [{"system": GTS_ABBREVIATION, "code": code}]
    timing: JSON = {"code": concept}
    if repeat is not None:
        timing["repeat"] = repeat
    return Frequency(timing, bool(m.group("prn") or m.group("only")))


def frequency_of(timing: Any) -> str | None:
    """FHIR Timing → the legacy frequency: the client's text when kept, else the legacy
    form of the abbreviation code, else one derived from `repeat` (a Timing written by a
    FHIR client: {frequency 1, period 1, periodUnit wk} → `QW`)."""
    if not isinstance(timing, dict):
        return None
    concept = timing.get("code")
    if isinstance(concept, dict):
        if concept.get("text"):
            return str(concept["text"])
        for coding in concept.get("coding") or ():
            if isinstance(coding, dict) and coding.get("code"):
                code = str(coding["code"])
                return _LEGACY_OF_CODE.get(code.upper(), code)
    return _frequency_of_repeat(timing.get("repeat"))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _frequency_of_repeat(repeat: Any) -> str | None:
    if not isinstance(repeat, dict):
        return None
    if repeat.get("count") == 1 and "period" not in repeat:
        return "STAT"
    frequency: Any = repeat.get("frequency", 1)
    period: Any = repeat.get("period")
    unit: Any = repeat.get("periodUnit")
    if not (_is_int(frequency) and _is_int(period)):
        return None
    if repeat.get("when") == ["HS"] and (frequency, period, unit) == (1, 1, "d"):
        return "NOCTE"
    if period == 1 and unit == "d" and frequency in _PER_DAY:
        return _PER_DAY[frequency]
    if frequency == 1 and period >= 1 and unit in _LEGACY_UNIT:
        return "QW" if (period, unit) == (1, "wk") else f"Q{period}{_LEGACY_UNIT[unit]}"
    return None
