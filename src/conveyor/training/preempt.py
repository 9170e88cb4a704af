"""Spot preemption: SIGTERM asks the trainer to finish its step, checkpoint and stop.

Cloud providers send SIGTERM (after a notice) before they take a spot machine back.
The handler only sets a flag; the loop checks it after every optimizer step, writes a
checkpoint synchronously and returns status "preempted". The CLI then exits with
EXIT_PREEMPTED (75, EX_TEMPFAIL: "try again later"), so a scheduler knows to resubmit.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from conveyor.core.logs import get_logger

EXIT_PREEMPTED = 75
log = get_logger(__name__)


class PreemptionGuard:
    """Within `with`, SIGTERM sets `requested` instead of killing the process."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: object = None
        self._installed = False

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is threading.main_thread():  # signals: main thread only
            self._previous = signal.signal(signal.SIGTERM, self._on_term)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)  # type: ignore[arg-type]
            self._installed = False

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        if not self.requested:
            log.warning("train.preemption_notice", signal="SIGTERM")
        self.requested = True
