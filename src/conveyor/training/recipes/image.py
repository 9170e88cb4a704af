"""`conveyor train image-classifier`: a small CNN over a version's `image` column.

Classes are the version's labels (`version.classes`). Grayscale images stay one channel,
anything else is read as RGB. Images of mixed sizes are resized to `image_size`.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from conveyor.core.errors import TrainingError
from conveyor.registry.preprocessing import Preprocessing
from conveyor.training.recipes.common import (
    RecipeOptions,
    RecipeReport,
    RecipeWorkspace,
    make_loaders,
    pick_splits,
    train_recipe,
)
from conveyor.training.recipes.registration import (
    ModelSpec,
    as_model_input,
    register_recipe_model,
)

if TYPE_CHECKING:
    from conveyor.data.dataset import DatasetVersion


class SmallCNN(nn.Module):
    """Two conv blocks and a small head; any input size (adaptive pooling)."""

    def __init__(self, channels: int, classes: int, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 16, 128),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(128, classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(images))
        return out


class Resize:
    """A per-sample loader transform to one square size (picklable for worker processes)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image = sample["image"].unsqueeze(0).float()
        resized = nn.functional.interpolate(image, size=(self.size, self.size), mode="bilinear")
        sample["image"] = resized.squeeze(0).round().clamp(0, 255).to(torch.uint8)
        return sample


def train_image_classifier(
    ws: RecipeWorkspace, options: RecipeOptions, image_size: int = 32
) -> RecipeReport:
    version = ws.datasets.get(options.data)
    classes = version.classes
    if "image" not in version.schema.names or len(classes) < 2:
        raise TrainingError(
            f"{version.ref} needs an image column and a label column with 2+ classes",
            "ingest a folder with one subfolder per class",
        )
    splits = pick_splits(version)
    mode = _image_mode(version, splits.train)
    uniform = _uniform_size(version)
    kwargs: dict[str, Any] = {"columns": ["image", "label"], "image_layout": "CHW"}
    kwargs["image_mode"] = mode
    if not uniform:
        kwargs["transform"] = Resize(image_size)
    stored = (
        [int(version.manifest.columns[n]["min"]) for n in ("height", "width")] if uniform else None
    )
    pre = Preprocessing.image(mode, stored or [image_size, image_size])

    def batch_fn(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return as_model_input(pre, batch["image"]), batch["label"]

    def build() -> tuple[nn.Module, Any, Any, Any]:
        train, evaluation = make_loaders(version, options, splits, **kwargs)
        return SmallCNN(pre.channels, len(classes)), train, evaluation, batch_fn

    def register(model: nn.Module, report: RecipeReport) -> str | None:
        shape: list[int | None] = [None, pre.channels, *(pre.size or [])]
        spec = ModelSpec(pre, "image", shape)
        name = options.model_name or f"{version.name}-image-classifier"
        mv = register_recipe_model(
            ws, name, "image-classifier", version, splits, model, spec, report
        )
        return mv.ref if mv else None

    size = "as stored" if uniform else f"{image_size}x{image_size}"
    params = {"model": "SmallCNN", "image_mode": mode, "image_size": size}
    return train_recipe(
        ws, "image-classifier", version, options, build, classes, params,
        {"image_mode": mode, "preprocessing": pre.to_dict()}, register,
    )  # fmt: skip


def _image_mode(version: DatasetVersion, split: str | None) -> str:
    """L for grayscale data (judged from the first image), RGB for everything else."""
    from PIL import Image

    for table in version.iter_tables(columns=["image"], split=split):
        if table.num_rows:
            with Image.open(io.BytesIO(table.column("image")[0].as_py())) as image:
                return "L" if image.mode in ("L", "1", "I;16") else "RGB"
    raise TrainingError(f"{version.ref} has no images in its train split", "check the data")


def _uniform_size(version: DatasetVersion) -> bool:
    columns = version.manifest.columns
    for name in ("width", "height"):
        stats = columns.get(name) or {}
        if stats.get("min") is None or stats.get("min") != stats.get("max"):
            return False
    return True
