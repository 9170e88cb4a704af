"""One job attempt as an operating-system process: output, limits, signals, outcome.

Both executors run jobs through this class (the Ray executor inside a Ray actor), so
limits and stopping behave the same everywhere:

- the process leads its own process group, so signals reach everything it started;
- it dies with the process that started it (Linux parent-death signal), so a killed
  worker leaves no job running unseen while another worker retries it;
- output (stdout and stderr, interleaved) goes to a spool file read in increments;
- over its time limit it gets SIGTERM, then SIGKILL after the grace period; over its
  memory limit (resident memory of the whole process tree) it gets SIGKILL at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import psutil  # type: ignore[import-untyped]

from conveyor.compute.entry import EXIT_PREEMPTED, Launch

Ending = Literal["succeeded", "failed", "timed_out", "killed", "preempted", "stopped", "lost"]
_MEMORY_EVERY_S = 0.2
_READ_MAX = 1 << 20


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, in the words `jobs show` prints."""

    ending: Ending
    exit_code: int | None
    reason: str


class JobProcess:
    """Starts the attempt at once; call `poll()` regularly until it returns an Outcome."""

    def __init__(
        self, launch: Launch, extra_env: dict[str, str] | None = None, grace_s: float = 10.0
    ) -> None:
        self.launch = launch
        self.grace_s = grace_s
        spec = launch.spec
        self.time_limit_s = spec.time_limit_s
        self.memory_limit = spec.memory_mb * 2**20 if spec.memory_mb else None
        self._lock = threading.Lock()
        fd, spool = tempfile.mkstemp(prefix="conveyor-job-", suffix=".log")
        self._spool: IO[bytes] = os.fdopen(fd, "wb")
        self._reader: IO[bytes] = Path(spool).open("rb")  # noqa: SIM115
        Path(spool).unlink()  # both stay open: nothing is left behind, even after kill -9
        env = {**os.environ, **launch.env, **(extra_env or {})}
        if launch.gpu_indices or "CUDA_VISIBLE_DEVICES" not in env:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in launch.gpu_indices)
        argv = launch.argv()
        if spec.command is not None and (bash := shutil.which("bash")):
            argv[0] = bash  # bash runs a lone command in place: signals and exit codes are its own
        import subprocess

        self._popen = subprocess.Popen(
            _dying_with_parent(argv),
            cwd=spec.workdir or None,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._spool,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self._popen.pid
        self.pid_started = _create_time(self.pid)
        self._started = time.monotonic()
        self._limit: Outcome | None = None
        self._stop_reason: str | None = None
        self._kill_at: float | None = None
        self._next_memory_check = 0.0
        self._outcome: Outcome | None = None

    # -- output ------------------------------------------------------------------------------

    def read(self) -> bytes:
        """Output written since the last call (at most 1 MB at a time)."""
        return self._reader.read(_READ_MAX) or b""

    # -- stopping ------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped", grace_s: float | None = None) -> None:
        """SIGTERM now, SIGKILL after the grace period if it has not exited by then."""
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason
            self._terminate(self.grace_s if grace_s is None else grace_s)

    def kill(self) -> None:
        with self._lock:
            self._signal_group(signal.SIGKILL)

    def _terminate(self, grace_s: float) -> None:
        if self._kill_at is None:
            self._kill_at = time.monotonic() + grace_s
            self._signal_group(signal.SIGTERM)

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    # -- watching ------------------------------------------------------------------------------

    def poll(self) -> Outcome | None:
        """The outcome once the process (and its group) is gone; enforces the limits."""
        with self._lock:
            if self._outcome is not None:
                return self._outcome
            code = self._popen.poll()
            now = time.monotonic()
            if code is None:
                self._enforce_limits(now)
            elif self._kill_at is not None and now < self._kill_at and _group_alive(self.pid):
                return None  # children are still saving their state on SIGTERM
            else:
                self._signal_group(signal.SIGKILL)  # nothing it started outlives it
                self._outcome = self._classify(code)
                self._close()
                return self._outcome
            if self._kill_at is not None and now >= self._kill_at:
                self._signal_group(signal.SIGKILL)
            return None

    def wait(self, every_s: float = 0.1) -> Outcome:
        while (outcome := self.poll()) is None:
            time.sleep(every_s)
        return outcome

    def _enforce_limits(self, now: float) -> None:
        limit = self.time_limit_s
        if limit is not None and now - self._started > limit and self._limit is None:
            self._limit = Outcome("timed_out", None, f"timed out after {limit:g} s")
            self._terminate(self.grace_s)
        if self.memory_limit is not None and now >= self._next_memory_check:
            self._next_memory_check = now + _MEMORY_EVERY_S
            used = _tree_rss(self.pid)
            if used > self.memory_limit and self._limit is None:
                mb = self.memory_limit // 2**20
                self._limit = Outcome(
                    "killed", None, f"killed: over its {mb} MB memory limit ({used >> 20} MB used)"
                )
                self._kill_at = now
                self._signal_group(signal.SIGKILL)

    def _classify(self, code: int) -> Outcome:
        if self._limit is not None:
            return Outcome(self._limit.ending, code, self._limit.reason)
        if self._stop_reason is not None:
            return Outcome("stopped", code, self._stop_reason)
        if code == 0:
            return Outcome("succeeded", 0, "exit code 0")
        if code == EXIT_PREEMPTED:
            return Outcome("preempted", code, f"exit code {code}: saved its state, run again")
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
            return Outcome("failed", code, f"killed by signal {name}")
        return Outcome("failed", code, f"exit code {code}")

    def _close(self) -> None:
        """Keep reading what is left; the spool file goes when the reader closes."""
        self._spool.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._reader.close()
        with contextlib.suppress(OSError):
            self._spool.close()


def _tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _create_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def process_alive(pid: int | None, started: float | None) -> bool:
    """True if `pid` is still the very process that started at `started` (no pid reuse)."""
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < 1.0
    except psutil.Error:
        return False


def kill_process_group(pid: int) -> None:
    """SIGKILL a job left behind by a dead worker on this host (it leads its group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _dying_with_parent(argv: list[str]) -> list[str]:
    """The command, started so that it gets SIGKILL when the worker that started it dies.

    util-linux `setpriv --pdeathsig` sets the signal and execs the command. (A Python
    `preexec_fn` would do the same from the forked child, but running Python between fork
    and exec crashes when the worker has other threads, such as Ray's gRPC client.)
    Without setpriv the lease recovery still requeues the job; the process may outlive a
    worker killed with -9 until it ends on its own.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or not sys.platform.startswith("linux"):
        return argv
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]
