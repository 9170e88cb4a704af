#!/usr/bin/env bash
# What `make test` runs: lint, type check, then every test against real services.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"

"$venv/bin/ruff" check src tests benchmarks scripts
"$venv/bin/ruff" format --check src tests benchmarks scripts
"$venv/bin/mypy"

trap 'scripts/services.sh stop' EXIT
scripts/services.sh start
# shellcheck disable=SC1091
source .services/env
# Two test processes (TEST_WORKERS=1 for one): most tests wait on servers, subprocesses
# and Ray rather than compute, so two overlap well even on two cores.
"$venv/bin/pytest" tests -n "${TEST_WORKERS:-2}" "$@"
