#!/usr/bin/env bash
# Rival environments for the loader benchmark: reuses ingest's (gen, mds, litdata) and
# adds `wds` (WebDataset). Idempotent; each env keeps torch==2.13.0 (CPU build).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENVS="$(cd "$HERE/.." && pwd)/.envs"
bash "$HERE/../ingest/setup.sh"
if [[ ! -f "$ENVS/wds/.ready" ]]; then
    echo "setup: building env wds"
    rm -rf "$ENVS/wds"
    python3 -m venv "$ENVS/wds"
    "$ENVS/wds/bin/python" -m pip install --quiet -c "$ENVS/constraints.txt" torch==2.13.0 \
        2> >(grep -v 'is ignored' >&2)
    "$ENVS/wds/bin/python" -m pip install --quiet -c "$ENVS/constraints.txt" \
        webdataset==1.0.2 pillow numpy 2> >(grep -v 'is ignored' >&2)
    touch "$ENVS/wds/.ready"
fi
