#!/usr/bin/env bash
# Run the service on the embedded defaults (SQLite in ./instance, in-process cache) with demo
# data; prints a token and a curl line first. A subscription delivery worker
# (`orders-service worker`, docs/events.md) runs beside the server and stops with it; set
# NO_WORKER=1 to leave it out. Arguments go to `orders-service dev` (e.g. --port 8080). Set
# DATABASE_URL / REDIS_URL to run against PostgreSQL / Redis.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/venv.sh
if [[ -z "${NO_WORKER:-}" ]]; then
    .venv/bin/orders-service migrate
    .venv/bin/orders-service worker --dev &
    worker=$!
    trap 'kill "$worker" 2>/dev/null || true; wait "$worker" 2>/dev/null || true' EXIT
fi
.venv/bin/orders-service dev "$@"
