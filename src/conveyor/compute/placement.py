"""Where a job fits: the ledger of what an executor's running jobs hold, GPU indices,
and which lower-priority jobs to preempt for one that does not fit.

Pure bookkeeping, no processes and no database, so every rule is unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.compute.machine import Capacity
from conveyor.compute.spec import JobSpec

_EPSILON = 1e-9


@dataclass(frozen=True)
class Need:
    """What a job holds while it runs: every worker's share, added up."""

    cpus: float
    gpus: int
    memory_mb: int

    @classmethod
    def of(cls, spec: JobSpec) -> Need:
        return cls(
            cpus=spec.cpus * spec.workers,
            gpus=spec.gpus * spec.workers,
            memory_mb=(spec.memory_mb or 0) * spec.workers,
        )

    def describe(self) -> str:
        memory = f", {self.memory_mb:,} MB" if self.memory_mb else ""
        return f"{self.cpus:g} cpus, {self.gpus} GPUs{memory}"


@dataclass(frozen=True)
class Holder:
    """A running job as placement sees it."""

    job_id: str
    priority: int
    need: Need
    gpu_indices: tuple[int, ...]
    started: float  # monotonic; the newest loses the least work when preempted


class Ledger:
    """What is taken out of an executor's capacity, by job."""

    def __init__(self, capacity: Capacity) -> None:
        self.capacity = capacity
        self.holders: dict[str, Holder] = {}

    def never_fits(self, need: Need) -> str | None:
        """Why `need` exceeds the whole executor (so waiting would be forever), or None."""
        c = self.capacity
        if need.cpus > c.cpus + _EPSILON:
            return f"it needs {need.cpus:g} cpus and the executor has {c.cpus:g}"
        if need.gpus > c.gpu_count:
            return f"it needs {need.gpus} GPUs and the executor has {c.gpu_count}"
        if need.memory_mb > c.memory_mb:
            return f"it needs {need.memory_mb:,} MB and the executor has {c.memory_mb:,} MB"
        return None

    def free(self, without: tuple[str, ...] = ()) -> tuple[float, set[int], int]:
        """(cpus, GPU indices, MB) free, as if the jobs in `without` had ended."""
        holding = [h for h in self.holders.values() if h.job_id not in without]
        cpus = self.capacity.cpus - sum(h.need.cpus for h in holding)
        gpus = set(self.capacity.gpus) - {i for h in holding for i in h.gpu_indices}
        memory = self.capacity.memory_mb - sum(h.need.memory_mb for h in holding)
        return cpus, gpus, memory

    def fits(self, need: Need, without: tuple[str, ...] = ()) -> bool:
        cpus, gpus, memory = self.free(without)
        return need.cpus <= cpus + _EPSILON and need.gpus <= len(gpus) and need.memory_mb <= memory

    def take(self, job_id: str, priority: int, need: Need, started: float) -> tuple[int, ...]:
        """Hold `need` for a job; returns the GPU indices it gets (lowest free first)."""
        _, gpus, _ = self.free()
        indices = tuple(sorted(gpus)[: need.gpus])
        self.holders[job_id] = Holder(job_id, priority, need, indices, started)
        return indices

    def release(self, job_id: str) -> None:
        self.holders.pop(job_id, None)

    def victims(self, need: Need, priority: int, stopping: set[str]) -> list[str] | None:
        """Lower-priority jobs whose end makes room for `need`, or None if none would.

        Lowest priority goes first, and among equals the most recently started (it
        has the least work to lose); then any pick the room does not need is spared.
        Jobs already being stopped count as gone.
        """
        chosen = tuple(stopping)
        if self.fits(need, chosen):
            return []
        candidates = sorted(
            (
                h
                for h in self.holders.values()
                if h.priority < priority and h.job_id not in stopping
            ),
            key=lambda h: (h.priority, -h.started),
        )
        picked: list[str] = []
        for holder in candidates:
            picked.append(holder.job_id)
            if self.fits(need, chosen + tuple(picked)):
                break
        else:
            return None
        for job_id in list(picked):  # drop any the room does not need after all
            rest = tuple(p for p in picked if p != job_id)
            if self.fits(need, chosen + rest):
                picked.remove(job_id)
        return picked
