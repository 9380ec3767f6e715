#!/usr/bin/env bash
# The habits CI enforces before any test runs (fast, fails the build): lint, format, types,
# and the import-layer contracts in pyproject.toml ([tool.importlinter]).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/venv.sh
echo "checks: ruff, ruff format, mypy, import contracts" >&2
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy app
.venv/bin/lint-imports --no-cache >/dev/null || { .venv/bin/lint-imports --no-cache; exit 1; }
