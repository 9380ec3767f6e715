"""The terminology-service path against a fake RxNav on loopback (issue 12).

The fake is a real HTTP server on 127.0.0.1 answering `/REST/rxcui/{id}/related.json?tty=IN+MIN`
as RxNav does. Codes starting 71 are ibuprofen products, 72 answer too slowly, others are
unknown. Codes are random per test, so answers cached in the shared Redis by an earlier run
never stand in for the HTTP call a test expects.
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from flask import Flask

from app import create_app
from app.cache import RedisCache
from app.cds.lookup import Found, Unavailable
from app.migrate import upgrade
from app.runtime import get_runtime
from app.settings import Settings
from app.terminology import RxNavClient
from tests.clinical.faces import FhirFace, LegacyFace
from tests.conftest import REDIS_TEST_URL, TokenFactory

SLOW_SECONDS = 2.0


class FakeRxNav(BaseHTTPRequestHandler):
    calls: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).calls.append(self.path)
        parts = self.path.split("?")[0].split("/")
        code = parts[3] if len(parts) > 3 else ""
        if code.startswith("72"):
            time.sleep(SLOW_SECONDS)
        groups = [{"tty": "MIN"}, {"tty": "IN"}]
        if code.startswith("71") and "tty=IN+MIN" in self.path:
            groups[1]["conceptProperties"] = [
                {"rxcui": "5640", "name": "ibuprofen", "tty": "IN", "synonym": ""}
            ]
        body = json.dumps({"relatedGroup": {"rxcui": code, "conceptGroup": groups}}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout): nothing to answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test output is for the tests."""


@pytest.fixture(scope="module")
def rxnav() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRxNav)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def code(prefix: str) -> str:
    return f"{prefix}{random.randrange(10**7, 10**8)}"


# ---------------------------------------------------------------- the client
def test_a_code_resolves_and_is_cached_in_process_and_in_redis(rxnav: str) -> None:
    redis = RedisCache(REDIS_TEST_URL)
    wanted = code("71")
    first = RxNavClient(rxnav, redis)
    before = len(FakeRxNav.calls)
    assert first.ingredients([wanted]) == {wanted: Found((("5640", "ibuprofen"),))}
    assert len(FakeRxNav.calls) == before + 1
    assert first.ingredients([wanted])[wanted] == Found((("5640", "ibuprofen"),))
    assert len(FakeRxNav.calls) == before + 1, "in-process cache"
    second = RxNavClient(rxnav, redis)  # another worker: empty in-process cache
    assert second.ingredients([wanted])[wanted] == Found((("5640", "ibuprofen"),))
    assert len(FakeRxNav.calls) == before + 1, "shared Redis cache"
    assert redis._client.ttl(f"terminology:rxnav:v1:{wanted}") > 3600
    redis.close()


def test_an_unknown_code_is_remembered_as_unknown(rxnav: str) -> None:
    client = RxNavClient(rxnav, None)
    unknown = code("73")
    assert client.ingredients([unknown])[unknown] == Found(())
    calls = len(FakeRxNav.calls)
    client.ingredients([unknown])
    assert len(FakeRxNav.calls) == calls


def test_a_slow_service_costs_at_most_the_timeout_then_cools_down(rxnav: str) -> None:
    client = RxNavClient(rxnav, None, timeout_seconds=0.3, budget_seconds=1.0)
    slow, fine = code("72"), code("71")
    started = time.monotonic()
    answer = client.ingredients([slow])[slow]
    assert time.monotonic() - started < 1.0
    assert isinstance(answer, Unavailable) and "no answer within 0.3 s" in answer.reason
    calls = len(FakeRxNav.calls)
    cooled = client.ingredients([fine])[fine]
    assert isinstance(cooled, Unavailable), "no call during the cooldown after a failure"
    assert len(FakeRxNav.calls) == calls


def test_the_budget_bounds_all_lookups_of_one_evaluation(rxnav: str) -> None:
    client = RxNavClient(rxnav, None, timeout_seconds=0.3, budget_seconds=0.5, cooldown_seconds=0)
    codes = [code("72"), code("72"), code("72"), code("72")]
    started = time.monotonic()
    answers = client.ingredients(codes)
    assert time.monotonic() - started < 1.0
    assert all(isinstance(a, Unavailable) for a in answers.values())


# ---------------------------------------------------------------- through the app
@pytest.fixture
def terminology_app(app: Flask, rxnav: str) -> Iterator[Flask]:
    """The test app's settings (same database, instance and signing key) plus TERMINOLOGY_URL."""
    base: Settings = app.config["SETTINGS"]
    settings = dataclasses.replace(
        base,
        terminology_url=rxnav,
        extra={**base.extra, "terminology_timeout": 0.3, "terminology_budget": 0.6},
    )
    flask_app = create_app(settings)
    with flask_app.app_context():
        upgrade(get_runtime().engine)
    yield flask_app
    with flask_app.app_context():
        get_runtime().close()


@pytest.mark.parametrize("face_kind", ["fhir", "legacy"])
def test_a_code_the_knowledge_base_lacks_resolves_through_the_service(
    terminology_app: Flask, headers: TokenFactory, face_kind: str
) -> None:
    client = terminology_app.test_client()
    face = (FhirFace if face_kind == "fhir" else LegacyFace)(client, headers)
    pid = face.patient()
    face.on_file(pid, "855332")
    placed = face.prescribe(pid, code("71"), "Store-brand pain reliever")
    assert placed.status == 201
    assert "DDI-WARFARIN-NSAID" in placed.rules()
    assert "DRUG-UNKNOWN" not in placed.rules()


@pytest.mark.parametrize("face_kind", ["fhir", "legacy"])
def test_a_timed_out_lookup_is_a_could_not_check_warning(
    terminology_app: Flask, headers: TokenFactory, face_kind: str
) -> None:
    client = terminology_app.test_client()
    face = (FhirFace if face_kind == "fhir" else LegacyFace)(client, headers)
    pid = face.patient()
    face.on_file(pid, "855332")
    started = time.monotonic()
    placed = face.prescribe(pid, code("72"), "Slow pill")
    assert time.monotonic() - started < SLOW_SECONDS, "ordering did not wait for the service"
    assert placed.status == 201
    unknown = placed.of("DRUG-UNKNOWN")
    assert unknown.level == "warning"
    assert "terminology service" in unknown.message and "Slow pill" in unknown.message
    assert face.activate(placed) == (422, "CDS_WARNING_UNACKNOWLEDGED")
