"""Per-request wiring every face shares: the access-audit context and who is calling.

A face calls `install(blueprint, face)` once; each request of that blueprint then carries an
`AccessContext` (app/services/audit.py) naming the face, the request id and the client
address, which the unit of work reads when it records AuditEvents. `note_principal` keeps
the authenticated principal for the access log line (app/observability.py).
"""

from __future__ import annotations

from flask import Blueprint, g, request

from app.auth import Principal
from app.runtime import get_runtime
from app.services import audit

MAX_QUERY_CHARS = audit.MAX_QUERY_CHARS


def install(bp: Blueprint, face: str) -> None:
    def _begin() -> None:
        g.face = face
        query = request.query_string.decode("utf-8", "replace")[:MAX_QUERY_CHARS] or None
        context = audit.AccessContext(
            face=face,
            sink=get_runtime().audit,
            request_id=g.get("request_id"),
            client_address=request.remote_addr,
            query=query,
        )
        g.access_token = audit.begin(context)

    def _end(_exc: BaseException | None) -> None:
        token = g.pop("access_token", None)
        if token is not None:
            audit.end(token)

    bp.before_request(_begin)
    bp.teardown_request(_end)


def note_principal(principal: Principal | None) -> None:
    """Remember who is calling, for the request's log line (subject only, never the token)."""
    if principal is not None:
        g.principal = principal
