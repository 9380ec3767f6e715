#!/usr/bin/env bash
# The headless browser the front-door test drives (tests/browser/): Debian's chromium and
# chromium-driver, installed when missing (as root, e.g. CI). Selenium itself comes from the
# `test` extra; it is pointed at /usr/bin/chromedriver, so nothing is downloaded at run time.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "browser: chromium/chromium-driver missing; run as root: apt-get install -y chromium chromium-driver" >&2
  exit 1
fi
echo "browser: installing chromium and chromium-driver" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq chromium chromium-driver >/dev/null
