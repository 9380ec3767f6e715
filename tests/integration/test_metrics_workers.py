"""`/metrics` under `orders-service serve` with two workers, under both servers (gunicorn
and granian; issues 15 and 13): one scrape shows the requests both workers served
(prometheus-client multiprocess mode, `PROMETHEUS_MULTIPROC_DIR` set for the workers by
`serve`), and a worker that dies stops counting in the live gauges while its counts stay."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from app.auth.devkeys import mint_token
from app.settings import Settings
from tests.served import free_port

pytestmark = pytest.mark.slow
ROUTE = "/fhir/R4/ServiceRequest"
TENANT = "metrics-t"


@pytest.fixture(params=["gunicorn", "granian"])
def server(
    request: pytest.FixtureRequest, pg_app: Flask, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    settings: Settings = pg_app.config["SETTINGS"]
    metrics_dir = tmp_path / "metrics"
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url or "",
        "ORDERS_INSTANCE_PATH": str(settings.instance_path),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "ORDERS_DEV_MODE": "1",  # development tokens, on purpose (issue 11)
    }
    script = Path(sys.executable).with_name("orders-service")
    log = (tmp_path / "server.log").open("wb")
    cmd = [str(script), "serve", "--server", request.param, "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2", "--threads", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # not listening, or still booting
                time.sleep(0.2)
        else:
            pytest.fail((tmp_path / "server.log").read_text()[-3000:])
        yield url, metrics_dir
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _count(text: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "orders_http_requests_total"
        and s.labels.get("route") == ROUTE
        and s.labels.get("status") == "200"
    )


def _per_worker(metrics_dir: Path, tmp: Path) -> dict[str, float]:
    """Each worker's own file, read alone: what that worker counted."""
    out: dict[str, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        alone = tmp / path.stem
        alone.mkdir(parents=True)
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        out[path.stem] = _count(generate_latest(registry).decode())
    return out


def test_one_scrape_counts_the_requests_of_both_workers(
    server: tuple[str, Path], pg_app: Flask, tmp_path: Path
) -> None:
    url, metrics_dir = server
    token = mint_token(pg_app.config["SETTINGS"], roles=("CLINICIAN",), tenants=(TENANT,))
    headers = {"Authorization": f"Bearer {token}", "X-Tenant-ID": TENANT}

    def one(_i: int) -> int:
        # A new connection per request: either worker may accept it.
        return requests.get(f"{url}{ROUTE}?_count=1", headers=headers, timeout=10).status_code

    sent = 0
    per_worker: dict[str, float] = {}
    with ThreadPoolExecutor(8) as pool:
        for _round in range(10):  # until both workers have served some (almost always once)
            assert set(pool.map(one, range(40))) == {200}
            sent += 40
            per_worker = _per_worker(metrics_dir, tmp_path / f"r{_round}")
            if sum(1 for v in per_worker.values() if v > 0) >= 2:
                break
    busy = {k: v for k, v in per_worker.items() if v > 0}
    assert len(busy) == 2, per_worker
    scraped = requests.get(f"{url}/metrics", timeout=10)
    assert scraped.status_code == 200
    assert _count(scraped.text) == sent == sum(busy.values())


def test_a_dead_worker_leaves_the_live_gauges_and_keeps_its_counts(
    server: tuple[str, Path], pg_app: Flask
) -> None:
    """SIGKILL one worker: the server replaces it, the dead one's live gauges (connections in
    use) are removed (gunicorn's `child_exit`, granian's respawn; app/web/granian_server.py),
    and what it counted is still in the scrape."""
    url, metrics_dir = server
    token = mint_token(pg_app.config["SETTINGS"], roles=("CLINICIAN",), tenants=(TENANT,))
    headers = {"Authorization": f"Bearer {token}", "X-Tenant-ID": TENANT}
    for _ in range(20):  # new connections: both workers use the database, most likely
        assert requests.get(f"{url}{ROUTE}?_count=1", headers=headers, timeout=10).ok
    live = {int(p.stem.rsplit("_", 1)[1]) for p in metrics_dir.glob("gauge_livesum_*.db")}
    assert live, sorted(p.name for p in metrics_dir.iterdir())
    victim = min(live)
    before = _count(requests.get(f"{url}/metrics", timeout=10).text)
    assert before == 20

    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (metrics_dir / f"gauge_livesum_{victim}.db").exists():
        assert time.monotonic() < deadline, "the dead worker's live gauges stayed"
        time.sleep(0.2)
    # Every worker answers again (the replacement included), and the counts are kept.
    for _ in range(10):
        assert requests.get(f"{url}/readyz", timeout=10).status_code == 200
    assert _count(requests.get(f"{url}/metrics", timeout=10).text) == before
