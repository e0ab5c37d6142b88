#!/usr/bin/env bash
# Sets up a checkout: a virtualenv with Taskdeck installed, and htmx from npm copied
# into static/vendor/. With --test it also installs the test extras and the system
# packages the browser, PostgreSQL, README and benchmark tests use (Debian's chromium,
# postgresql, curl, wrk).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$python" -m venv .venv
fi
extras=""
[[ $want_test == 1 ]] && extras="[test]"
stamp=".venv/.installed${extras}"
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".${extras}"
    touch "$stamp"
fi

# htmx: pinned in package.json/package-lock.json, served from our own static path.
htmx_version=$(.venv/bin/python -c 'import json; print(json.load(open("package.json"))["dependencies"]["htmx.org"])')
vendored="static/vendor/htmx-${htmx_version}.min.js"
if [[ ! -f "$vendored" ]]; then
    npm ci --no-audit --no-fund --loglevel=error
    mkdir -p static/vendor
    cp node_modules/htmx.org/dist/htmx.min.js "$vendored"
fi

if [[ $want_test == 1 ]]; then
    missing=()
    [[ -x /usr/bin/chromium ]] || missing+=(chromium chromium-driver)
    # The README's curl line is run by its test (tests/integration/test_push_live.py).
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    # The serving benchmark's load generator (bench/serving.py; its quick run is a test).
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v pg_ctlcluster >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
    if (( ${#missing[@]} )); then
        sudo=""
        [[ $(id -u) == 0 ]] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi
