#!/usr/bin/env bash
# Start the local PostgreSQL and Redis the tests use, if they are down, and wait until both
# answer. Idempotent: services already running are left alone.
set -euo pipefail

pg_up() { pg_isready -h 127.0.0.1 -q >/dev/null 2>&1; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ! pg_up; then
  echo "services: starting PostgreSQL" >&2
  # shellcheck disable=SC2046  # one cluster version directory is expected
  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start || true
fi
if ! redis_up; then
  echo "services: starting Redis" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
fi

for _ in $(seq 1 40); do
  if pg_up && redis_up; then
    exit 0
  fi
  sleep 0.5
done

pg_up || echo "services: PostgreSQL is not accepting connections on 127.0.0.1:5432" >&2
redis_up || echo "services: Redis does not answer PING on 127.0.0.1:6379" >&2
exit 1
