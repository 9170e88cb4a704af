"""What a job is: an entry point, the resources it needs, and how to treat its failures.

A spec is checked when it is made, so a bad one is refused at `submit` with a message
that says what to fix, never half-way through a run on some worker.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from conveyor.core.errors import JobSpecError

Kind = Literal["command", "function", "recipe"]
_FUNCTION = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_MB = {"b": 1 / 2**20, "k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0**2}


@dataclass(frozen=True)
class JobSpec:
    """One job. Exactly one entry point: `command`, `function` or `recipe`.

    - command: a shell command line, run with /bin/sh in `workdir`.
    - function: "package.module:function", called with `kwargs` (JSON values) in a
      fresh Python process; `workdir` is put on sys.path.
    - recipe: a `conveyor train RECIPE ARGS...` run.

    `cpus`, `gpus` and `memory_mb` are reserved for each of the `workers` processes;
    `memory_mb` is also a limit (the job is killed above it). `retries` counts
    failures (non-zero exits, lost workers) retried after `backoff_s`, doubling.
    """

    command: str | None = None
    function: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    args: list[str] = field(default_factory=list)
    name: str | None = None
    cpus: float = 1.0
    gpus: int = 0
    memory_mb: int | None = None
    workers: int = 1
    priority: int = 0
    retries: int = 0
    backoff_s: float = 5.0
    time_limit_s: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None

    def __post_init__(self) -> None:
        entries = [e for e in (self.command, self.function, self.recipe) if e is not None]
        if len(entries) != 1:
            raise JobSpecError(
                "a job needs exactly one entry point",
                "give a command (after --, or --cmd), a function (--fn pkg.mod:func) or a recipe "
                "(--recipe)",
            )
        if self.command is not None and not self.command.strip():
            raise JobSpecError("the job's command is empty", "give a shell command to run")
        if self.function is not None and not _FUNCTION.match(self.function):
            raise JobSpecError(
                f"{self.function!r} is not a function reference",
                "write it as package.module:function",
            )
        if self.recipe is not None and not re.fullmatch(r"[A-Za-z0-9][\w.-]*", self.recipe):
            raise JobSpecError(f"{self.recipe!r} is not a recipe name", "see `conveyor train -h`")
        try:
            json.dumps(self.kwargs)
        except (TypeError, ValueError) as e:
            raise JobSpecError(
                f"the function's kwargs are not JSON ({e})", "pass JSON values"
            ) from e
        self._check_numbers()

    def _check_numbers(self) -> None:
        checks = [
            (self.cpus > 0, f"cpus={self.cpus}", "ask for more than 0 cpus (0.5 is fine)"),
            (self.gpus >= 0, f"gpus={self.gpus}", "ask for 0 or more GPUs"),
            (self.workers >= 1, f"workers={self.workers}", "ask for at least 1 worker"),
            (self.retries >= 0, f"retries={self.retries}", "give 0 or more retries"),
            (self.backoff_s >= 0, f"backoff={self.backoff_s}", "give a backoff of 0 s or more"),
            (
                self.memory_mb is None or self.memory_mb > 0,
                f"memory={self.memory_mb} MB",
                "give a memory limit above 0, e.g. 512MB or 2GB",
            ),
            (
                self.time_limit_s is None or self.time_limit_s > 0,
                f"time limit={self.time_limit_s} s",
                "give a time limit above 0, e.g. 30s or 10m",
            ),
        ]
        for ok, what, hint in checks:
            if not ok:
                raise JobSpecError(f"{what} is not a valid job resource", hint)

    @property
    def kind(self) -> Kind:
        if self.command is not None:
            return "command"
        return "function" if self.function is not None else "recipe"

    @property
    def display_name(self) -> str:
        """What `jobs ls` shows: the given name, else the entry point, shortened."""
        if self.name:
            return self.name
        text = self.command or self.function or f"train {self.recipe}"
        return text if len(text) <= 60 else text[:57] + "..."

    @property
    def devices(self) -> tuple[str, float]:
        """What the job's cost is counted in: ("gpu", n) or ("cpu", cores), all workers."""
        if self.gpus:
            return "gpu", float(self.gpus * self.workers)
        return "cpu", self.cpus * self.workers

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def parse_duration(text: str | float | None) -> float | None:
    """Seconds from "30s", "10m", "1.5h", "2d" or a bare number of seconds."""
    if text is None or isinstance(text, int | float):
        return None if text is None else float(text)
    match = _DURATION.match(text)
    if not match:
        raise JobSpecError(f"{text!r} is not a duration", "write it like 30s, 10m, 2h or 1d")
    return float(match.group(1)) * _SECONDS[match.group(2) or "s"]


def parse_memory_mb(text: str | int | None) -> int | None:
    """Megabytes from "512MB", "2G", "1.5GiB" or a bare number of megabytes."""
    if text is None or isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if not match:
        raise JobSpecError(f"{text!r} is not a memory size", "write it like 512MB or 2GB")
    unit = (match.group(2) or "m")[0].lower()
    return max(1, round(float(match.group(1)) * _MB[unit]))
