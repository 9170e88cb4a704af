"""How runs end when the process does: atexit, uncaught exceptions and SIGTERM.

While any run is live, SIGTERM (what schedulers and `kill` send) raises SystemExit in
the main thread instead of killing the process outright, so `with` blocks and atexit
handlers run and each run is flushed and marked "killed". The handler is installed
only over the default one and removed when the last run ends. An uncaught exception
marks the remaining runs "failed" at exit; a normal exit marks them "finished".
"""

from __future__ import annotations

import atexit
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.tracking.run import Run

_live: dict[str, Run] = {}
_lock = threading.Lock()
_state: dict[str, Any] = {"atexit": False, "sigterm": None, "killed": False}


def register(run: Run) -> None:
    with _lock:
        _live[f"{run.id}:{run.session}"] = run
        if not _state["atexit"]:
            atexit.register(_end_all_at_exit)
            _state["atexit"] = True
        if (
            _state["sigterm"] is None
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        ):
            signal.signal(signal.SIGTERM, _on_sigterm)
            _state["sigterm"] = signal.SIG_DFL


def unregister(run: Run) -> None:
    with _lock:
        _live.pop(f"{run.id}:{run.session}", None)
        if (
            not _live
            and _state["sigterm"] is not None
            and threading.current_thread() is threading.main_thread()
        ):
            if signal.getsignal(signal.SIGTERM) is _on_sigterm:
                signal.signal(signal.SIGTERM, _state["sigterm"])
            _state["sigterm"] = None


def status_for(exc: BaseException | None, chosen: str | None) -> str:
    """The status a run ends with, given what ended it and any status set before."""
    if chosen is not None and chosen != "running":
        return chosen
    if _state["killed"] or isinstance(exc, KeyboardInterrupt):
        return "killed"
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
        return "finished"
    return "failed"


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    _state["killed"] = True
    raise SystemExit(128 + signum)


def _end_all_at_exit() -> None:
    uncaught = getattr(sys, "last_value", None)  # set when an exception ended the program
    for run in list(_live.values()):
        run.end(status_for(uncaught, run.chosen_status))
