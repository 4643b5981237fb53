#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs the whole suite.
# Services (dockerd, docker-registry) are started by the suite's own fixtures, the same way here and in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  need=()
  for pkg in docker.io docker-registry skopeo apache2-utils git graphviz; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
# pipefail keeps pip's exit status; the filter only hides two harmless lines (grep exits 1 when it prints nothing).
python3 -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 \
  | { grep -v -e '^WARNING: Running pip as' -e 'is ignored: it is neither' || [ $? = 1 ]; }
ruff check .
exec python3 -m pytest "$@"
