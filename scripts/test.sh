#!/usr/bin/env bash
# Run the checks (scripts/checks.sh), then the test suite against real PostgreSQL and
# Redis (the tests create their own databases). Arguments go to pytest. Collecting no tests
# is a failure: CI must never pass on zero tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/venv.sh
# Lint, types and import layers first: seconds, and a violation fails the run before tests.
# SKIP_CHECKS=1 skips them while iterating on one test.
if [ "${SKIP_CHECKS:-0}" != "1" ]; then
  bash scripts/checks.sh
fi
bash scripts/services.sh
# The front-door browser test needs chromium and its driver (installed when missing).
bash scripts/browser.sh

status=0
.venv/bin/pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; failing (a run with zero tests must not pass)" >&2
  exit 1
fi
exit "$status"
