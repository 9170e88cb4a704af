"""A deterministic training process for the crash, preemption and DDP tests.

python train_worker.py WORKSPACE RUN_ID OUT [--workers N] [--steps S] [--batch B]
                       [--checkpoint-every K] [--sleep SECONDS] [--dropout P]
                       [--pause-at STEP [--resume-when FILE]]

Trains a tiny CNN (with dropout, so RNG state matters) on the `bands` dataset, prints
`step` at the start of every batch, writes the final weights to OUT (safetensors, rank 0
only) and exits with the trainer's exit code (75 when preempted). With RANK/WORLD_SIZE/
MASTER_ADDR/MASTER_PORT in the environment it is one rank of a gloo DDP job.

`--pause-at STEP` holds that step, after printing its line, until FILE exists (never,
without --resume-when): a test that kills or signals the process then knows which step
it is in, however fast this machine runs the others.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from conveyor import Workspace
from conveyor.core.logs import configure_logging
from conveyor.training import fit, init_distributed, seed_everything


def make_model(classes: int = 4, dropout: float = 0.2) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Dropout(dropout),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 8 * 8, classes),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workspace")
    parser.add_argument("run_id")
    parser.add_argument("out")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--pause-at", type=int, default=None)
    parser.add_argument("--resume-when", type=Path, default=None)
    args = parser.parse_args()

    configure_logging("info")  # logs to stderr: stdout carries the step lines
    seed_everything(0, deterministic=True)
    rank = init_distributed().rank  # before the loader, so it reads this rank's part

    calls = 0

    def step_fn(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if rank == 0:
            print("step", flush=True)
        if calls == args.pause_at:
            deadline = time.monotonic() + 300
            while args.resume_when is None or not args.resume_when.exists():
                if time.monotonic() > deadline:
                    sys.exit(f"still paused at step {calls} after 300 s")
                time.sleep(0.01)
        time.sleep(args.sleep)
        images = batch["image"].float() / 255
        return torch.nn.functional.cross_entropy(model(images), batch["label"])

    with Workspace.open(args.workspace) as ws:
        version = ws.datasets.get("bands")
        loader = version.loader(
            batch_size=args.batch,
            seed=1,
            columns=["image", "label"],
            image_layout="CHW",
            num_workers=args.workers,
        )
        model = make_model(len(version.classes), args.dropout)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.7)
        result = fit(
            model,
            loader,
            optimizer=optimizer,
            scheduler=scheduler,
            step_fn=step_fn,
            workspace=ws,
            run_id=args.run_id,
            epochs=None,
            max_steps=args.steps,
            checkpoint_every=args.checkpoint_every,
        )
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if rank == 0:
        if result.status == "finished":
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.out)
        print("status", result.status, result.step, flush=True)
    sys.exit(result.exit_code)


if __name__ == "__main__":
    main()
