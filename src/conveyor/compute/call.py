"""`python -m conveyor.compute.call package.module:function '{"x": 1}'`: a function job.

The function runs in its own process, like any other job, so it can be limited,
cancelled and preempted the same way. The working folder is on sys.path so a job's
own modules import. A function that returns an int uses it as its exit code (return
EXIT_PREEMPTED after saving state on SIGTERM); any exception prints its traceback
and exits 1.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any


def call(reference: str, kwargs: dict[str, Any]) -> int:
    module_name, _, function_name = reference.partition(":")
    here = str(Path.cwd())
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        sys.stderr.write(f"error: cannot import {module_name} ({e}); is it on PYTHONPATH?\n")
        return 2
    function = getattr(module, function_name, None)
    if not callable(function):
        sys.stderr.write(f"error: {module_name} has no function {function_name}\n")
        return 2
    result = function(**kwargs)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m conveyor.compute.call pkg.mod:func '{json kwargs}'\n")
        return 2
    return call(argv[0], json.loads(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
