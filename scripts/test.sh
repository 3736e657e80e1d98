#!/usr/bin/env bash
# Set up .venv (see setup.sh) and run the test suite. Extra arguments go to pytest (e.g. -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The report test opens report.html in a real headless browser: Debian's chromium, where we can install it.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) \
    >/dev/null 2>&1 || echo "note: could not install chromium; the browser test of the report will be skipped"
fi
exec .venv/bin/python -m pytest "$@"
