#!/usr/bin/env bash
# Run the service on the embedded defaults (SQLite in ./instance, in-process cache) with demo
# data; prints a token and a curl line first. Arguments go to `orders-service dev`
# (e.g. --port 8080). Set DATABASE_URL / REDIS_URL to run against PostgreSQL / Redis.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/venv.sh
exec .venv/bin/orders-service dev "$@"
