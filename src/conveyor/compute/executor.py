"""The seam between the scheduler and where jobs run: one `Executor` protocol.

The scheduler decides *what* runs (priority, fit, preemption, retries, records); an
executor only starts attempts and reports on them. Executors are registered by name
and picked by the `--executor` string:

    local            worker processes on this machine (local.py)
    ray://HOST:PORT  a Ray cluster through Ray Client (raycluster.py)
    auto             the Ray cluster in RAY_ADDRESS or running on this machine
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from conveyor.compute.entry import Launch
from conveyor.compute.machine import Capacity
from conveyor.compute.process import Outcome
from conveyor.core.errors import ExecutorError


class Attempt(Protocol):
    """One running attempt, as the scheduler sees it."""

    pid: int | None
    pid_started: float | None
    host: str

    def step(self) -> tuple[bytes, Outcome | None]:
        """Output since the last call and, once the attempt has ended, its outcome
        (returned only after the last of its output)."""

    def stop(self, reason: str, grace_s: float) -> None:
        """SIGTERM (the trainer checkpoints and exits), SIGKILL after `grace_s`."""

    def kill(self) -> None:
        """SIGKILL now."""


class Executor(Protocol):
    """Somewhere jobs run: reports its capacity, starts and forgets attempts."""

    name: str

    def capacity(self) -> Capacity:
        """The resources the scheduler may hand out (totals, not what is free)."""

    def device_name(self, gpu_indices: tuple[int, ...]) -> str:
        """The model of the GPUs handed out ("cpu" for none), for the price table."""

    def launch(self, launch: Launch) -> Attempt:
        """Start an attempt now (the scheduler has already checked that it fits)."""

    def reap(
        self, job_id: str, attempt: int, host: str, pid: int | None, pid_started: float | None
    ) -> None:
        """Make sure a lost attempt of a job is no longer running anywhere."""

    def close(self) -> None: ...


_REGISTRY: dict[str, Callable[[str], Executor]] = {}


def register(scheme: str, factory: Callable[[str], Executor]) -> None:
    """Make `--executor SCHEME...` build an executor with `factory(address)`."""
    _REGISTRY[scheme] = factory


def open_executor(address: str | Executor = "local") -> Executor:
    """The executor named by `address`: "local", "ray://HOST:PORT" or "auto"."""
    if not isinstance(address, str):
        return address
    _register_builtins()
    scheme = address.split("://", 1)[0] if "://" in address else address
    factory = _REGISTRY.get(scheme)
    if factory is None:
        raise ExecutorError(
            f"unknown executor {address!r}",
            f"use one of: local, ray://HOST:PORT, auto ({', '.join(sorted(_REGISTRY))})",
        )
    return factory(address)


def _register_builtins() -> None:
    if _REGISTRY:
        return

    def local(address: str) -> Executor:
        from conveyor.compute.local import LocalExecutor

        return LocalExecutor()

    def ray(address: str) -> Executor:
        from conveyor.compute.raycluster import RayExecutor

        return RayExecutor(address)

    register("local", local)
    register("ray", ray)
    register("auto", ray)
