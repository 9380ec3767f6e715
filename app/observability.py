"""Structured logs and request ids: one JSON line per request, a request id on every line.

Logs go to stdout as JSON (twelve-factor: the platform collects and ships them). The
per-request line names the method, the path without its query string, the status, the
duration and the tenant header, and nothing else: query strings and bodies can carry
patient data (a search by name, an order's note), so they are never logged.

The request id comes from a trusted-looking `X-Request-ID` or is minted here; it lives in a
context variable so that a logging filter can stamp it on every record emitted while the
request runs, whichever logger emitted it, and it is echoed back as `X-Request-ID` so a
client can quote it in a support call.

The access line is written on every request, so its cost counts: `_JsonFormatter` builds
python-json-logger's line without the library's generic per-record machinery when it can, and
`_finish_request` does nothing at all when the access logger is not enabled for INFO. The
output is the same either way (see `_JsonFormatter`).
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
import uuid
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from types import MappingProxyType
from typing import Any, TextIO

from flask import Flask, Response, g, request
from flask.logging import default_handler
from pythonjsonlogger.json import JsonFormatter

from app import metrics

REQUEST_ID_HEADER = "X-Request-ID"
TENANT_HEADER = "X-Tenant-ID"
ACCESS_LOGGER = "app.access"

# Ids we accept from upstream: short and inert in any log viewer or header.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# The tenant header is client input: bound what one request can put in a log line.
_MAX_TENANT_CHARS = 64
#: Paths no face blueprint claims (so `g.face` is unset), by prefix.
_FACES = (
    ("/fhir", "fhir"),
    ("/api/v1", "api-v1"),
    ("/v1", "api-v1"),
    ("/cds-services", "cds-hooks"),
    ("/healthz", "health"),
    ("/readyz", "health"),
    ("/metrics", "metrics"),
)

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
#: `logging.getLogger` takes the logging lock on every call; the logger object never changes.
_access_log = logging.getLogger(ACCESS_LOGGER)


def current_request_id() -> str | None:
    """The id of the request being served by this thread, or None outside a request."""
    return _request_id.get()


def accept_or_mint_request_id(incoming: str | None) -> str:
    """Keep a well-formed upstream id (so a gateway's id threads through); else mint one."""
    if incoming and _REQUEST_ID_RE.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Stamps `request_id` on every record; attached to the handler so that records
    propagated from any logger (sqlalchemy, alembic, the app's own) get it too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _request_id.get()
        return True


class _StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stdout` is at emit time, so a replaced stdout (a test
    runner's capture, a daemon's redirection) never leaves the handler on a closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


#: The formatter's configuration: fields, their output names, and the timestamp's key.
_FIELDS = ("levelname", "name", "message")
_RENAME = MappingProxyType({"levelname": "level", "name": "logger"})
_TIMESTAMP = "time"

_INFINITY = float("inf")
_float_repr = float.__repr__
_int_repr = int.__repr__
_encode_str = encode_basestring_ascii  # what `json.dumps` uses for str with ensure_ascii
_MAX_EXTRA_NAMES = 256


def _scalar_json(value: Any) -> str | None:
    """`json.dumps(value)` for a str, int, float, bool or None (exact types), else None."""
    kind = type(value)
    if kind is str:
        return _encode_str(value)
    if kind is int:
        return _int_repr(value)
    if kind is float:
        if value != value:
            return "NaN"
        if value == _INFINITY:
            return "Infinity"
        if value == -_INFINITY:
            return "-Infinity"
        return _float_repr(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    return None


#: (second, "YYYY-MM-DDTHH:MM:SS") of the last line: consecutive lines share the second.
_iso_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def _iso_utc(created: float) -> str:
    """`datetime.fromtimestamp(created, tz=UTC).isoformat()`, without a datetime per line.

    Same microsecond rounding as `fromtimestamp` (round half to even, carried into the
    second), and the seconds part from `datetime` itself, once per second.
    """
    global _iso_second
    frac, whole = math.modf(created)
    micros = round(frac * 1e6)
    if micros >= 1_000_000:
        micros -= 1_000_000
        whole += 1.0
    elif micros < 0:
        micros += 1_000_000
        whole -= 1.0
    second = int(whole)
    cached_second, head = _iso_second
    if cached_second != second:
        head = datetime.fromtimestamp(second, tz=UTC).isoformat().removesuffix("+00:00")
        _iso_second = (second, head)
    return f"{head}.{micros:06d}+00:00" if micros else f"{head}+00:00"


class _JsonFormatter(JsonFormatter):
    """python-json-logger's `JsonFormatter` with our fields, and a cheaper way to the same line.

    Every line has `level`, `logger`, `message`, the record's extra attributes (`request_id`
    and, on the access line, method, path, status, duration_ms, tenant) and `time` (the
    record's creation time, ISO 8601 in UTC), serialised by `json.dumps` with its default
    separators and ASCII escaping.

    The library spends ~8 µs per line on generic machinery (a dict built through several
    layers, a new JSON encoder object per line, the encoder's `default` hook for the
    timestamp). When a record is plain — a string message, no exception or stack, and extra
    attributes that are all JSON scalars (str, int, float, bool, None, exact types) — this
    class writes the library's line itself, byte for byte: same keys in the same order, the
    same escaping and number formatting (`json.dumps` uses the same string escape and the
    same int/float reprs), the same timestamp. Every other record goes through the library
    unchanged. `tests/unit/test_access_log.py` checks the two paths against each other.
    """

    def __init__(self) -> None:
        super().__init__(list(_FIELDS), rename_fields=dict(_RENAME), timestamp=_TIMESTAMP)
        # What the library's `add_fields` skips when copying a record's extra attributes.
        self._not_extra = frozenset(self.reserved_attrs) | frozenset(_FIELDS)
        # `"level": `, `"logger": `, `"message": ` and the fields they come from.
        self._required = tuple(
            (_encode_str(self.rename_fields.get(f, f)) + ": ", f) for f in _FIELDS
        )
        self._time_prefix = _encode_str(self.rename_fields.get(_TIMESTAMP, _TIMESTAMP)) + ": "
        # An extra attribute under one of the names written above would replace that entry
        # in place in the library's dict; such (odd) records take the library's path. Renames
        # apply only to fields that are never extras, so extras keep their own names.
        self._own_names = frozenset(self.rename_fields.get(f, f) for f in (*_FIELDS, _TIMESTAMP))
        # `"key": ` per extra attribute name seen (names come from code: few; bounded anyway).
        self._extra_prefixes: dict[str, str] = {}

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.msg, dict) or record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        record.message = record.getMessage()  # as the library's `format` does
        line = self._plain_line(record.__dict__)
        return line if line is not None else super().format(record)

    def _plain_line(self, attrs: dict[str, Any]) -> str | None:
        """The library's line for a plain record, or None if the record is not plain."""
        parts = []
        for head, field in self._required:
            text = _scalar_json(attrs.get(field))
            if text is None:
                return None
            parts.append(head + text)
        not_extra = self._not_extra
        prefixes = self._extra_prefixes
        for key, value in attrs.items():
            if key in not_extra:
                continue
            prefix = prefixes.get(key)
            if prefix is None:
                if type(key) is not str or key in self._own_names:
                    return None
                if key.startswith("_"):
                    continue
                prefix = _encode_str(key) + ": "
                if len(prefixes) < _MAX_EXTRA_NAMES:
                    prefixes[key] = prefix
            text = _encode_str(value) if type(value) is str else _scalar_json(value)
            if text is None:
                return None
            parts.append(prefix + text)
        parts.append(self._time_prefix + '"' + _iso_utc(attrs["created"]) + '"')
        return "{" + ", ".join(parts) + "}"


def _json_formatter() -> JsonFormatter:
    return _JsonFormatter()


def configure_logging(level: int = logging.INFO) -> None:
    """Install the JSON stdout handler on the root logger once per process.

    `create_app` runs many times in a test session and once per gunicorn worker; a second
    call must not add a second handler (every line would be printed twice).
    """
    root = logging.getLogger()
    if not any(isinstance(h, _StdoutHandler) for h in root.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(_json_formatter())
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    root.setLevel(level)


def init_app(app: Flask) -> None:
    """Configure logging and hook request-id handling and the access line into `app`."""
    configure_logging()
    # Flask adds a plain-text stderr handler to `app.logger` only when nothing handles its
    # records; ours on the root does, but remove it in case it was attached already.
    app.logger.removeHandler(default_handler)
    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.teardown_request(_end_request)


def _start_request() -> None:
    rid = accept_or_mint_request_id(request.headers.get(REQUEST_ID_HEADER))
    g.request_id = rid
    g.request_id_token = _request_id.set(rid)
    g.request_started = time.perf_counter()


def _finish_request(response: Response) -> Response:
    rid = g.get("request_id") or accept_or_mint_request_id(None)
    response.headers[REQUEST_ID_HEADER] = rid
    started = g.get("request_started")
    elapsed = time.perf_counter() - started if started else 0.0
    face = g.get("face") or _face_of(request.path)
    route = route_of(request.path)
    status = response.status_code
    metrics.observe_request(face, route, request.method, status, elapsed)
    if not _access_log.isEnabledFor(logging.INFO):
        return response  # a disabled access line costs nothing (isEnabledFor is cached)
    tenant = request.headers.get(TENANT_HEADER)
    who = g.get("principal")
    _access_log.info(
        "request completed",
        extra={
            "method": request.method,
            # The route template and the path, never `full_path`/`url`: query strings may
            # hold patient identifiers. Bodies and tokens are never logged.
            "route": route,
            "path": request.path,
            "face": face,
            "status": status,
            "outcome": "ok" if status < 400 else g.get("error_code") or "error",
            "duration_ms": round(elapsed * 1000, 2) if started else None,
            "tenant": tenant[:_MAX_TENANT_CHARS] if tenant else None,
            "subject": who.sub[:_MAX_TENANT_CHARS] if who is not None else None,
            "request_id": rid,
        },
    )
    return response


def route_of(path: str) -> str:
    """The matched route's template (`/api/v1/orders/<order_id>`), or what a face set (the
    FHIR face's catch-all route sets its own); `unmatched` for unknown paths."""
    template = g.get("route_template")
    if template:
        return str(template)
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


def _face_of(path: str) -> str:
    for prefix, face in _FACES:
        if path == prefix or path.startswith(prefix + "/"):
            return face
    return "front-door"


def _end_request(_exc: BaseException | None) -> None:
    token: Token[str | None] | None = g.pop("request_id_token", None)
    if token is None:
        return
    try:
        _request_id.reset(token)
    except ValueError:  # set in another context (should not happen); just clear it
        _request_id.set(None)
