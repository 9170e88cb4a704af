"""Training: `fit` a torch model on Conveyor loaders, with checkpoints, tracking and cost.

    from conveyor.training import fit
    result = fit(model, loader, optimizer=opt, eval=val_loader, workspace=ws, run=run,
                 max_steps=500, checkpoint_every=100)

Checkpoint layout: CHECKPOINT.md beside this file. Importing this package imports torch.
"""

from __future__ import annotations

from conveyor.training.checkpoint import CheckpointInfo, CheckpointStore
from conveyor.training.config import EarlyStopping, TrainConfig, TrainResult
from conveyor.training.device import pick_device, seed_everything
from conveyor.training.distributed import init_distributed
from conveyor.training.preempt import EXIT_PREEMPTED
from conveyor.training.reporting import RunLike
from conveyor.training.trainer import Trainer, fit

__all__ = [
    "EXIT_PREEMPTED",
    "CheckpointInfo",
    "CheckpointStore",
    "EarlyStopping",
    "RunLike",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "fit",
    "init_distributed",
    "pick_device",
    "seed_everything",
]
