"""The user's hooks, and the one wrapper that turns their failures into clear errors.

Hooks a user may give (all optional, each small):

- `batch_fn(batch) -> (inputs, target)`: turns a loader batch into what the model takes.
  Default: `(batch[0], batch[1])` for tuples; for dicts `batch["image"]` (uint8 images
  become float in [0, 1]) and `batch["label"]`.
- `loss_fn(outputs, target) -> loss`: default cross-entropy.
- `step_fn(model, batch) -> loss`: replaces both, for models that need more than a call.
- `eval_fn(model, loader, device) -> {"metric": value}`: replaces the default evaluation
  (mean loss, accuracy, macro F1 and per-class figures for classifiers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch

from conveyor.core.errors import CallbackError, ConveyorError

T = TypeVar("T")


def default_batch_fn(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, list | tuple) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, dict) and "image" in batch and "label" in batch:
        image = batch["image"]
        if isinstance(image, torch.Tensor) and image.dtype == torch.uint8:
            image = image.float().div_(255)
        return image, batch["label"]
    keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
    raise CallbackError(
        f"the default batch_fn cannot find inputs and target in a batch of {keys}",
        "pass batch_fn=lambda b: (inputs, target) (or a step_fn)",
    )


def default_loss_fn(outputs: Any, target: Any) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(outputs, target)


def call(name: str, fn: Callable[..., T], *args: Any, step: int | None = None) -> T:
    """Call a user hook; an exception becomes a CallbackError naming the hook and step."""
    try:
        return fn(*args)
    except ConveyorError:
        raise
    except Exception as e:  # any user failure is reported the same way
        where = f" at step {step}" if step is not None else ""
        raise CallbackError(
            f"{name} raised {type(e).__name__}{where}: {e}",
            f"fix {name} (the traceback above this error shows the line)",
        ) from e


def check_loss(loss: Any, step: int) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise CallbackError(
            f"the loss at step {step} is {shape}, not a single-number tensor",
            "return a scalar tensor from loss_fn/step_fn (e.g. take .mean())",
        )
    return loss
