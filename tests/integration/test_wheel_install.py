"""A non-editable install serves the conformance documents: the wheel carries capability/
(CapabilityStatement, OperationDefinitions, OpenAPI) as package data, and an app imported
from the installed package (not from this checkout) serves them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import app
from app import create_app
from app.migrate import upgrade
from app.runtime import get_runtime
from app.settings import Settings
from pathlib import Path

here = Path.cwd()
flask_app = create_app(Settings(instance_path=here, database_url=f"sqlite:///{here / 'p.db'}"))
with flask_app.app_context():
    upgrade(get_runtime().engine)
client = flask_app.test_client()
meta = client.get("/fhir/R4/metadata")
openapi = client.get("/api/v1/openapi.json")
opdef = client.get("/fhir/R4/OperationDefinition/order-activate")
print(json.dumps({
    "package": app.__file__,
    "metadata": [meta.status_code, meta.get_json().get("fhirVersion")],
    "openapi": [openapi.status_code, (openapi.get_json() or {}).get("openapi")],
    "operation": opdef.status_code,
}))
"""


def test_an_installed_wheel_serves_the_capability_statement_and_openapi(tmp_path: Path) -> None:
    # Build from a copy of the sources: setuptools keeps a build/ folder in the tree it
    # builds, and a stale one from an earlier build would ship modules since renamed.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            ".bench",
            "build",
            "*.egg-info",
            "__pycache__",
            "test-artifacts",
            "instance",
            ".mypy_cache",
            ".ruff_cache",
            ".pytest_cache",
        ),
    )
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = wheels.glob("orders_service-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    assert (site / "app" / "capability" / "CapabilityStatement.json").is_file()
    assert not (site / "app" / "capability").is_symlink()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=run_dir,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["package"].startswith(str(site)), result  # the installed copy, not the checkout
    assert result["metadata"] == [200, "4.0.1"]
    assert result["openapi"][0] == 200 and result["openapi"][1].startswith("3.")
    assert result["operation"] == 200
