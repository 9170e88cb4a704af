"""What every recipe shares: options, splits, the tracked run, fit, and the report."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from conveyor.compute.entry import RUN_ID_ENV
from conveyor.core.errors import TrainingError
from conveyor.storage.metadata import MetadataStore
from conveyor.storage.objects import ObjectStore
from conveyor.training.config import EarlyStopping, TrainConfig
from conveyor.training.device import seed_everything
from conveyor.training.distributed import init_distributed
from conveyor.training.reporting import RunLike
from conveyor.training.trainer import Trainer

if TYPE_CHECKING:
    from conveyor.data.catalog import Datasets
    from conveyor.data.dataset import DatasetVersion
    from conveyor.data.loader.stream import Loader


class RecipeWorkspace(Protocol):
    """The parts of a Workspace a recipe uses (`runs` too, when tracking is there)."""

    @property
    def datasets(self) -> Datasets: ...

    @property
    def objects(self) -> ObjectStore: ...

    @property
    def meta(self) -> MetadataStore: ...


@dataclass(frozen=True)
class RecipeOptions:
    """The knobs every recipe has (CLI flags of `conveyor train ...`)."""

    data: str
    epochs: int | None = 10
    batch_size: int = 64
    lr: float = 1e-3
    max_steps: int | None = None
    checkpoint_every: int | None = None  # steps; a final checkpoint is always written
    eval_every: int | None = None  # steps; default: every epoch
    patience: int | None = None  # early stopping on val loss after this many bad evals
    device: str | None = None
    workers: int = 0
    seed: int = 0
    resume: str | None = None  # a run id to continue
    experiment: str | None = None
    name: str | None = None
    model_name: str | None = None  # registry name; default `<dataset>-<recipe>`

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise TrainingError(f"batch size must be >= 1, not {self.batch_size}", "use 64")
        if self.lr <= 0:
            raise TrainingError(f"learning rate must be > 0, not {self.lr}", "use 1e-3")
        if self.workers < 0:
            raise TrainingError(f"workers must be >= 0, not {self.workers}", "use 0 or 2")


@dataclass
class RecipeReport:
    """What a recipe run ended with; the CLI prints it."""

    recipe: str
    data: str
    run_id: str
    status: str
    exit_code: int
    step: int
    epoch: int
    train_split: str
    eval_split: str
    classes: list[str]
    metrics: dict[str, float]
    per_class: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    tracked: bool = False
    model: str | None = None  # the registered version, `NAME@vN`

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Splits:
    train: str | None  # None: the whole version
    eval: str | None

    def label(self, which: str | None) -> str:
        return which or "all rows"


def pick_splits(version: DatasetVersion) -> Splits:
    """train/val (or test) when the version has them; otherwise all rows for both."""
    found = version.manifest.splits()
    train = "train" if "train" in found else None
    evaluation = next((s for s in ("val", "validation", "test") if s in found), None)
    if train is None:
        evaluation = None
    return Splits(train, evaluation if evaluation is not None else train)


def make_loaders(
    version: DatasetVersion, options: RecipeOptions, splits: Splits, **kwargs: Any
) -> tuple[Loader, Loader]:
    train = version.loader(
        options.batch_size, seed=options.seed, split=splits.train, num_workers=options.workers,
        **kwargs,
    )  # fmt: skip
    evaluation = version.loader(
        max(options.batch_size, 256), shuffle=False, split=splits.eval, **kwargs
    )
    return train, evaluation


def open_run(
    ws: RecipeWorkspace, options: RecipeOptions, recipe: str, params: dict[str, Any]
) -> RunLike | None:
    """A tracked run from `ws.runs` (resumed with --resume), or None without tracking."""
    runs: Any = getattr(ws, "runs", None)
    if runs is None:
        return None
    # inside a job, runs.start uses CONVEYOR_RUN_ID and resumes that run when it exists
    if options.resume:
        run: RunLike = runs.resume(options.resume)
        return run
    tags = {"recipe": recipe, "data": options.data}
    return runs.start(  # type: ignore[no-any-return]
        name=options.name, experiment=options.experiment or recipe, params=params, tags=tags
    )


def train_recipe(
    ws: RecipeWorkspace,
    recipe: str,
    version: DatasetVersion,
    options: RecipeOptions,
    build: Callable[[], tuple[torch.nn.Module, Loader, Loader, Callable[[Any], Any] | None]],
    classes: list[str],
    params: dict[str, Any],
    metadata: dict[str, Any],
    register: Callable[[torch.nn.Module, RecipeReport], str | None] | None = None,
) -> RecipeReport:
    """Seed, build the model and loaders, open the run, fit, report, and register the
    model (`register(model, report)` gives its `NAME@vN`) when training finished."""
    init_distributed(options.device)  # before the loaders, so each rank reads its part
    seed_everything(options.seed)
    model, train, evaluation, batch_fn = build()
    splits = pick_splits(version)
    all_params = {
        "recipe": recipe, "data": version.ref, "epochs": options.epochs,
        "batch_size": options.batch_size, "lr": options.lr, "seed": options.seed,
        "train_split": splits.label(splits.train), "eval_split": splits.label(splits.eval),
        **params,
    }  # fmt: skip
    run = open_run(ws, options, recipe, all_params)
    config = TrainConfig(
        epochs=options.epochs,
        max_steps=options.max_steps,
        checkpoint_every=options.checkpoint_every,
        eval_every=options.eval_every,
        early_stopping=EarlyStopping("loss", patience=options.patience)
        if options.patience
        else None,
        device=options.device,
    )
    trainer = Trainer(
        model,
        train,
        optimizer=torch.optim.AdamW(model.parameters(), lr=options.lr),
        eval=evaluation,
        batch_fn=batch_fn,
        run=run,
        workspace=ws,
        run_id=None
        if run is not None
        else options.resume or os.environ.get(RUN_ID_ENV) or uuid.uuid4().hex,
        metadata={"recipe": recipe, "data": version.ref, "classes": classes, **metadata},
        config=config,
    )
    result = trainer.fit()
    per_class = [
        {"class": name, "accuracy": acc, "f1": f1}
        for name, acc, f1 in zip(
            classes,
            result.per_class.get("accuracy", []),
            result.per_class.get("f1", []),
            strict=False,
        )
    ]
    report = RecipeReport(
        recipe=recipe,
        data=version.ref,
        run_id=result.run_id,
        status=result.status,
        exit_code=result.exit_code,
        step=result.step,
        epoch=result.epoch,
        train_split=splits.label(splits.train),
        eval_split=splits.label(splits.eval),
        classes=classes,
        metrics=result.metrics,
        per_class=per_class,
        checkpoint=result.checkpoint,
        usage=result.usage.as_dict() if result.usage else {},
        tracked=run is not None,
    )
    if register is not None and result.status in ("finished", "stopped_early"):
        report.model = register(model, report)
    return report


def class_lookup(classes: list[str]) -> Callable[[Any], torch.Tensor]:
    """Target values (a tensor of ids, or raw values) -> class ids in `classes` order."""
    index = {c: i for i, c in enumerate(classes)}

    def to_ids(values: Any) -> torch.Tensor:
        items = values.tolist() if isinstance(values, torch.Tensor) else list(values)
        try:
            return torch.tensor([index[str(v)] for v in items], dtype=torch.int64)
        except KeyError as e:
            raise TrainingError(
                f"target value {e} is not one of the classes seen in the train split",
                "make sure every class has rows in the train split",
            ) from None

    return to_ids
