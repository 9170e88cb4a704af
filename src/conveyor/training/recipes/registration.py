"""After a recipe trains: register the model with its signature, preprocessing, metrics,
lineage (the run and the dataset version) and a reference profile of the train split.

The ONNX export is checked against PyTorch on held-out rows of the eval split; the
profile is built from up to 512 rows of the train split, the drift reference from up
to 5,000 (registry/references.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from conveyor.registry.preprocessing import Preprocessing
from conveyor.registry.profile import build_profile, model_summary
from conveyor.registry.references import ROWS, build_reference, save_reference, training_rows
from conveyor.registry.signature import Signature, TensorSpec
from conveyor.registry.version import ONNX

if TYPE_CHECKING:
    from conveyor.data.dataset import DatasetVersion
    from conveyor.registry.version import ModelVersion
    from conveyor.training.recipes.common import RecipeReport, Splits

_PROFILE_ROWS = 512
_CHECK_ROWS = 64


@dataclass(frozen=True)
class ModelSpec:
    """What a recipe tells the registry about its model."""

    preprocessing: Preprocessing
    input_name: str
    input_shape: list[int | None]
    target: str = "label"


def register_recipe_model(
    ws: Any,
    name: str,
    recipe: str,
    version: DatasetVersion,
    splits: Splits,
    model: torch.nn.Module,
    spec: ModelSpec,
    report: RecipeReport,
    embed: Any = None,
) -> ModelVersion | None:
    """Register the trained model; None when the workspace has no registry or on a
    non-main DDP rank."""
    models = getattr(ws, "models", None)
    if models is None or int(os.environ.get("RANK", "0")) != 0:
        return None
    model = model.eval().cpu()
    classes = report.classes
    signature = Signature(
        inputs=[TensorSpec(spec.input_name, "float32", spec.input_shape)],
        outputs=[TensorSpec("logits", "float32", [None, len(classes)])],
        labels=classes,
    )
    held_out = training_rows(version, spec.preprocessing, splits.eval, _CHECK_ROWS)
    train_rows = training_rows(version, spec.preprocessing, splits.train, _PROFILE_ROWS)
    if embed is not None:  # text: the model takes embeddings of the text column
        example = embed(held_out).numpy()
        profile = {"format": "conveyor.profile/1", "kind": "text", "rows": len(train_rows)}
        profile.update(model_summary(model, embed(train_rows).numpy(), classes))
    else:
        example = spec.preprocessing.apply(held_out)
        profile = build_profile(
            spec.preprocessing, train_rows, source=f"{version.ref} ({splits.label(splits.train)})",
            model=model, labels=classes,
        )  # fmt: skip
    mv: ModelVersion = models.register(
        name,
        run_id=report.run_id if report.tracked else None,
        model=model,
        signature=signature,
        preprocessing=spec.preprocessing,
        metrics=report.metrics,
        per_class=report.per_class,
        datasets=[version],
        reference_profile=profile,
        example_inputs=example,
        target=spec.target,
        description=f"{recipe} trained on {version.ref}",
    )
    if ONNX in mv.artifacts:  # what drift monitoring compares served traffic with
        rows = training_rows(version, spec.preprocessing, splits.train, ROWS)
        x = embed(rows).numpy() if embed is not None else spec.preprocessing.apply(rows)
        source = f"{version.ref} ({splits.label(splits.train)})"
        save_reference(ws.meta, ws.objects, mv, build_reference(mv, x, source))
    return mv


def as_model_input(pre: Preprocessing, images: torch.Tensor) -> torch.Tensor:
    """The loader's uint8 CHW batch through the registered preprocessing (for training)."""
    return torch.from_numpy(pre.normalize(np.asarray(images.numpy()), "CHW"))
