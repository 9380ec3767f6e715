#!/usr/bin/env bash
# Run the test suite against real PostgreSQL and Redis (the tests create their own
# databases). Arguments go to pytest. Collecting no tests is a failure: CI must never
# pass on zero tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/venv.sh
bash scripts/services.sh

status=0
.venv/bin/pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; failing (a run with zero tests must not pass)" >&2
  exit 1
fi
exit "$status"
