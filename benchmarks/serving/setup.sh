#!/usr/bin/env bash
# Create the virtual environments the serving benchmark runs its rivals in.
#
#   bash benchmarks/serving/setup.sh [--force]
#
# Idempotent: an environment whose `.ready` marker exists is left alone. Environments
# live in benchmarks/.envs/ (git-ignored), each with torch==2.13.0 (the CPU build) kept
# pinned by a constraints file, so no rival pulls a CUDA build of torch:
#   sv-fastapi   FastAPI + uvicorn[standard], no batching (the plain baseline)
#   sv-litserve  LitServe (its own batching: max_batch_size, batch_timeout)
#   sv-ray       Ray Serve (@serve.batch)
#   sv-triton    NVIDIA PyTriton (Triton's dynamic batcher, Python backend)
#   sv-bentoml   BentoML (its adaptive batching)
# Conveyor itself runs in the project's own venv (.venv). wrk comes from Debian.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENVS="$(cd "$HERE/.." && pwd)/.envs"
PYTHON="${PYTHON:-python3}"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

TORCH="torch==2.13.0"
COMMON=("numpy" "safetensors" "orjson")

mkdir -p "$ENVS"
CONSTRAINTS="$ENVS/constraints.txt"
printf '%s\n' "$TORCH" > "$CONSTRAINTS"

if ! command -v wrk >/dev/null; then
    echo "setup: installing wrk (Debian)"
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

build() {  # build NAME PACKAGES...: a venv with torch first, then the rival
    local name="$1"
    shift
    local dir="$ENVS/$name"
    if [[ -f "$dir/.ready" && $FORCE -eq 0 ]]; then
        echo "setup: env $name ready"
        return
    fi
    echo "setup: building env $name"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    # The machine's pip config lists local indexes that lack most packages: drop the
    # warnings about them, keep everything else pip says.
    "$dir/bin/python" -m pip install --quiet -c "$CONSTRAINTS" "$TORCH" "${COMMON[@]}" \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
    "$dir/bin/python" -m pip install --quiet -c "$CONSTRAINTS" "$@" \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
    touch "$dir/.ready"
}

build sv-fastapi "fastapi==0.165.0" "uvicorn[standard]==0.54.0"
build sv-litserve "litserve==0.2.19" "uvicorn[standard]"
build sv-ray "ray[serve]==2.60.0"
build sv-triton "nvidia-pytriton==0.7.0"
build sv-bentoml "bentoml>=1.4,<1.5"

for name in sv-fastapi sv-litserve sv-ray sv-triton sv-bentoml; do
    "$ENVS/$name/bin/python" -c 'import torch, sys; print("setup:", sys.argv[1], "torch", torch.__version__)' "$name"
done
