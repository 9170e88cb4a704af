"""A live run: what a training process logs to. Every call returns at once.

Each call becomes an event for the run's background writer. Events that add rows carry
a `seq` unique within the run (the session number, bumped by every resume, in the high
bits), so the same event delivered twice is stored once. A run ends exactly once: by
`end()`, by leaving its `with` block (finished, failed on an exception, killed on
Ctrl-C or SIGTERM), or at interpreter exit (finished, or failed after an uncaught
exception). A SIGKILL leaves it "running" with every point flushed before the kill.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import InvalidRunInputError
from conveyor.tracking import lifecycle

if TYPE_CHECKING:
    from conveyor.storage.objects import ObjectStore
    from conveyor.tracking.system import SystemSampler
    from conveyor.tracking.writer import RunWriter

STATUSES = ("running", "finished", "failed", "preempted", "killed")
_SESSION_SHIFT = 40  # seq = session << 40 | n: a trillion events per session
_MAX_KEY = 250


class Run:
    """Logs params, metrics, tags, notes, usage and artifacts of one run."""

    def __init__(
        self,
        run_id: str,
        name: str,
        experiment: str,
        session: int,
        writer: RunWriter,
        objects: ObjectStore,
        next_steps: dict[str, int] | None = None,
        sampler: SystemSampler | None = None,
    ) -> None:
        self.id = run_id
        self.name = name
        self.experiment = experiment
        self.session = session
        self._writer = writer
        self._objects = objects
        self._counter = itertools.count()
        self._seq_base = session << _SESSION_SHIFT
        self._next_step: dict[str, int] = dict(next_steps or {})
        self._sampler = sampler
        self._samples = itertools.count()
        self._status: str | None = None
        self._ended = False
        lifecycle.register(self)

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r}, experiment={self.experiment!r})"

    # -- logging -----------------------------------------------------------------------------

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Record one value; `step` defaults to one after this key's last step."""
        if self._ended:
            raise self._ended_error()
        last = self._next_step.get(key)
        if last is None:
            _check_key(key)
        at = (last or 0) if step is None else int(step)
        self._next_step[key] = at + 1
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _not_a_number(key, value) from None
        self._writer.add(("m", key, at, self._seq_base + next(self._counter), number, time.time()))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record several values at the same step (and the same wall time)."""
        if self._ended:
            raise self._ended_error()
        now = time.time()
        given = None if step is None else int(step)
        next_step, counter, base = self._next_step, self._counter, self._seq_base
        events = []
        for key, value in metrics.items():
            last = next_step.get(key)
            if last is None:
                _check_key(key)
            at = (last or 0) if given is None else given
            next_step[key] = at + 1
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise _not_a_number(key, value) from None
            events.append(("m", key, at, base + next(counter), number, now))
        self._writer.add_many(events)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record parameters; a parameter logged again takes its newest value."""
        self._check_open()
        self._writer.add(("p", {_check_key(k): param_value(v) for k, v in params.items()}))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._check_open()
        self._writer.add(("t", {_check_key(k): str(v) for k, v in tags.items()}))

    def note(self, text: str) -> None:
        """Add a free-text note (what was tried, why it was stopped...)."""
        self._check_open()
        self._writer.add(("n", self._next_seq(), time.time(), str(text)))

    def record_usage(
        self, device: str, seconds: float, energy_kwh: float = 0.0, cost_usd: float = 0.0
    ) -> None:
        """Add compute used on one device type ("cpu", "gpu", "a100"...); usage accumulates."""
        self._check_open()
        numbers = (float(seconds), float(energy_kwh), float(cost_usd))
        if any(math.isnan(x) or x < 0 for x in numbers):
            raise InvalidRunInputError(
                f"usage must be non-negative numbers, got seconds={seconds}, "
                f"energy_kwh={energy_kwh}, cost_usd={cost_usd}",
                "pass the amount used since the last call",
            )
        self._writer.add(("u", self._next_seq(), time.time(), str(device), *numbers))

    def log_artifact(
        self,
        data: bytes | str | Path,
        name: str | None = None,
        media_type: str = "application/octet-stream",
    ) -> str:
        """Store a file or bytes in the object store under the run; returns the sha256.

        The bytes are uploaded now (the caller may change the file afterwards); only
        the index row goes through the background writer.
        """
        self._check_open()
        if isinstance(data, bytes | bytearray | memoryview):
            if not name:
                raise InvalidRunInputError(
                    "an artifact given as bytes needs a name", "pass name='model.safetensors'"
                )
            stored = self._objects.put_bytes(bytes(data))
        else:
            path = Path(data)
            if not path.is_file():
                raise InvalidRunInputError(
                    f"cannot log artifact {path}: it is not a file",
                    "pass a file path or bytes (archive a folder first)",
                )
            stored = self._objects.put_file(path)
            name = name or path.name
        self._writer.add(("a", name, stored.digest, stored.size, media_type, time.time()))
        return stored.digest

    # -- ending ------------------------------------------------------------------------------

    def set_status(self, status: str) -> None:
        """Record a status now; it is also the status `end()` keeps (e.g. "preempted")."""
        self._check_open()
        self._status = check_status(status)
        self._writer.add(("s", self._status, None if self._status == "running" else time.time()))

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything logged so far is stored; False if it went to the spool."""
        return self._writer.flush(timeout)

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def chosen_status(self) -> str | None:
        """The status given to `set_status`, if any."""
        return self._status

    def end(self, status: str | None = None, wait_s: float = 5.0) -> bool:
        """End the run (default: "finished", or the status set before).

        Waits at most `wait_s` seconds for the last events; what is not stored by then
        stays in the local spool and is delivered later. True if everything is stored.
        """
        if self._ended:
            return True
        final = check_status(status or self._status or "finished")
        self._ended = True
        lifecycle.unregister(self)
        self._writer.add(("s", final, time.time()))
        delivered = self._writer.close(wait_s)
        if self._sampler is not None:
            self._sampler.close()
        return delivered

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end(lifecycle.status_for(exc, self._status))

    # -- internals ---------------------------------------------------------------------------

    def sample_system(self) -> None:
        """Log one reading of system metrics (called by the writer thread)."""
        if self._sampler is not None and not self._ended:
            self.log_metrics(self._sampler.sample(), step=next(self._samples))

    def _next_seq(self) -> int:
        return self._seq_base + next(self._counter)

    def _check_open(self) -> None:
        if self._ended:
            raise self._ended_error()

    def _ended_error(self) -> InvalidRunInputError:
        return InvalidRunInputError(
            f"run {self.id} has ended",
            f"resume it with ws.runs.resume({self.id!r}) to log more",
        )


def param_value(value: Any) -> tuple[str, float | None]:
    """A parameter as stored: its text (strings as is, the rest as JSON) and its number."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value)
        except TypeError:
            text = str(value)
    number: float | None = None
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    if number is not None and math.isnan(number):
        number = None
    return text, number


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise InvalidRunInputError(
            f"unknown run status {status!r}", f"use one of: {', '.join(STATUSES)}"
        )
    return status


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY:
        raise InvalidRunInputError(
            f"invalid name {key!r} for a metric, param or tag",
            f"use a non-empty string of at most {_MAX_KEY} characters",
        )
    return key


def _not_a_number(key: str, value: Any) -> InvalidRunInputError:
    return InvalidRunInputError(
        f"metric {key!r} got {value!r}, which is not a number", "log ints or floats"
    )
