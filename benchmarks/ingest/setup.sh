#!/usr/bin/env bash
# Create the virtual environments the ingest benchmark runs its rivals in.
#
#   bash benchmarks/ingest/setup.sh
#
# Idempotent: an environment whose `.ready` marker exists is left alone (delete the
# folder, or pass --force, to rebuild it). Environments live in benchmarks/.envs/
# (git-ignored):
#   gen       numpy + Pillow, to generate the input data
#   mds       torch==2.13.0 + mosaicml-streaming (torchvision removed, see below)
#   litdata   torch==2.13.0 + litdata
# Conveyor itself runs in the project's own venv (.venv).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENVS="$(cd "$HERE/.." && pwd)/.envs"
PYTHON="${PYTHON:-python3}"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

TORCH="torch==2.13.0"
STREAMING="mosaicml-streaming==0.13.0"
LITDATA="litdata==0.2.76"
NUMPY_GEN="numpy==2.1.3"
PILLOW="pillow==13.0.0"

mkdir -p "$ENVS"
# Keep torch pinned while installing a rival: without this a rival pulls a newer,
# multi-GB CUDA build of torch.
CONSTRAINTS="$ENVS/constraints.txt"
printf '%s\n' "$TORCH" > "$CONSTRAINTS"

# shellcheck source=../envs.sh
source "$HERE/../envs.sh"  # new_env, pip_in

if new_env gen; then
    echo "setup: building env gen"
    pip_in gen "$NUMPY_GEN" "$PILLOW"
    touch "$ENVS/gen/.ready"
else
    echo "setup: env gen ready"
fi

if new_env mds; then
    echo "setup: building env mds"
    pip_in mds "$TORCH"
    # streaming pins numpy<2.2 itself; said again here so a resolver change can't slip.
    pip_in mds "$STREAMING" "numpy<2.2"
    # PyPI's torchvision does not load beside the CPU torch ("operator torchvision::nms
    # does not exist") and `import streaming` imports streaming.vision, which imports
    # torchvision. The benchmark never uses streaming.vision: remove torchvision and
    # make streaming.vision an empty package.
    "$ENVS/mds/bin/python" -m pip uninstall --quiet --yes torchvision
    SITE="$("$ENVS/mds/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    VISION="$SITE/streaming/vision"
    if [[ -d "$VISION" ]]; then
        rm -rf "$VISION"
        mkdir -p "$VISION"
        echo '"""Emptied by benchmarks/ingest/setup.sh: torchvision is not installed."""' \
            > "$VISION/__init__.py"
    elif [[ -f "$VISION.py" ]]; then
        echo '"""Emptied by benchmarks/ingest/setup.sh: torchvision is not installed."""' \
            > "$VISION.py"
    fi
    "$ENVS/mds/bin/python" -c 'import streaming, torch; print("setup: mds ok, streaming", streaming.__version__, "torch", torch.__version__)'
    touch "$ENVS/mds/.ready"
else
    echo "setup: env mds ready"
fi

if new_env litdata; then
    echo "setup: building env litdata"
    pip_in litdata "$TORCH"
    pip_in litdata "$LITDATA"
    "$ENVS/litdata/bin/python" -c 'import litdata, torch; print("setup: litdata ok, litdata", litdata.__version__, "torch", torch.__version__)'
    touch "$ENVS/litdata/.ready"
else
    echo "setup: env litdata ready"
fi
