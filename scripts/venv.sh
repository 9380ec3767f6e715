#!/usr/bin/env bash
# Make .venv ready: create it if missing, and (re)install the project with its test tools
# only when pyproject.toml changed since the last install, so repeated runs cost nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-python3}
stamp=.venv/.stamp

if [ ! -x .venv/bin/python ]; then
  echo "venv: creating .venv with $("$python" --version 2>&1)" >&2
  "$python" -m venv .venv
fi

if ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "venv: .venv/bin/python is older than 3.11; remove .venv and set PYTHON=python3.11" >&2
  exit 1
fi

want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [ "$want" != "$have" ] || [ ! -x .venv/bin/orders-service ]; then
  echo "venv: installing the project and its test tools into .venv" >&2
  log=$(mktemp)
  # Quiet on success (setuptools' editable-install banner is noise); the whole log on failure.
  if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input \
    -e '.[test]' >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  echo "$want" > "$stamp"
fi
