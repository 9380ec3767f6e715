"""Structured logs and request ids: one JSON line per request, a request id on every line.

Logs go to stdout as JSON (twelve-factor: the platform collects and ships them). The
per-request line names the method, the path without its query string, the status, the
duration and the tenant header, and nothing else: query strings and bodies can carry
patient data (a search by name, an order's note), so they are never logged.

The request id comes from a trusted-looking `X-Request-ID` or is minted here; it lives in a
context variable so that a logging filter can stamp it on every record emitted while the
request runs, whichever logger emitted it, and it is echoed back as `X-Request-ID` so a
client can quote it in a support call.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar, Token
from typing import TextIO

from flask import Flask, Response, g, request
from flask.logging import default_handler
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"
TENANT_HEADER = "X-Tenant-ID"
ACCESS_LOGGER = "app.access"

# Ids we accept from upstream: short and inert in any log viewer or header.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# The tenant header is client input: bound what one request can put in a log line.
_MAX_TENANT_CHARS = 64

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


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


def _json_formatter() -> JsonFormatter:
    return JsonFormatter(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


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
    duration_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
    tenant = request.headers.get(TENANT_HEADER)
    logging.getLogger(ACCESS_LOGGER).info(
        "request completed",
        extra={
            "method": request.method,
            "path": request.path,  # never `full_path`/`url`: query strings may hold PHI
            "status": response.status_code,
            "duration_ms": duration_ms,
            "tenant": tenant[:_MAX_TENANT_CHARS] if tenant else None,
            "request_id": rid,
        },
    )
    return response


def _end_request(_exc: BaseException | None) -> None:
    token: Token[str | None] | None = g.pop("request_id_token", None)
    if token is None:
        return
    try:
        _request_id.reset(token)
    except ValueError:  # set in another context (should not happen); just clear it
        _request_id.set(None)
