"""Multi-process data-parallel training, torchrun style (RANK, WORLD_SIZE, MASTER_ADDR...).

With WORLD_SIZE > 1 in the environment the trainer joins the process group (NCCL on
GPUs, gloo on CPU), wraps the model in DistributedDataParallel and lets only rank 0
write checkpoints and logs. Conveyor loaders read the rank from torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from conveyor.core.errors import TrainingError


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    started_here: bool = False  # we made the process group, so we tear it down

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when any rank says True (e.g. one was told to stop)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over the ranks in place (eval statistics)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.started_here and dist.is_initialized():
            dist.destroy_process_group()


def join(prefer_cuda: bool) -> Distributed:
    """Join the job described by the environment, or run alone when there is none."""
    if dist.is_available() and dist.is_initialized():
        return Distributed(dist.get_rank(), dist.get_world_size(), _local_rank())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise TrainingError(
            f"WORLD_SIZE={world} but {', '.join(missing)} not set",
            "start the job with torchrun, which sets them, or set them yourself",
        )
    backend = "nccl" if prefer_cuda and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(_local_rank() % torch.cuda.device_count())
    dist.init_process_group(backend)
    return Distributed(dist.get_rank(), dist.get_world_size(), _local_rank(), started_here=True)


def init_distributed(device: str | None = None) -> Distributed:
    """Join the torchrun-style job now, before making loaders, so each reads its own part.

    Call it first in a multi-process script; it does nothing in a single process. The
    process group stays up after `fit` (end it with torch.distributed.destroy_process_group).
    """
    job = join(prefer_cuda=device in (None, "cuda"))
    return Distributed(job.rank, job.world, job.local_rank, started_here=False)


def check_loader(loader: object, job: Distributed) -> None:
    """A Conveyor loader made before the process group would read every rank's data."""
    spec = getattr(loader, "spec", None)
    world = getattr(spec, "world", None)
    if not job.enabled or spec is None or world is None:
        return
    if world != job.world:
        raise TrainingError(
            f"the train loader was made for {world} process(es), but this job has {job.world}",
            "call conveyor.training.init_distributed() before making loaders",
        )
    total, size = spec.plan(0).total, spec.batch_size
    batches = total // size if spec.drop_last else -(-total // size)
    if spec.even is None and batches % job.world:
        raise TrainingError(
            f"{batches} batches per epoch do not split evenly over {job.world} ranks, so one "
            "rank would wait for the others forever",
            "make the loader with even='drop' (or 'pad')",
        )


def wrap(model: torch.nn.Module, job: Distributed, device: torch.device) -> torch.nn.Module:
    """The model as the training step calls it: DDP-wrapped in a multi-process job."""
    if not job.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
