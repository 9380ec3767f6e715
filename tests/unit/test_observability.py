"""Request ids and the JSON access line, on a tiny Flask app (no database, no network)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from flask import Flask, request

from app import observability
from app.observability import current_request_id

SECRET_BODY = "Jane Q. Patient, allergic to penicillin"
SECRET_QUERY = "name=Jane-Q-Patient"


def _make_app() -> Flask:
    app = Flask("observability_test")
    observability.init_app(app)

    @app.post("/echo")
    def echo() -> dict[str, Any]:
        logging.getLogger("app.test").info("handling echo")
        return {"length": len(request.get_data()), "rid": current_request_id()}

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    return app


@pytest.fixture
def app() -> Flask:
    return _make_app()


def _json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("logger") == observability.ACCESS_LOGGER]


def test_request_id_is_minted_and_echoed(app: Flask) -> None:
    resp = app.test_client().post("/echo", data=b"x")
    rid = resp.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert resp.get_json()["rid"] == rid


def test_well_formed_incoming_request_id_is_kept(app: Flask) -> None:
    resp = app.test_client().post("/echo", headers={"X-Request-ID": "gw-01.abc_DEF"})
    assert resp.headers["X-Request-ID"] == "gw-01.abc_DEF"
    assert resp.get_json()["rid"] == "gw-01.abc_DEF"


@pytest.mark.parametrize("bad", ["has space", "x" * 65, "semi;colon", "new\\nline", "é"])
def test_malformed_incoming_request_id_is_replaced(app: Flask, bad: str) -> None:
    resp = app.test_client().post("/echo", headers={"X-Request-ID": bad})
    assert resp.headers["X-Request-ID"] != bad
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-ID"])


def test_every_line_is_json_with_the_request_id_and_no_query_or_body(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    resp = app.test_client().post(
        f"/echo?{SECRET_QUERY}",
        data=SECRET_BODY.encode(),
        headers={"X-Request-ID": "req-123", "X-Tenant-ID": "acme"},
    )
    assert resp.status_code == 200
    out = capsys.readouterr().out
    assert SECRET_BODY not in out
    assert SECRET_QUERY not in out
    assert "?" not in out
    lines = _json_lines(out)
    assert [line["message"] for line in lines] == ["handling echo", "request completed"]
    assert all(line["request_id"] == "req-123" for line in lines)
    (access,) = _access_lines(lines)
    assert access["method"] == "POST"
    assert access["path"] == "/echo"
    assert access["status"] == 200
    assert access["tenant"] == "acme"
    assert isinstance(access["duration_ms"], float | int)
    assert access["duration_ms"] >= 0
    assert access["level"] == "INFO"
    assert "time" in access


def test_unhandled_error_is_logged_with_request_id_and_status_500(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    resp = app.test_client().get("/boom", headers={"X-Request-ID": "req-boom"})
    assert resp.status_code == 500
    assert resp.headers["X-Request-ID"] == "req-boom"
    lines = _json_lines(capsys.readouterr().out)
    assert lines
    assert all(line["request_id"] == "req-boom" for line in lines)
    (access,) = _access_lines(lines)
    assert access["status"] == 500


def test_request_id_is_cleared_after_the_request(app: Flask) -> None:
    app.test_client().post("/echo", headers={"X-Request-ID": "req-done"})
    assert current_request_id() is None


def test_repeated_init_app_does_not_stack_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    apps = [_make_app() for _ in range(3)]
    ours = [h for h in logging.getLogger().handlers if isinstance(h, observability._StdoutHandler)]
    assert len(ours) == 1
    capsys.readouterr()
    apps[-1].test_client().post("/echo")
    assert len(_access_lines(_json_lines(capsys.readouterr().out))) == 1


def test_lines_outside_a_request_carry_a_null_request_id(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    logging.getLogger("app.test").warning("background work")
    (line,) = _json_lines(capsys.readouterr().out)
    assert line["message"] == "background work"
    assert line["request_id"] is None
