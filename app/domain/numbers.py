"""Numbers that come from a client, read as ASCII digits only (issue 11, item 19).

`str.isdigit()` is true for `²` and `٣`; `int()` then fails on the first (a 500 where a
400 belongs) and quietly accepts the second. Every count, version and page number a client
sends goes through `parse_count` instead. Eighteen digits is far beyond any version or
count and keeps the value inside a 64-bit database integer.
"""

from __future__ import annotations

import re

_ASCII_COUNT = re.compile(r"[0-9]{1,18}")


def parse_count(text: str) -> int | None:
    """A non-negative integer written in ASCII digits (at most 18 of them), else None."""
    return int(text) if _ASCII_COUNT.fullmatch(text) else None


def parse_etag_version(text: str) -> int | None:
    """The version of a weak ETag (`W/"3"`, also `"3"` or `3`), else None.

    See: https://hl7.org/fhir/R4/http.html#concurrency
    """
    return parse_count(text.strip().removeprefix("W/").strip('"'))
