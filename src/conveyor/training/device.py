"""Where training runs and at what precision: CUDA, then MPS, then CPU; AMP on CUDA only."""

from __future__ import annotations

import os
import random
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from conveyor.core.errors import TrainingError

PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]


def pick_device(device: str | torch.device | None = None, local_rank: int = 0) -> torch.device:
    """The explicit device, else this rank's GPU, else Apple's MPS, else the CPU."""
    if device is not None:
        try:
            chosen = torch.device(device)
        except RuntimeError as e:
            raise TrainingError(f"unknown device {device!r}", "use cpu, cuda, cuda:1 or mps") from e
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise TrainingError(f"device {device!r} asked for; CUDA is not available", "use cpu")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None: full fp32) and whether a GradScaler guards fp16 gradients."""

    name: str
    dtype: torch.dtype | None
    scaler: bool

    def autocast(self, device: torch.device) -> AbstractContextManager[Any]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def pick_precision(device: torch.device, precision: PrecisionName = "auto") -> Precision:
    """auto: bf16 on CUDA GPUs that support it, fp16 + GradScaler on older ones, fp32 else."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise TrainingError(f"unknown precision {precision!r}", "use auto, fp32, bf16 or fp16")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return Precision("fp32", None, False)
    if device.type != "cuda":
        raise TrainingError(
            f"mixed precision {precision} is only used on CUDA, not on {device.type}",
            "use precision='fp32' (or 'auto') on this device",
        )
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "bf16":
        return Precision("bf16", torch.bfloat16, False)
    return Precision("fp16", torch.float16, True)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; `deterministic` also makes torch pick exact kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def to_device(value: Any, device: torch.device) -> Any:
    """Tensors (also inside dicts, lists and tuples) moved to the device; the rest as is."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=value.is_pinned())
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_device(v, device) for v in value)
    return value
