"""`conveyor train tabular`: an MLP over a version's numeric columns.

Features are standardised with the mean and standard deviation of the train split; the
statistics live in the model as buffers, so the checkpoint alone can predict. Missing
values become the train mean (0 after standardising).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from conveyor.core.errors import TrainingError
from conveyor.registry.preprocessing import Preprocessing
from conveyor.training.recipes.common import (
    RecipeOptions,
    RecipeReport,
    RecipeWorkspace,
    class_lookup,
    make_loaders,
    pick_splits,
    train_recipe,
)
from conveyor.training.recipes.registration import ModelSpec, register_recipe_model

if TYPE_CHECKING:
    from conveyor.data.dataset import DatasetVersion


class Standardize(nn.Module):
    """(x - mean) / std with train-split statistics; NaN (missing) becomes 0."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num((x - self.mean) / self.std, nan=0.0)


def tabular_mlp(mean: torch.Tensor, std: torch.Tensor, classes: int, hidden: int = 64) -> nn.Module:
    return nn.Sequential(
        Standardize(mean, std),
        nn.Linear(mean.numel(), hidden),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, classes),
    )


def train_tabular(
    ws: RecipeWorkspace, options: RecipeOptions, target: str, features: list[str] | None = None
) -> RecipeReport:
    version = ws.datasets.get(options.data)
    if target not in version.schema.names:
        raise TrainingError(
            f"{version.ref} has no column {target!r}", f"columns: {', '.join(version.schema.names)}"
        )
    features = features or _numeric_columns(version, exclude={target})
    _check_features(version, features, target)
    splits = pick_splits(version)
    train_table = version.to_arrow(columns=[*features, target], split=splits.train)
    classes = _classes(train_table.column(target))
    mean, std = _statistics(train_table, features)
    labels_as_ids = target == "label" and version.classes == classes
    to_ids = class_lookup(classes)

    def batch_fn(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([torch.as_tensor(batch[f]).float() for f in features], dim=1)
        y = batch[target] if labels_as_ids else to_ids(batch[target])
        return x, y

    def build() -> tuple[nn.Module, Any, Any, Any]:
        train, evaluation = make_loaders(version, options, splits, columns=[*features, target])
        return tabular_mlp(mean, std, len(classes)), train, evaluation, batch_fn

    def register(model: nn.Module, report: RecipeReport) -> str | None:
        # the registered model takes standardised features: Standardize moves out of the
        # graph into the preprocessing, which does the same (x - mean) / std, NaN -> 0
        pre = Preprocessing.tabular(features, mean.tolist(), std.tolist())
        spec = ModelSpec(pre, "features", [None, len(features)], target=target)
        head = nn.Sequential(*list(model.children())[1:])
        name = options.model_name or f"{version.name}-tabular"
        mv = register_recipe_model(ws, name, "tabular", version, splits, head, spec, report)
        return mv.ref if mv else None

    params = {"model": "MLP", "target": target, "features": ",".join(features)}
    metadata = {"target": target, "features": features}
    return train_recipe(ws, "tabular", version, options, build, classes, params, metadata, register)


def _numeric_columns(version: DatasetVersion, exclude: set[str]) -> list[str]:
    return [
        f.name
        for f in version.schema
        if f.name not in exclude
        and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
        and not pa.types.is_boolean(f.type)
    ]


def _check_features(version: DatasetVersion, features: list[str], target: str) -> None:
    if not features:
        raise TrainingError(
            f"{version.ref} has no numeric column besides {target!r}",
            "pass --features with numeric columns",
        )
    for name in features:
        if name not in version.schema.names:
            raise TrainingError(f"{version.ref} has no column {name!r}", "fix --features")
        kind = version.schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise TrainingError(f"feature {name!r} is {kind}, not numeric", "drop it or encode it")


def _classes(column: pa.ChunkedArray) -> list[str]:
    values = {v for v in column.to_pylist() if v is not None}
    if len(values) < 2:
        raise TrainingError(
            f"the target has {len(values)} distinct value(s) in the train split",
            "a classifier needs at least two classes",
        )
    numeric = all(isinstance(v, int | float) for v in values)
    return [str(v) for v in sorted(values, key=lambda v: v if numeric else str(v))]


def _statistics(table: pa.Table, features: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    columns = [table.column(f).to_numpy(zero_copy_only=False).astype(np.float64) for f in features]
    data = np.stack(columns, axis=1) if columns else np.zeros((0, 0))
    mean = np.nan_to_num(np.nanmean(data, axis=0))
    std = np.nan_to_num(np.nanstd(data, axis=0))
    std[std == 0] = 1.0
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
