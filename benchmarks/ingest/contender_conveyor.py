"""Contender: Conveyor's own ingest (run with the project's .venv/bin/python).

    python contender_conveyor.py --kind images|csv --source PATH --out DIR

Creates a workspace in DIR/workspace (local SQLite metadata, local object folder), then
times exactly `ws.datasets.ingest(source, name="bench")`: the image folder (class
subfolders) or the CSV file as it is. Output bytes are the whole workspace folder
(metadata database and objects) afterwards.

When the API is not there yet, prints a result with "unavailable" set to the reason
instead of failing, so the driver can report "conveyor: not available: <reason>".
"""

from __future__ import annotations

import importlib
from typing import Any

from _common import Timer, contender_args, emit, tree_bytes, tree_files

NAME = "bench"
WARM_MODULE = "conveyor.data.ingest"


def unavailable(kind: str, reason: str) -> None:
    emit({"contender": "conveyor", "kind": kind, "unavailable": reason})


def main() -> None:
    args = contender_args(__doc__.splitlines()[0])
    try:
        import conveyor
        from conveyor import Workspace
    except ImportError as exc:
        unavailable(args.kind, f"cannot import conveyor.Workspace ({exc})")
        return
    root = args.out / "workspace"
    with Timer() as init_timer:
        ws = Workspace.init(root)
    try:
        datasets = ws.datasets
    except (AttributeError, ImportError) as exc:
        unavailable(args.kind, f"ws.datasets: {type(exc).__name__}: {exc}")
        return
    ingest = getattr(datasets, "ingest", None)
    if not callable(ingest):
        unavailable(args.kind, "ws.datasets has no ingest()")
        return
    # Load the ingest code before the clock starts, as the rivals' imports are: the
    # import time of its dependencies (pyarrow...) is not ingest time. A missing module
    # here only means the code lives elsewhere; ingest() imports it then.
    try:
        importlib.import_module(WARM_MODULE)
    except ModuleNotFoundError as exc:
        if not (exc.name and WARM_MODULE.startswith(exc.name)):
            unavailable(args.kind, f"a dependency is missing: {exc}")
            return
    try:
        with Timer() as timer:
            result: Any = ingest(args.source, name=NAME)
    except (ImportError, NotImplementedError) as exc:
        unavailable(args.kind, f"ws.datasets.ingest: {type(exc).__name__}: {exc}")
        return
    emit(
        {
            "contender": "conveyor",
            "kind": args.kind,
            "seconds": timer.seconds,
            "init_seconds": init_timer.seconds,
            "items": getattr(result, "rows", None),
            "output_bytes": tree_bytes(root),
            "output_files": tree_files(root),
            "version": conveyor.__version__,
            "result": {
                k: v
                for k in ("created", "new_rows", "written_bytes", "duplicates", "reused_shards")
                if isinstance(v := getattr(result, k, None), bool | int | float | str)
            },
            "rejects": len(getattr(result, "rejects", []) or []),
        }
    )


if __name__ == "__main__":
    main()
