#!/usr/bin/env bash
# `make demo`: create a fresh workspace and show what Conveyor does so far.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"
conveyor="$venv/bin/conveyor"
demo="demo-workspace"

rm -rf "$demo"
echo "\$ conveyor init $demo"
"$conveyor" init "$demo"
echo
echo "\$ conveyor -w $demo status"
"$conveyor" -w "$demo" status
