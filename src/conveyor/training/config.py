"""How a training run is set up (TrainConfig) and what it ended with (TrainResult)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from conveyor.compute.cost import Market, PriceTable, Usage
from conveyor.core.errors import TrainingError
from conveyor.training.device import PrecisionName
from conveyor.training.preempt import EXIT_PREEMPTED

Status = Literal["finished", "stopped_early", "preempted"]


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when the eval `metric` has not improved by `min_delta` for `patience` evals."""

    metric: str = "loss"
    mode: Literal["auto", "min", "max"] = "auto"  # auto: min for names with "loss", else max
    patience: int = 3
    min_delta: float = 0.0

    @property
    def minimise(self) -> bool:
        return self.mode == "min" or (self.mode == "auto" and "loss" in self.metric)

    def improved(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best - self.min_delta if self.minimise else value > best + self.min_delta


@dataclass(frozen=True)
class TrainConfig:
    """Limits, schedule and placement of a training run. Steps count optimizer steps."""

    epochs: int | None = 1  # passes over the train loader; None: until max_steps
    max_steps: int | None = None
    accumulate: int = 1  # micro-batches per optimizer step
    clip_grad_norm: float | None = None
    eval_every: int | None = None  # steps; None: after every epoch (and at the end)
    early_stopping: EarlyStopping | None = None
    checkpoint_every: int | None = None  # steps
    checkpoint_minutes: float | None = None
    log_every: int = 10  # steps between train-loss metrics
    device: str | None = None  # default: CUDA, then MPS, then CPU
    precision: PrecisionName = "auto"  # auto: bf16/fp16 autocast on CUDA, fp32 elsewhere
    # which price column the cost estimate uses; None: the price table's market
    market: Market | None = None
    # None: the workspace's table (ws.prices, from [prices] in conveyor.toml) when the
    # trainer is given workspace=ws, else the built-in defaults
    prices: PriceTable | None = None
    resume: bool = True  # continue from the run's latest checkpoint when it has one

    def __post_init__(self) -> None:
        if self.epochs is None and self.max_steps is None:
            raise TrainingError("neither epochs nor max_steps is set", "set one of them")
        for name in ("epochs", "max_steps", "accumulate", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise TrainingError(f"{name} must be a whole number >= 1, not {value!r}", "fix it")
        if self.log_every < 1:
            raise TrainingError(f"log_every must be >= 1, not {self.log_every}", "fix it")
        for name in ("clip_grad_norm", "checkpoint_minutes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise TrainingError(f"{name} must be > 0, not {value!r}", "fix it")
        if self.early_stopping is not None and self.early_stopping.patience < 1:
            raise TrainingError("early stopping patience must be >= 1", "fix it")
        if self.market not in (None, "on_demand", "spot"):
            raise TrainingError(f"unknown market {self.market!r}", "use on_demand or spot")

    def priced(self, workspace_prices: object = None) -> TrainConfig:
        """This config with its price table and market decided: its own, else the
        workspace's (`ws.prices`, from [prices] in conveyor.toml), else the defaults."""
        prices = self.prices
        if prices is None:
            prices = workspace_prices if isinstance(workspace_prices, PriceTable) else PriceTable()
        return replace(self, prices=prices, market=self.market or prices.market)

    def params(self) -> dict[str, Any]:
        """The settings worth recording with a run."""
        out = {k: v for k, v in asdict(self).items() if k not in ("prices", "early_stopping")}
        if self.early_stopping is not None:
            out["early_stopping"] = asdict(self.early_stopping)
        return out


@dataclass
class TrainResult:
    """How a call to fit ended."""

    status: Status
    run_id: str
    step: int
    epoch: int
    device: str
    metrics: dict[str, float] = field(default_factory=dict)  # the last evaluation
    per_class: dict[str, list[float]] = field(default_factory=dict)  # accuracy, f1
    checkpoint: str | None = None  # manifest address of the newest checkpoint
    usage: Usage | None = None
    checkpoint_waits: list[float] = field(default_factory=list)  # seconds per checkpoint
    seconds: float = 0.0
    steps_run: int = 0  # optimizer steps taken by this call (after a resume: the rest)

    @property
    def exit_code(self) -> int:
        """0, or EXIT_PREEMPTED (75) for a preempted run a scheduler should resubmit."""
        return EXIT_PREEMPTED if self.status == "preempted" else 0

    @property
    def steps_per_second(self) -> float:
        return self.steps_run / self.seconds if self.seconds else 0.0
