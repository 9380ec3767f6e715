"""The JSON log formatter's fast path writes exactly python-json-logger's line.

`observability._JsonFormatter` writes plain records itself instead of going through the
library's generic machinery (that is most of the access line's cost). Every case here is
formatted twice, by it and by a stock `JsonFormatter` with the same configuration, and the
two lines must be equal byte for byte. `tests/unit/test_observability.py` covers what the
access line contains; this file covers that the faster formatter did not change it.
"""

from __future__ import annotations

import enum
import io
import logging
import math
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from pythonjsonlogger.json import JsonFormatter

from app import observability


def reference_formatter() -> JsonFormatter:
    """The configuration the service used before the fast path (and still declares)."""
    return JsonFormatter(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def make_record(
    msg: Any = "request completed",
    args: Any = (),
    *,
    extra: dict[str, Any] | None = None,
    name: str = observability.ACCESS_LOGGER,
    level: int = logging.INFO,
    exc_info: Any = None,
    sinfo: str | None = None,
    created: float | None = None,
) -> logging.LogRecord:
    logger = logging.getLogger(name)
    record = logger.makeRecord(
        name, level, __file__, 1, msg, args, exc_info, extra=extra, sinfo=sinfo
    )
    if created is not None:
        record.created = created
    return record


ACCESS_EXTRA = {
    "method": "GET",
    "path": "/fhir/ServiceRequest/01J9ZK3Q7X0000000000000000",
    "status": 200,
    "duration_ms": 1.23,
    "tenant": "acme",
    "request_id": "0123456789abcdef0123456789abcdef",
}


class Colour(enum.IntEnum):
    RED = 1


class Tag(enum.StrEnum):
    A = "a"


# Records the fast path writes itself (`_plain_line` returns a line).
PLAIN: dict[str, dict[str, Any]] = {
    "access line": ACCESS_EXTRA,
    "access line, no tenant, no duration": {**ACCESS_EXTRA, "tenant": None, "duration_ms": None},
    "status 500, integral duration": {**ACCESS_EXTRA, "status": 500, "duration_ms": 0.0},
    "non-ASCII and control characters": {
        **ACCESS_EXTRA,
        "path": "/fhir/Patient/é/☃/\U0001f600/\x00\x1f\x7f",
        "tenant": 'a"b\\c\nd\te\rf\bg\fh/</script>',
    },
    "lone surrogate": {"text": "bad \udcff bytes"},
    "floats": {
        "a": 0.1,
        "b": -0.0,
        "c": 1e16,
        "d": 1e-07,
        "e": 123456789.123456789,
        "f": float("nan"),
        "g": float("inf"),
        "h": float("-inf"),
        "i": 5e-324,
        "j": 1.7976931348623157e308,
    },
    "ints and bools": {"a": 0, "b": -1, "c": 2**70, "d": True, "e": False, "f": None},
    "empty string and no extras at all": {"empty": ""},
    "private attributes are skipped": {"_private": object(), "shown": "yes"},
    "odd but scalar names": {"": "empty name", "with space": 1, "ünïcode": 2, 'q"uote': 3},
    "request_id null": {"request_id": None},
}

# Records that must go through the library (`_plain_line` declines), with identical output.
NOT_PLAIN: dict[str, dict[str, Any]] = {
    "nested dict": {"detail": {"a": [1, 2]}},
    "list": {"items": [1, "two"]},
    "tuple": {"items": (1, 2)},
    "datetime": {"at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)},
    "IntEnum": {"colour": Colour.RED},
    "str enum": {"tag": Tag.A},
    "bytes": {"raw": b"\x00\xff"},
    "arbitrary object": {"obj": object()},
    "extra named like an output field: level": {"level": "shadow"},
    "extra named like an output field: logger": {"logger": "shadow"},
    "extra named like an output field: time": {"time": "shadow"},
}


@pytest.mark.parametrize("extra", list(PLAIN.values()), ids=list(PLAIN))
def test_plain_records_take_the_fast_path_and_match_the_library(extra: dict[str, Any]) -> None:
    ours = observability._json_formatter()
    assert isinstance(ours, observability._JsonFormatter)
    record = make_record(extra=extra)
    expected = reference_formatter().format(record)
    assert ours._plain_line(record.__dict__) == expected
    assert ours.format(record) == expected


@pytest.mark.parametrize("extra", list(NOT_PLAIN.values()), ids=list(NOT_PLAIN))
def test_other_records_take_the_library_path(extra: dict[str, Any]) -> None:
    ours = observability._json_formatter()
    record = make_record(extra=extra)
    expected = reference_formatter().format(record)
    assert ours._plain_line(record.__dict__) is None
    assert ours.format(record) == expected


def test_messages_exceptions_and_stacks_match_the_library() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    records = [
        make_record("order %s of %d", ("abc", 3), name="app.test"),
        make_record("%(a)s and %(b)s", ({"a": 1, "b": 2},), name="app.test"),
        make_record(12345, name="app.test", level=logging.WARNING),
        make_record({"event": "dict message", "n": 1}, name="app.test"),
        make_record("failed", name="app.test", level=logging.ERROR, exc_info=exc_info),
        make_record("with stack", name="app.test", sinfo="Stack (most recent call last):\n  x"),
        make_record("custom level", name="app.test", level=25),
    ]
    for record in records:
        expected = reference_formatter().format(record)
        assert observability._json_formatter().format(record) == expected


def test_a_record_formatted_twice_gives_the_same_line() -> None:
    """Handlers on the access logger and on the root format the same record in turn."""
    record = make_record(extra=ACCESS_EXTRA)
    ours = observability._json_formatter()
    first = ours.format(record)
    assert ours.format(record) == first == reference_formatter().format(record)


def _timestamps() -> Iterator[float]:
    rng = random.Random(20240601)
    now = time.time()
    whole = float(int(now))
    yield from (whole, whole + 0.5, 0.0, 1.0, 86399.9999995, 1e9 + 5e-7, 1700000000.9999996)
    for micros in range(0, 1_000_000, 9973):
        for nudge in (0.0, 5e-7, -5e-7, 4.999e-7, 9.999e-7):
            yield whole + micros / 1e6 + nudge
    for _ in range(20_000):
        yield rng.uniform(0, 4e9)
        yield now + rng.random()
        yield time.time()


def test_timestamp_matches_datetime_isoformat() -> None:
    """`_iso_utc` replaces `datetime.fromtimestamp(t, UTC).isoformat()`, rounding included."""
    mismatches = [
        t
        for t in _timestamps()
        if observability._iso_utc(t) != datetime.fromtimestamp(t, tz=UTC).isoformat()
    ]
    assert mismatches == []


def test_timestamps_match_across_second_boundaries() -> None:
    ours = observability._json_formatter()
    reference = reference_formatter()
    base = float(int(time.time()))
    for created in (base + 0.9999996, base + 1.0, base + 0.25, base + 2.0000004, base - 3.5):
        record = make_record(extra=ACCESS_EXTRA, created=created)
        assert ours.format(record) == reference.format(record)
        assert "+00:00" in ours.format(record)


# -- through Flask and the logging module ---------------------------------------------------


class ListHandler(logging.Handler):
    def __init__(self, formatter: logging.Formatter | None = None) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def app() -> Flask:
    app = Flask("access_log_test")
    observability.init_app(app)

    @app.get("/fhir/Patient/<pid>")
    def read(pid: str) -> dict[str, str]:
        return {"id": pid}

    return app


@pytest.fixture
def access_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger(observability.ACCESS_LOGGER)
    level = logger.level
    yield logger
    logger.setLevel(level)


def test_stdout_access_line_is_the_librarys_line(
    app: Flask, access_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator's handler with the stock formatter sees the very line stdout gets."""
    handler = ListHandler(reference_formatter())
    access_logger.addHandler(handler)
    try:
        capsys.readouterr()
        resp = app.test_client().get(
            "/fhir/Patient/p-1?name=secret",
            headers={"X-Tenant-ID": "acmé", "X-Request-ID": "req-1"},
        )
    finally:
        access_logger.removeHandler(handler)
    assert resp.status_code == 200
    stdout = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert handler.lines
    assert stdout == handler.lines
    (record,) = handler.records
    assert (record.method, record.path, record.status, record.tenant, record.request_id) == (
        "GET",
        "/fhir/Patient/p-1",
        200,
        "acmé",
        "req-1",
    )
    assert type(record.duration_ms) is float
    assert math.isfinite(record.duration_ms)


def test_disabled_access_logger_logs_nothing_and_builds_no_record(
    app: Flask,
    access_logger: logging.Logger,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(access_logger, "info", lambda *a, **k: calls.append((a, k)))
    access_logger.setLevel(logging.WARNING)
    capsys.readouterr()
    resp = app.test_client().get("/fhir/Patient/p-1", headers={"X-Request-ID": "req-2"})
    assert resp.headers["X-Request-ID"] == "req-2"
    assert calls == []
    assert '"app.access"' not in capsys.readouterr().out

    access_logger.setLevel(logging.NOTSET)  # enabled again: the level change is seen at once
    app.test_client().get("/fhir/Patient/p-1")
    assert len(calls) == 1


def test_handler_on_a_replaced_stdout_gets_the_line(app: Flask) -> None:
    """The stdout handler still writes whatever `sys.stdout` is at emit time."""
    buffer = io.StringIO()
    real = sys.stdout
    sys.stdout = buffer
    try:
        app.test_client().get("/fhir/Patient/p-3", headers={"X-Request-ID": "req-3"})
    finally:
        sys.stdout = real
    (line,) = [line for line in buffer.getvalue().splitlines() if '"app.access"' in line]
    assert line.startswith(
        '{"level": "INFO", "logger": "app.access", "message": "request completed", '
    )
    assert '"request_id": "req-3"' in line
