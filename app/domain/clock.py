"""The clock and FHIR time values: `now` at the precision the server stores, instants as
FHIR writes them, and date/dateTime/instant values as half-open UTC ranges [low, high).

A FHIR date carries its precision: `2024` is the whole year, `2024-03-05` the whole day,
`2024-03-05T10:00:00Z` one second. Search compares ranges, not points.
See: https://hl7.org/fhir/R4/search.html#date
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$",
    re.ASCII,  # `\d` would match any Unicode decimal digit
)


def _add_months(value: datetime, months: int) -> datetime:
    total = value.month - 1 + months
    return value.replace(year=value.year + total // 12, month=total % 12 + 1)


def parse_range(text: str) -> tuple[datetime, datetime]:
    """Parse a FHIR date-ish string into [low, high); raise ValueError when malformed or
    outside what a UTC datetime can hold (year 1 to 9999 after the offset is applied)."""
    try:
        return _parse_range(text)
    except OverflowError as exc:
        raise ValueError(f"date out of range: {text!r}") from exc


def _parse_range(text: str) -> tuple[datetime, datetime]:
    m = _DATE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a FHIR date/dateTime: {text!r}")
    g = m.groupdict()
    year = int(g["y"])
    if g["m"] is None:
        low = datetime(year, 1, 1, tzinfo=UTC)
        return low, low.replace(year=year + 1)
    month = int(g["m"])
    if g["d"] is None:
        low = datetime(year, month, 1, tzinfo=UTC)
        return low, _add_months(low, 1)
    day = int(g["d"])
    if g["H"] is None:
        low = datetime(year, month, day, tzinfo=UTC)
        return low, low + timedelta(days=1)
    tz = UTC
    if g["tz"] and g["tz"] != "Z":
        sign = 1 if g["tz"][0] == "+" else -1
        hh, mm = int(g["tz"][1:3]), int(g["tz"][4:6])

        tz = timezone(sign * timedelta(hours=hh, minutes=mm))
    hour, minute = int(g["H"]), int(g["M"])
    if g["S"] is None:
        low = datetime(year, month, day, hour, minute, tzinfo=tz)
        return low.astimezone(UTC), (low + timedelta(minutes=1)).astimezone(UTC)
    second = int(g["S"])
    micro = int((g["f"] or ".0")[1:7].ljust(6, "0"))
    low = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    step = timedelta(microseconds=1) if g["f"] else timedelta(seconds=1)
    return low.astimezone(UTC), (low + step).astimezone(UTC)


def format_instant(value: datetime) -> str:
    """An R4 `instant` with millisecond precision and a `Z`."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utcnow() -> datetime:
    """Now, at the millisecond precision `meta.lastUpdated` reports, so `_lastUpdated=eq…`
    with the value a client was given matches what is stored."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
