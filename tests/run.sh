#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs the whole suite.
# Services (dockerd, docker-registry) are started by the suite's own fixtures, the same way here and in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  need=()
  for pkg in docker.io docker-registry skopeo apache2-utils git graphviz python3-venv gcc-mingw-w64-x86-64; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
# PEP 668: a system python3 marked externally managed (Debian 12's) refuses pip installs; use the venv .venv then
# (the README's first command makes it). Inside a venv, or with a pyenv/python.org Python, python3 is used as is.
if python3 -c 'import pathlib, sys, sysconfig
managed = pathlib.Path(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED").exists()
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)' >/dev/null 2>&1; then
  [ -x .venv/bin/python3 ] || python3 -m venv .venv
  export PATH="$PWD/.venv/bin:$PATH" VIRTUAL_ENV="$PWD/.venv"
fi
# pipefail keeps pip's exit status; the filter only hides two harmless lines (grep exits 1 when it prints nothing).
python3 -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 \
  | { grep -v -e '^WARNING: Running pip as' -e 'is ignored: it is neither' || [ $? = 1 ]; }
# Reference implementations the tests use as oracles, built from the Go module proxy once (pinned versions).
peers="$(go env GOPATH)/bin"
[ -x "$peers/crane" ] || GOFLAGS= go install github.com/google/go-containerregistry/cmd/crane@v0.22.1
[ -x "$peers/ko" ] || GOFLAGS= go install github.com/google/ko@v0.19.1
[ -x "$peers/cosign" ] || GOFLAGS= go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.1
# sigstore-js, the Sigstore bundle oracle, from the npm registry at the versions tests/sigstore-js/package-lock.json pins
[ -d tests/sigstore-js/node_modules/@sigstore/verify ] || (cd tests/sigstore-js && npm ci --no-audit --no-fund --silent)
ruff check .
python3 -m mypy  # strict, over wgobuild/ (pyproject.toml [tool.mypy])
# Branch coverage of wgobuild/, child processes included (pyproject.toml [tool.coverage.run]); arguments go to
# pytest, e.g. `bash tests/run.sh -k name --count 20 -x` to hunt a flaky test (pytest-repeat).
exec python3 -m pytest --cov=wgobuild --cov-branch --cov-report=term:skip-covered "$@"
