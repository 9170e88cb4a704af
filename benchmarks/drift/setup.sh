#!/usr/bin/env bash
# Create the virtual environments the drift benchmark runs its rivals in.
#
#   bash benchmarks/drift/setup.sh [--force]
#
# Idempotent: an environment whose `.ready` marker exists is left alone (delete the
# folder, or pass --force, to rebuild both). Environments live in benchmarks/.envs/
# (git-ignored):
#   evidently      evidently 0.7.23 (pandas<3: it resolves pandas 3 and then fails on import)
#   alibi-detect   alibi-detect 0.13.0 (numpy<2, Pillow<11, numba<0.60, scikit-image<0.25);
#                  its KS, chi-square and tabular detectors need neither torch nor TensorFlow;
#                  MMDDrift (the embedding case) needs one: the CPU build of torch 2.13.0
#                  (added to an env built before it, marker `.torch`)
# Conveyor itself runs in the project's own venv (.venv).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENVS="$(cd "$HERE/.." && pwd)/.envs"
PYTHON="${PYTHON:-python3}"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

# Exact versions, as resolved on 2026-12 (pip install --dry-run): neither pulls torch.
# torch==2.13.0 resolves to the CPU build here (2.13.0+cpu); any other version is CUDA.
EVIDENTLY=("evidently==0.7.23" "pandas==2.3.3")
ALIBI=("alibi-detect==0.13.0" "numpy==1.26.4" "pillow==10.4.0" "numba==0.59.1"
    "scikit-image==0.24.0")
ALIBI_TORCH=("torch==2.13.0")

mkdir -p "$ENVS"
# Should anything ask for torch, keep it at the CPU build: any other version downloads a
# multi-GB CUDA build.
CONSTRAINTS="$ENVS/drift-constraints.txt"
printf '%s\n' "torch==2.13.0" > "$CONSTRAINTS"

# shellcheck source=../envs.sh
source "$HERE/../envs.sh"  # new_env, pip_in

if new_env evidently; then
    echo "setup: building env evidently"
    pip_in evidently "${EVIDENTLY[@]}"
    "$ENVS/evidently/bin/python" -c 'import evidently, pandas, numpy; print("setup: evidently ok,", evidently.__version__, "pandas", pandas.__version__, "numpy", numpy.__version__)'
    touch "$ENVS/evidently/.ready"
else
    echo "setup: env evidently ready"
fi

if new_env alibi-detect; then
    echo "setup: building env alibi-detect"
    pip_in alibi-detect "${ALIBI[@]}"
    "$ENVS/alibi-detect/bin/python" -c 'import alibi_detect, numpy; from alibi_detect.cd import KSDrift, ChiSquareDrift, TabularDrift; print("setup: alibi-detect ok,", alibi_detect.__version__, "numpy", numpy.__version__)'
    touch "$ENVS/alibi-detect/.ready"
else
    echo "setup: env alibi-detect ready"
fi

if [[ ! -f "$ENVS/alibi-detect/.torch" ]]; then
    echo "setup: adding torch (CPU) to env alibi-detect, for MMDDrift"
    pip_in alibi-detect "${ALIBI_TORCH[@]}"
    "$ENVS/alibi-detect/bin/python" -c 'import torch, numpy; from alibi_detect.cd import MMDDrift; print("setup: alibi-detect MMDDrift ok, torch", torch.__version__, "numpy", numpy.__version__)'
    touch "$ENVS/alibi-detect/.torch"
else
    echo "setup: env alibi-detect has torch"
fi
