#!/usr/bin/env bash
# `make demo`: create a fresh workspace and walk through what Conveyor does so far:
# scikit-learn's digits as PNG files -> ingest -> dedupe -> split -> check -> train ->
# tracked run and its cost -> registered model, gate, promotion, ONNX export -> a queued
# job run by a worker.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"
conveyor="$(pwd)/$venv/bin/conveyor"
venv_python="$(pwd)/$venv/bin/python"
demo="demo-workspace"

run() { echo; echo "\$ $*"; "$@"; }

rm -rf "$demo"
"$venv/bin/python" examples/digits.py "$demo/raw/digits"
run "$conveyor" init "$demo"
cd "$demo"
run "$conveyor" status
run "$conveyor" data ingest raw/digits --name digits
run "$conveyor" data ingest raw/digits --name digits
run "$conveyor" data dedupe digits@v1
run "$conveyor" data split digits@latest --train 0.8 --val 0.1 --test 0.1 --stratify label --seed 0
run "$conveyor" data check digits@latest --rules ../examples/digits-rules.yaml
run "$conveyor" data show digits@latest
run "$conveyor" data log digits
run "$conveyor" data diff digits@v1 digits@v2
run "$conveyor" train image-classifier --data digits@latest --epochs 3 --checkpoint-every 20
run "$conveyor" runs ls
run "$conveyor" jobs submit --cpus 1 --retries 2 --time-limit 10m -- echo the answer is 42
run "$conveyor" jobs worker --until-idle
run "$conveyor" jobs ls
run "$conveyor" runs cost --by dataset
run "$conveyor" models ls
run "$conveyor" models lineage digits-image-classifier@v1
run "$conveyor" models gate set production --file ../examples/production-gate.yaml
run "$conveyor" models promote digits-image-classifier@v1 --to production --reason "first release"
run "$conveyor" data used-by digits@v3
run "$conveyor" models export digits-image-classifier@production --format onnx --out edge
run "$venv_python" edge/run.py raw/digits/3/0003.png
