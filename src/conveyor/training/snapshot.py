"""A training state copied to CPU memory: what a checkpoint holds, before any I/O.

Taking a snapshot is the only part of a checkpoint the training step waits for. Tensors
go to two flat name -> tensor maps (written as safetensors); everything else is a
JSON-able dict. Restoring puts every piece back so training continues bit for bit.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from conveyor.core.errors import CheckpointError


@dataclass
class Snapshot:
    """Model tensors, other tensors (optimizer state, RNG) and a JSON-able state."""

    model: dict[str, torch.Tensor]
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.state.get("step", 0))


def cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy that shares no memory with the live tensor."""
    out = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu")
    return out.copy_(tensor.detach())


def capture_model(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"the model's state_dict entry {name!r} is a {type(value).__name__}, not a tensor",
                "keep only tensors in the state_dict (safetensors stores tensors only)",
            )
        out[name] = cpu_copy(value)
    return out


def capture_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON part, tensors): per-parameter tensors go to `optimizer/<id>/<key>`."""
    full = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, values in full["state"].items():
        plain[str(pid)] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{pid}/{key}"] = cpu_copy(value)
            else:
                plain[str(pid)][key] = value
    return {"state": plain, "param_groups": full["param_groups"]}, tensors


def restore_optimizer(
    optimizer: torch.optim.Optimizer, plain: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    state: dict[int, dict[str, Any]] = {int(pid): dict(v) for pid, v in plain["state"].items()}
    for name, value in tensors.items():
        if name.startswith("optimizer/"):
            _, pid, key = name.split("/", 2)
            state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": plain["param_groups"]})


def capture_rng() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Python and numpy generators as JSON; torch's (CPU and every GPU) as byte tensors."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    plain = {
        "python": [version, list(internal), gauss],
        "numpy": [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
    }
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = st
    return plain, tensors


def restore_rng(plain: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng/torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng/cuda/")), key=lambda k: int(k[9:]))
    if cuda and torch.cuda.is_available():
        states = [tensors[k] for k in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)


def check_json(name: str, value: Any) -> Any:
    """Fail early (in the step, not the writer thread) when state cannot be stored as JSON."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"the {name} state cannot be stored as JSON ({e})",
            "keep it to numbers, strings, lists and dicts (nothing is pickled)",
        ) from e
    return value
