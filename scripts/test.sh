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
"$venv/bin/pytest" tests "$@"
